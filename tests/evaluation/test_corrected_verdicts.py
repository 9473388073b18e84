"""Multiple-comparison corrected verdicts: Holm's adjusted p-values against a hand computation,
bootstrap p-values against a direct count over a small resample array, the families an evaluation
corrects, the report and sweep columns, and evaluation.json files written before all this."""

import glob
import os

import numpy as np
import pytest

from neuronjax.evaluation.conditions import corrected_pairs, corrected_rows, resolution_problem
from neuronjax.evaluation.results import Comparison, ConditionResult, Evaluation, Interval, Metrics
from neuronjax.evaluation.stats import adjust, bootstrap_p, difference_stats, holm
from neuronjax.report.tables import conditions, head_to_head, summary


def test_holm_by_hand():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06, monotone)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # 0.5 x 2 = 1.0 caps; 0.6 -> max(1.0, 0.6)
    np.testing.assert_allclose(holm([0.02]), [0.02])  # one test: no correction
    np.testing.assert_allclose(holm([0.01, 0.01, 0.01]), [0.03, 0.03, 0.03])  # ties: 0.03, 0.02 -> 0.03, 0.01 -> 0.03
    assert holm([]).shape == (0,)


def test_bootstrap_p_by_direct_count():
    d = np.array([-0.1, 0.0, 0.2, 0.3, 0.1, -0.05, 0.4, 0.2, 0.0, 0.1])
    # <= 0: -0.1, 0.0, -0.05, 0.0 (4 of 10); >= 0: 8 of 10; p = 2 x 0.4
    assert bootstrap_p(d) == pytest.approx(0.8)
    assert bootstrap_p(np.full(9, 0.3)) == pytest.approx(0.1)  # no resample <= 0: floored at 1 / (9 + 1)
    assert bootstrap_p(np.zeros(5)) == 1.0  # both shares 1: 2 capped at 1
    assert bootstrap_p(np.array([-1.0, -2.0, 0.5, -0.5])) == pytest.approx(0.5)  # >= 0: 1 of 4


def test_difference_p_values_count_the_resampled_differences():
    """p of difference_stats from a loop over a 6 x 4 resample array, accuracy and consistent."""
    total = np.array([2.0, 2.0, 2.0, 2.0])  # proxies per item
    right_a = np.array([2.0, 2.0, 1.0, 2.0])
    right_b = np.array([[0.0, 2.0, 1.0, 0.0], [2.0, 2.0, 0.0, 0.0]])  # a pooled control, two seeds
    resamples = np.array([[0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 2, 2], [2, 2, 2, 2], [1, 3, 1, 3], [3, 3, 0, 1]])
    got = difference_stats(right_a, right_b, total, resamples)
    acc, cons = [], []
    for row in resamples:
        a = sum(right_a[i] for i in row) / sum(total[i] for i in row)
        b = sum(right_b[s, i] for s in range(2) for i in row) / (2 * sum(total[i] for i in row))
        acc.append(a - b)
        a = np.mean([right_a[i] == total[i] for i in row])
        b = np.mean([np.mean([right_b[s, i] == total[i] for s in range(2)]) for i in row])
        cons.append(a - b)
    for interval, diffs in ((got.accuracy, acc), (got.consistent, cons)):
        diffs = np.array(diffs)
        share = min(np.mean(diffs <= 1e-12), np.mean(diffs >= -1e-12))
        assert interval.p == pytest.approx(max(min(1.0, 2 * share), 1 / 7))


def _row(method, mode, p=None, value=0.1, control=False, good=5, bad=5):
    diff = Interval(value, value - 0.05, value + 0.05, p=p)
    metrics = Metrics(Interval(0.5, 0.4, 0.6), Interval(0.3, 0.2, 0.4))
    vs_random = None if p is None else Metrics(diff, diff)
    return ConditionResult(method, mode, 5, control, good, bad, metrics, metrics, vs_random, (0.5, 0.5))


def test_rows_are_corrected_as_one_family_per_metric():
    rows = [_row("none", "none"), _row("m", "suppress_good", p=0.01, value=-0.2),
            _row("m", "suppress_good", control=True), _row("m", "suppress_bad", p=0.04, value=0.1),
            _row("m", "enhancer", p=0.03, value=0.05), _row("m", "degrader", p=0.005, value=-0.3),
            _row("e", "suppress_bad", p=1.0, value=0.0, bad=0)]  # fmt: skip
    out = corrected_rows(rows)
    # the empty set (suppress_bad of a set without bad neurons) tests nothing: four p-values, as in
    # test_holm_by_hand
    adjusted = [r.vs_random.accuracy.p_adjusted if r.vs_random else None for r in out]
    assert adjusted == pytest.approx([None, 0.03, None, 0.06, 0.06, 0.02, None])
    assert [r.vs_random.consistent.p_adjusted if r.vs_random else None for r in out] == adjusted
    verdicts = [r.vs_random.accuracy.corrected if r.vs_random else None for r in out]
    assert verdicts == [None, "lower", None, "n.s.", "n.s.", "lower", None]
    # the raw intervals and p-values stay
    assert out[3].vs_random.accuracy.low == rows[3].vs_random.accuracy.low and out[3].vs_random.accuracy.p == 0.04
    # adjust() on intervals is the same computation
    ivs = adjust([Interval(0.1, 0.0, 0.2, p=0.04), Interval(-0.1, -0.2, 0.0, p=0.001)])
    # sorted: 0.001 x 2 = 0.002, then max(0.002, 0.04 x 1) = 0.04 < 0.05
    assert [(iv.p_adjusted, iv.corrected) for iv in ivs] == [(0.04, "higher"), (0.002, "lower")]


def test_pairs_are_corrected_as_their_own_family():
    d1 = Metrics(Interval(0.2, 0.1, 0.3, p=0.02), Interval(0.1, 0.0, 0.2, p=0.2))
    d2 = Metrics(Interval(-0.2, -0.3, -0.1, p=0.02), Interval(0.0, -0.1, 0.1, p=0.9))
    out = corrected_pairs([Comparison("a", "b", "suppress_good", 5, 5, d1), Comparison("a", "b", "enhancer", 5, 5, d2)])
    assert [(c.difference.accuracy.p_adjusted, c.difference.accuracy.corrected) for c in out] == [
        (pytest.approx(0.04), "higher"), (pytest.approx(0.04), "lower")]  # fmt: skip
    assert [c.difference.consistent.p_adjusted for c in out] == [pytest.approx(0.4), pytest.approx(0.9)]


def _evaluation(correction):
    rows = corrected_rows(
        [
            _row("none", "none"),
            _row("m", "suppress_good", p=0.01, value=-0.2),
            _row("m", "suppress_good", control=True),
            _row("m", "suppress_bad", p=0.04, value=0.1),
        ]
    )
    pair = Metrics(Interval(0.2, 0.1, 0.3, p=0.0005), Interval(0.1, 0.0, 0.2, p=0.2))
    compare = corrected_pairs([Comparison("m", "r", "suppress_good", 5, 5, pair)])
    return Evaluation("t", 10, 30, False, (0,), 100, tuple(rows), compare=compare, correction=correction)


def test_report_columns_of_a_corrected_evaluation():
    ev = _evaluation({"method": "holm", "alpha": 0.05})
    table = conditions(ev)
    assert table.header[-3:] == ("vs random", "p (Holm)", "vs random (Holm)")
    cells = {(r[0], r[1]): r[-4:] for r in table.rows}
    # raw: both intervals exclude zero; Holm over two rows: 0.01 x 2 = 0.02, max(0.02, 0.04 x 1) = 0.04
    assert cells[("m", "suppress_good")] == ("-0.200 [-0.250, -0.150]", "lower", "0.020", "lower")
    assert cells[("m", "suppress_bad")] == ("+0.100 [+0.050, +0.150]", "higher", "0.040", "higher")
    assert cells[("none", "-")][-2:] == ("-", "-")
    pairs = head_to_head(ev)
    assert pairs.header[-2:] == ("p (Holm)", "a vs b (Holm)") and pairs.rows[0][-2:] == ("<0.001", "higher")


def test_an_old_evaluation_json_still_loads_and_reports():
    """An evaluation.json written before verdicts were corrected (the default run's of
    2026-11-24, as it was committed) loads, and its tables have no Holm columns."""
    paths = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "data", "pre_holm_*.json")))
    assert paths
    for path in paths:
        ev = Evaluation.load(path)
        assert ev.correction == {}
        for r in ev.rows:
            if r.vs_random is not None:
                assert r.vs_random.accuracy.p is None and r.vs_random.accuracy.corrected is None
        table = conditions(ev)  # no Holm columns for an evaluation without p-values
        assert table.header[-1] == "vs random" and len(table.header) == 9


def test_summary_marks_follow_the_corrected_verdict(tmp_path):
    """A raw interval that excludes zero but whose Holm verdict is n.s. gets no mark."""
    run = tmp_path / "run"
    rows = corrected_rows([_row("none", "none"), _row("m", "suppress_good", p=0.03, value=-0.2),
                           _row("m", "suppress_good", control=True), _row("m", "suppress_bad", p=0.04, value=0.1),
                           _row("m", "suppress_bad", control=True)])  # fmt: skip
    Evaluation("t", 10, 30, False, (0,), 100, tuple(rows), correction={"method": "holm"}).save(
        str(run / "evaluation.json")
    )
    line = summary([str(run)]).rows[0]
    assert line[4] == "0.500 [0.400, 0.600]" and line[5] == "0.500 [0.400, 0.600]"  # 0.06, 0.06: no marks


def test_sweep_cells_of_a_corrected_row():
    from neuronjax.sweep.gather import _holm_csv_cells, _md_cells, numbers

    ev = _evaluation({"method": "holm"})
    row = ev.find("m", "suppress_good")
    assert _md_cells(row, numbers(ev, row))[-3:] == ["lower", "0.020", "lower"]
    assert _holm_csv_cells(row.vs_random.accuracy) == [0.01, pytest.approx(0.02), "lower"]
    assert _holm_csv_cells(None) == ["", "", ""]


def test_too_few_resamples_for_the_family_is_named():
    """The smallest bootstrap p is 1 / (B + 1), Holm's smallest adjusted p m / (B + 1): 4 tests need
    B + 1 > 4 / 0.05 = 80, so 79 resamples can never give a verdict and 80 can (4 / 81 = 0.0494)."""
    assert resolution_problem({"table's rows": 4, "K curve": 0}, 80) is None
    message = resolution_problem({"table's rows": 4, "K curve": 2}, 79)
    assert message == ("evaluate.bootstrap: 79 resamples give p-values of at least 1 / 80, so Holm over the 4 tests "
                       "of the table's rows can never reach 0.05 and every corrected verdict is n.s.; expected "
                       "evaluate.bootstrap >= 80")  # fmt: skip
    assert resolution_problem({"K curve": 0}, 10) is None  # nothing tested
    # 3 tests: 3 / 60 = 0.05 exactly is not below alpha, 3 / 61 is
    assert resolution_problem({"pairs": 3}, 59).endswith(">= 60") and resolution_problem({"pairs": 3}, 60) is None
    # the floor is real: every p-value of 79 resamples is >= 1/80, Holm over four >= 4/80 = 0.05
    p = bootstrap_p(np.full(79, 0.3))
    assert p == pytest.approx(1 / 80) and holm([p] * 4).min() == pytest.approx(0.05)
