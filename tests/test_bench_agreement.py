"""`neuronjax bench agreement`: overlaps and accuracy differences of two runs, on synthetic run
directories with known masks (counted by hand)."""

import json

import numpy as np

from neuronjax.bench.agreement import compare, describe, set_overlap, spearman
from tests.test_report_pictures import A_BAD, A_GOOD, _make_run, _mask


def test_set_overlap_by_hand():
    a = _mask([(0, 0), (0, 1), (1, 2), (2, 3)])
    b = _mask([(0, 0), (1, 2), (2, 4)])
    o = set_overlap(a, b)
    assert (o["shared"], o["size_a"], o["size_b"]) == (2, 4, 3)
    assert o["share"] == 2 / 4 and o["jaccard"] == 2 / 5


def test_spearman_is_one_for_the_same_order_and_minus_one_reversed():
    x = np.array([0.1, 0.5, 0.3, 0.9])
    assert spearman(x, x * 10 + 1) == 1.0 and spearman(x, -x) == -1.0


def test_two_runs(tmp_path):
    b_good = _mask([(0, 0), (0, 1), (2, 4), (2, 5)])  # two of A's four good neurons
    run_a = _make_run(tmp_path, "a", "wf", {"neuronllm": (A_GOOD, A_BAD)})
    run_b = _make_run(tmp_path, "b", "wf", {"neuronllm": (b_good, A_BAD)})
    ev = json.load(open(f"{run_b}/evaluation.json"))
    for row in ev["rows"]:
        if row["method"] == "neuronllm" and row["mode"] == "suppress_good" and not row["control"]:
            row["accuracy"]["value"] = 0.123
    json.dump(ev, open(f"{run_b}/evaluation.json", "w"))
    out = compare(run_a, run_b)
    s = out["sets"]["neuronllm"]
    assert s["good"]["shared"] == 2 and s["good"]["jaccard"] == 2 / 6
    assert s["bad"]["shared"] == 4 and s["bad"]["jaccard"] == 1.0
    rows = {(r["method"], r["mode"]): r for r in out["accuracy"]}
    sg = rows[("neuronllm", "suppress_good")]
    assert sg["b"] == 0.123 and sg["difference"] == 0.123 - sg["a"]
    assert rows[("none", "none")]["difference"] == 0.0
    text = describe(out)
    assert "| neuronllm | 2 / 4 | 0.333 | 4 / 4 | 1.000 |" in text
