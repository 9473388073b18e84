"""The report's tables, built from typed results (`neuronjax.evaluation.results`) as `Table`
values: one run's conditions, head-to-head pairs, accuracy against K and cross-task changes;
across runs, the summary of every mode and the cross-task matrix; the identification of
compared neuron sets. The `*_table` functions return the markdown of the same tables."""

from __future__ import annotations

import os
from typing import Optional, Sequence

from neuronjax.evaluation.results import ConditionResult, CrossEvaluation, Evaluation, Interval
from neuronjax.intervention import mode_sides
from neuronjax.report.document import LEFT, RIGHT, Table
from neuronjax.report.formatting import MISSING, format_interval, verdict
from neuronjax.report.runs import load_cross, load_evaluation

L, R = LEFT, RIGHT  # column alignments
SUMMARY_MODES = ("suppress_good", "suppress_bad", "enhancer", "degrader")
EMPTY_SET = "(empty set)"  # the mode edits no neuron: nothing was measured
MARKS = {"lower": " v", "higher": " ^"}  # summary cells against the random control


def format_p(p: Optional[float]) -> str:
    """An adjusted p-value to three decimals ("<0.001" below that); None: "-"."""
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def corrected_verdict(interval: Optional[Interval]) -> str:
    """The Holm-corrected verdict of a paired difference; the raw interval's verdict for a
    difference outside a corrected family (an evaluation written before the correction)."""
    if interval is not None and interval.corrected is not None:
        return interval.corrected
    return verdict(interval)


def _holm_cells(interval: Optional[Interval]) -> tuple[str, str]:
    """The "p (Holm)" and "... (Holm)" cells of one difference."""
    if interval is None or interval.p_adjusted is None:
        return MISSING, MISSING
    return format_p(interval.p_adjusted), interval.corrected


def conditions(evaluation: Evaluation) -> Table:
    """One line per (method, mode) at the method's K, with its random control; an evaluation with
    corrected verdicts adds the Holm-adjusted p-value of the difference to random and its verdict."""
    header = ("method", "mode", "K", "neurons edited", "accuracy [95% CI]", "consistent [95% CI]",
              "random control accuracy", "accuracy - random [95% CI]", "vs random")  # fmt: skip
    rows = []
    for r in evaluation.rows:
        if r.control:
            continue
        if r.method == "none":
            rows.append(("none", "-", "-", MISSING, format_interval(r.accuracy), format_interval(r.consistent),
                         "-", "-", "-"))  # fmt: skip
            continue
        c = evaluation.control_of(r)
        diff = r.vs_random.accuracy if r.vs_random else None
        rows.append((r.method, r.mode, str(r.k), edited(r), format_interval(r.accuracy),
                     format_interval(r.consistent), format_interval(c.accuracy) if c else MISSING,
                     format_interval(diff, signed=True), verdict(diff)))  # fmt: skip
        if evaluation.correction:
            rows[-1] += _holm_cells(diff)
    align = (L, L, R, R, L, L, L, L, L)
    if evaluation.correction:
        header, align = header + ("p (Holm)", "vs random (Holm)"), align + (R, L)
        rows = [row + (MISSING, MISSING) if len(row) < len(header) else row for row in rows]
    return Table(header, rows, align)


def edited(row: ConditionResult) -> str:
    """The neurons a condition edits, by side: "100 good", "100 bad", "100 good + 100 bad" (the
    sides its mode edits, `intervention.mode_sides`); "0 bad (empty set)" when there are none."""
    sides = mode_sides(row.mode)
    text = " + ".join(f"{getattr(row, side)} {side}" for side in sides) or MISSING
    return f"{text} {EMPTY_SET}" if row.empty else text


def head_to_head(evaluation: Evaluation) -> Optional[Table]:
    """One line per (a, b, mode) of evaluate.compare: a minus b, both metrics; None without pairs."""
    if not evaluation.compare:
        return None
    header = ("a - b", "mode", "K (a / b)", "accuracy difference [95% CI]", "consistent difference [95% CI]", "a vs b")
    rows = [(f"{p.a} - {p.b}", p.mode, f"{p.k_a} / {p.k_b}", format_interval(p.difference.accuracy, signed=True),
             format_interval(p.difference.consistent, signed=True), verdict(p.difference.accuracy))
            for p in evaluation.compare]  # fmt: skip
    if evaluation.correction:
        header += ("p (Holm)", "a vs b (Holm)")
        rows = [row + _holm_cells(p.difference.accuracy) for row, p in zip(rows, evaluation.compare)]
    return Table(header, rows)


def k_curve(evaluation: Evaluation) -> Optional[Table]:
    """Accuracy against K for each method and curve mode, with the random control; None without a
    curve. Methods and modes in the evaluation's order, K ascending (as numbers)."""
    curve = [r for r in evaluation.curve if not r.control]
    if not curve:
        return None
    header = ("method", "mode", "K", "accuracy [95% CI]", "random control accuracy", "accuracy - random [95% CI]")
    methods = list(dict.fromkeys(r.method for r in list(evaluation.rows) + curve))
    modes = list(dict.fromkeys(r.mode for r in list(evaluation.rows) + curve))
    rows = []
    for r in sorted(curve, key=lambda r: (methods.index(r.method), modes.index(r.mode), r.k)):
        c = evaluation.control_of(r, curve=True)
        rows.append((r.method, r.mode, str(r.k), format_interval(r.accuracy),
                     format_interval(c.accuracy) if c else MISSING,
                     format_interval(r.vs_random.accuracy if r.vs_random else None, signed=True)))  # fmt: skip
    return Table(header, rows, (L, L, R))


def cross_task(cross: CrossEvaluation, source_task: str, mode: str = "suppress_good") -> Table:
    """Accuracy change (vs no intervention) on other tasks when this run's sets are applied."""
    targets = cross.targets
    header = (f"method ({source_task} neurons, {mode})", *(t.task for t in targets))
    methods = list(dict.fromkeys(r.method for t in targets for r in t.rows if r.mode == mode and not r.control))
    rows = []
    for m in methods:
        hits = [t.find(m, mode) for t in targets]
        rows.append((m, *(format_interval(h.vs_none.accuracy, signed=True) if h else MISSING for h in hits)))
    return Table(header, rows)


def summary(run_dirs: Sequence[str], methods: Sequence[str] = (), metric: str = "accuracy") -> Table:
    """One line per (task, method): held-out `metric` ("accuracy" or "consistent") [95% CI] under
    each mode, marked where it differs from the same mode on random sets of the same per-layer
    counts (v lower, ^ higher than random): by the Holm-corrected verdict, or, for an evaluation
    written before verdicts were corrected, where the paired interval excludes zero."""
    header = ("task", "method", "K", "none", *SUMMARY_MODES)
    rows = []
    for run_dir in run_dirs:
        ev = load_evaluation(run_dir)
        none = ev.baseline
        for m in ev.method_names:
            if methods and m not in methods:
                continue
            cells, k = [], "-"
            for mode in SUMMARY_MODES:
                r = ev.find(m, mode)
                if r is None:
                    cells.append(MISSING)
                    continue
                k = str(r.k)
                if r.empty:
                    cells.append(EMPTY_SET)
                    continue
                mark = MARKS.get(corrected_verdict(r.vs_random[metric] if r.vs_random else None), "")
                cells.append(format_interval(r.metrics[metric]) + mark)
            rows.append((ev.task, m, k, format_interval(none.metrics[metric]), *cells))
    return Table(header, rows, (L, L, R))


def matrix(run_dirs: Sequence[str], method: str = "neuronllm", mode: str = "suppress_good") -> Table:
    """Rows: the task whose neurons are used; columns: the task evaluated; cells: accuracy change
    against no intervention [95% CI] (the diagonal from each run's own evaluation, the rest from
    its cross_tasks)."""
    cells: dict[tuple[str, str], str] = {}
    sources, targets = [], []
    for run_dir in run_dirs:
        ev = load_evaluation(run_dir)
        sources.append(ev.task)
        cross = load_cross(run_dir)
        for t in [ev, *(cross.targets if cross else ())]:
            if t.task not in targets:
                targets.append(t.task)
            hit = t.find(method, mode)
            if hit:
                cells[(ev.task, t.task)] = format_interval(hit.vs_none.accuracy, signed=True)
    rows = [(src, *(cells.get((src, t), MISSING) for t in targets)) for src in sources]
    return Table((f"{method} neurons of ({mode})", *targets), rows)


def identification(labels: Sequence[str], sets: Sequence, run_dirs: Sequence[str]) -> Table:
    """How each compared set was identified: sizes, K, z, identification items and attribution."""
    header = ("set", "run directory", "good / bad", "K", "z", "identification items (proxies)", "attribution")
    rows = []
    for label, ns, d in zip(labels, sets, run_dirs):
        meta = ns.meta
        method, stats, attr = meta.get("method", {}), meta.get("stats", {}), meta.get("attribution", {})
        how = ", ".join(f"{k}={attr[k]}" for k in ("method", "rule", "steps", "groups") if attr.get(k) is not None) or "-"
        if attr.get("layer_steps"):
            how += " (" + ", ".join(f"layer {k}: {v} steps" for k, v in attr["layer_steps"].items()) + ")"
        rows.append((label, os.path.basename(os.path.normpath(d)), f"{int(ns.good.sum())} / {int(ns.bad.sum())}",
                     str(method.get("k", "-")), str(method.get("z", "-")),
                     f"{stats.get('items', '?')} ({stats.get('proxies', '?')})", how))  # fmt: skip
    return Table(header, rows, (L, L, R, R, R, R, L))


# -- the same tables as markdown -----------------------------------------------------------------
def rows_table(evaluation: Evaluation) -> str:
    """`conditions` as markdown."""
    return conditions(evaluation).markdown()


def compare_table(evaluation: Evaluation) -> str:
    """`head_to_head` as markdown ("" when the evaluation compared no pairs)."""
    table = head_to_head(evaluation)
    return table.markdown() if table else ""


def curve_table(evaluation: Evaluation) -> str:
    """`k_curve` as markdown ("" when the evaluation has no accuracy-against-K rows)."""
    table = k_curve(evaluation)
    return table.markdown() if table else ""


def cross_table(cross: CrossEvaluation, source_task: str, mode: str = "suppress_good") -> str:
    """`cross_task` as markdown."""
    return cross_task(cross, source_task, mode).markdown()


def summary_table(run_dirs: Sequence[str], methods: Sequence[str] = (), metric: str = "accuracy") -> str:
    """`summary` as markdown."""
    return summary(run_dirs, methods, metric).markdown()


def cross_matrix(run_dirs: Sequence[str], method: str = "neuronllm", mode: str = "suppress_good") -> str:
    """`matrix` as markdown."""
    return matrix(run_dirs, method, mode).markdown()
