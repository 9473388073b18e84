"""Markdown tables of evaluated runs (`neuronjax report RUN_DIR...`)."""

from __future__ import annotations

import json
import os
from typing import Sequence

from neuronjax.evaluate import Interval


def _iv(d: dict) -> Interval:
    return Interval(d["value"], d["low"], d["high"])


def _fmt(d: dict, signed: bool = False) -> str:
    v = _iv(d)
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(v.value)} [{f.format(v.low)}, {f.format(v.high)}]"


def _verdict(d: dict) -> str:
    """How a condition's accuracy compares with its random control."""
    v = _iv(d)
    if v.high < 0:
        return "lower"
    if v.low > 0:
        return "higher"
    return "n.s."


def rows_table(evaluation: dict) -> str:
    """One line per (method, mode) at the method's K, with its random control."""
    rows = evaluation["rows"]
    controls = {(r["method"], r["mode"], r["k"]): r for r in rows if r["control"]}
    lines = [
        "| method | mode | K | good / bad edited | accuracy [95% CI] | consistent [95% CI] | "
        "random control accuracy | accuracy - random [95% CI] | vs random |",
        "|---|---|---:|---:|---|---|---|---|---|",
    ]
    for r in rows:
        if r["control"]:
            continue
        if r["method"] == "none":
            lines.append(f"| none | - | - | 0 / 0 | {_fmt(r['accuracy'])} | {_fmt(r['consistent'])} | - | - | - |")
            continue
        c = controls.get((r["method"], r["mode"], r["k"]))
        ctrl = _fmt(c["accuracy"]) if c else "-"
        diff = r.get("vs_random", {}).get("accuracy")
        lines.append(
            f"| {r['method']} | {r['mode']} | {r['k']} | {r['good']} / {r['bad']} | {_fmt(r['accuracy'])} | "
            f"{_fmt(r['consistent'])} | {ctrl} | {_fmt(diff, True) if diff else '-'} | "
            f"{_verdict(diff) if diff else '-'} |"
        )
    return "\n".join(lines)


def curve_table(evaluation: dict) -> str:
    """Accuracy against K for each method and curve mode, with the random control."""
    curve = [r for r in evaluation.get("curve", []) if not r["control"]]
    if not curve:
        return ""
    controls = {(r["method"], r["mode"], r["k"]): r for r in evaluation["curve"] if r["control"]}
    lines = ["| method | mode | K | accuracy [95% CI] | random control accuracy | accuracy - random [95% CI] |",
             "|---|---|---:|---|---|---|"]  # fmt: skip
    for r in sorted(curve, key=lambda r: (r["method"], r["mode"], r["k"])):
        c = controls.get((r["method"], r["mode"], r["k"]))
        lines.append(
            f"| {r['method']} | {r['mode']} | {r['k']} | {_fmt(r['accuracy'])} | "
            f"{_fmt(c['accuracy']) if c else '-'} | {_fmt(r['vs_random']['accuracy'], True)} |"
        )
    return "\n".join(lines)


def cross_table(cross: dict, source_task: str, mode: str = "suppress_good") -> str:
    """Accuracy change (vs no intervention) on other tasks when this run's sets are applied."""
    lines = [f"| method ({source_task} neurons, {mode}) | " + " | ".join(t["task"] for t in cross["targets"]) + " |",
             "|---|" + "---|" * len(cross["targets"])]  # fmt: skip
    methods = []
    for t in cross["targets"]:
        for r in t["rows"]:
            if r["mode"] == mode and not r["control"] and r["method"] not in methods:
                methods.append(r["method"])
    for m in methods:
        cells = []
        for t in cross["targets"]:
            hit = [r for r in t["rows"] if r["method"] == m and r["mode"] == mode and not r["control"]]
            cells.append(_fmt(hit[0]["vs_none"]["accuracy"], True) if hit else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_section(run_dir: str) -> str:
    ev = _load(run_dir, "evaluation.json")
    model = ev.get("model", {})
    stats = next(iter(ev.get("identify", {}).values()), {})
    out = [
        f"## {ev.get('run', os.path.basename(run_dir))}: task {ev['task']}",
        "",
        f"Model {model.get('model_id', '?')} ({model.get('layers', '?')} layers x {model.get('mlp', '?')} neurons). "
        f"Identified on {stats.get('items', '?')} items ({stats.get('proxies', '?')} proxies, "
        f"{stats.get('prompts_per_second', 0):.2f} prompts/s); evaluated on {ev['items']} held-out items "
        f"({ev['proxies']} proxies) in {ev.get('seconds', '?')} s. Intervals: 95% bootstrap over items "
        f"({ev['bootstrap']} resamples); random controls: same per-layer counts, seeds {ev['random_seeds']} pooled; "
        f"interventions at {'all positions' if ev.get('all_positions') else 'the last prompt position'}.",
        "",
        rows_table(ev),
    ]
    curve = curve_table(ev)
    if curve:
        out += ["", "Accuracy against K:", "", curve]
    if os.path.exists(os.path.join(run_dir, "cross.json")):
        cross = _load(run_dir, "cross.json")
        out += ["", "Cross-task: accuracy change against no intervention [95% CI]:", "",
                cross_table(cross, ev["task"])]  # fmt: skip
    return "\n".join(out) + "\n"


def _load(run_dir: str, name: str) -> dict:
    path = os.path.join(run_dir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: not evaluated yet; run `neuronjax evaluate {run_dir}`")
    with open(path) as f:
        return json.load(f)


SUMMARY_MODES = ("suppress_good", "suppress_bad", "enhancer", "degrader")


def summary_table(run_dirs: Sequence[str], methods: Sequence[str] = (), metric: str = "accuracy") -> str:
    """One line per (task, method): held-out `metric` ("accuracy" or "consistent") [95% CI] under
    each mode, marked where the paired interval against the same mode on random sets of the same
    per-layer counts excludes zero (v lower, ^ higher than random)."""
    lines = ["| task | method | K | none | " + " | ".join(SUMMARY_MODES) + " |",
             "|---|---|---:|---|" + "---|" * len(SUMMARY_MODES)]  # fmt: skip
    for run_dir in run_dirs:
        ev = _load(run_dir, "evaluation.json")
        rows = [r for r in ev["rows"] if not r["control"]]
        none = next(r for r in rows if r["method"] == "none")
        names = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "none" and (not methods or m in methods)]
        for m in names:
            cells, k = [], "-"
            for mode in SUMMARY_MODES:
                hit = [r for r in rows if r["method"] == m and r["mode"] == mode]
                if not hit:
                    cells.append("-")
                    continue
                r = hit[0]
                k = r["k"]
                if (mode == "suppress_bad" and r["bad"] == 0) or (mode == "suppress_good" and r["good"] == 0):
                    cells.append("(empty set)")
                    continue
                mark = {"lower": " v", "higher": " ^"}.get(_verdict(r["vs_random"][metric]), "")
                cells.append(_fmt(r[metric]) + mark)
            lines.append(f"| {ev['task']} | {m} | {k} | {_fmt(none[metric])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cross_matrix(run_dirs: Sequence[str], method: str = "neuronllm", mode: str = "suppress_good") -> str:
    """Rows: the task whose neurons are used; columns: the task evaluated; cells: accuracy change
    against no intervention [95% CI] (the diagonal from each run's own evaluation, the rest from
    its cross_tasks)."""
    cells: dict[tuple[str, str], str] = {}
    sources, targets = [], []
    for run_dir in run_dirs:
        ev = _load(run_dir, "evaluation.json")
        sources.append(ev["task"])
        evals = [ev]
        if os.path.exists(os.path.join(run_dir, "cross.json")):
            evals += _load(run_dir, "cross.json")["targets"]
        for t in evals:
            if t["task"] not in targets:
                targets.append(t["task"])
            hit = [r for r in t["rows"] if r["method"] == method and r["mode"] == mode and not r["control"]]
            if hit:
                cells[(ev["task"], t["task"])] = _fmt(hit[0]["vs_none"]["accuracy"], True)
    lines = [f"| {method} neurons of ({mode}) | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    for src in sources:
        lines.append(f"| {src} | " + " | ".join(cells.get((src, t), "-") for t in targets) + " |")
    return "\n".join(lines)


def markdown_report(run_dirs: Sequence[str]) -> str:
    return "\n".join(run_section(d) for d in run_dirs)
