"""The gathered table of a sweep: <output>/<name>/results.csv and results.md.

One row per point x method x intervention mode of every finished point (the unedited model
first): held-out accuracy, its change against no intervention, the random control's change and
the difference to it, each with its 95% interval, and that difference's Holm-adjusted p-value and
corrected verdict. Points without results (not run yet, failed, or made with another config) are
listed with the reason. Evaluations are read through the typed results of
`neuronjax.evaluation.results`; cells are written by the report's formatting.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from typing import Optional

from neuronjax.evaluation.results import ConditionResult, Evaluation, Interval
from neuronjax.sweep.plan import ERROR_FILE, FINISHED, REPLACE, Overrides, Point, expand, point_state
from neuronjax.sweep.schema import SweepConfig, load_sweep

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
CSV_NUMBERS = ("accuracy", "change", "random_change", "vs_random")

EXPLANATION = (
    "Held-out accuracy under each intervention [95% bootstrap CI]; change: against no intervention "
    "(paired); random change: the same mode on random sets of the same per-layer counts; "
    "vs random: accuracy minus the random control's, lower / higher where its interval excludes zero; "
    "p (Holm): its paired bootstrap p-value adjusted by Holm over the point's rows, and vs random (Holm) "
    "the verdict at family-wise 0.05 (- for evaluations written before the correction). "
    "(empty set): the method found no neurons of that kind, so the mode edits nothing."
)
HOLM_CSV = ("vs_random_p", "vs_random_p_holm", "vs_random_holm")  # raw p, adjusted p, corrected verdict


@dataclasses.dataclass
class Table:
    csv_path: str
    md_path: str
    points: int  # points of the sweep
    missing: list  # (point, why it has no results)

    def summary(self) -> str:
        return (f"{self.points} points: {self.points - len(self.missing)} evaluated, {len(self.missing)} "
                f"without results; table in {self.md_path}")  # fmt: skip


def status(point: Point) -> str:
    """"ok" for a finished point, else why it has no results."""
    state, detail = point_state(point, force=True)
    if state == FINISHED:
        return "ok"
    error = os.path.join(point.run_dir, ERROR_FILE)
    if os.path.exists(error):
        with open(error) as f:
            return f"failed: {f.readline().strip()}"
    if state == REPLACE:
        return f"made with a different config ({detail})"
    return "not evaluated"


def numbers(evaluation: Evaluation, row: ConditionResult) -> dict[str, Optional[Interval]]:
    """The table's intervals of one condition (None where not measured)."""
    control = evaluation.control_of(row)
    return {
        "accuracy": row.accuracy,
        "change": row.vs_none.accuracy,
        "random_change": control.vs_none.accuracy if control else None,
        "vs_random": row.vs_random.accuracy if row.vs_random else None,
    }


def _csv_cells(interval: Optional[Interval]) -> list:
    return [interval.value, interval.low, interval.high] if interval else ["", "", ""]


def _holm_csv_cells(interval: Optional[Interval]) -> list:
    if interval is None:
        return ["", "", ""]
    return ["" if v is None else v for v in (interval.p, interval.p_adjusted, interval.corrected)]


def _md_cells(row: ConditionResult, n: dict) -> list[str]:
    from neuronjax.report import format_interval, verdict
    from neuronjax.report.tables import format_p

    if row.empty:
        return ["(empty set)", "-", "-", "-", "-", "-", "-"]  # nothing edited (as in report --summary)
    change = format_interval(n["change"], signed=True) if row.method != "none" else "-"
    holm = n["vs_random"]
    return [format_interval(n["accuracy"]), change, format_interval(n["random_change"], signed=True),
            format_interval(n["vs_random"], signed=True), verdict(n["vs_random"]),
            format_p(holm.p_adjusted if holm else None), (holm.corrected if holm else None) or "-"]  # fmt: skip


def gather(sweep: SweepConfig, points: list[Point]) -> Table:
    """Write <output>/<name>/results.csv and results.md from every finished point's evaluation;
    the other points get a row saying why they have none."""
    from neuronjax.run import EVALUATION

    keys = list(sweep.grid)
    header = ["point", *keys, "method", "mode", "k", "good", "bad"]
    for name in CSV_NUMBERS:
        header += [name, f"{name}_low", f"{name}_high"]
    header += [*HOLM_CSV, "items", "status", "run_dir"]
    csv_rows, md_rows, missing = [], [], []
    for p in points:
        grid_cells = [p.labels[k] for k in keys]
        why = status(p)
        if why != "ok":
            missing.append((p, why))
            csv_rows.append([p.name, *grid_cells] + [""] * (len(header) - len(keys) - 3) + [why, p.run_dir])
            continue
        ev = Evaluation.load(os.path.join(p.run_dir, EVALUATION))
        for row in ev.rows:
            if row.control:
                continue
            n = numbers(ev, row)
            k = row.k if row.method != "none" else ""
            cells = [cell for name in CSV_NUMBERS for cell in _csv_cells(n[name])] + _holm_csv_cells(n["vs_random"])
            csv_rows.append([p.name, *grid_cells, row.method, row.mode, k, row.good, row.bad, *cells, ev.items,
                             "ok", p.run_dir])  # fmt: skip
            md_rows.append([*grid_cells, row.method, row.mode, str(k) or "-", *_md_cells(row, n)])
    os.makedirs(sweep.sweep_dir, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(csv_rows)
    csv_path = os.path.join(sweep.sweep_dir, RESULTS_CSV)
    _write_text(csv_path, buf.getvalue())

    grid = " x ".join(f"`{k}` ({len(v)})" for k, v in sweep.grid.items())
    evaluated = len(points) - len(missing)
    md = [f"# Sweep {sweep.name}", "",
          f"{len(points)} points ({evaluated} evaluated) from `{sweep.source}`: base `{sweep.base}`, grid {grid}.",
          "", EXPLANATION, ""]  # fmt: skip
    cols = [*keys, "method", "mode", "K", "accuracy [95% CI]", "change [95% CI]", "random change [95% CI]",
            "accuracy - random [95% CI]", "vs random", "p (Holm)", "vs random (Holm)"]  # fmt: skip
    md.append("| " + " | ".join(cols) + " |")
    md.append("|" + "---|" * len(keys) + "---|---|---:|---|---|---|---|---|---:|---|")
    md += ["| " + " | ".join(row) + " |" for row in md_rows]
    if missing:
        md += ["", f"Points without results ({len(missing)}):", ""]
        md += [f"- {p.name} (`{p.run_dir}`): {why}" for p, why in missing]
    md_path = os.path.join(sweep.sweep_dir, RESULTS_MD)
    _write_text(md_path, "\n".join(md) + "\n")
    return Table(csv_path, md_path, len(points), missing)


def gather_sweep(sweep_path: str, overrides: Overrides = None) -> Table:
    """The table of a sweep from what is finished now (e.g. after a job array), running nothing."""
    sweep = load_sweep(sweep_path)
    return gather(sweep, expand(sweep, overrides))


def _write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
