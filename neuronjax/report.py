"""Markdown tables of evaluated runs, and an HTML page with pictures of them
(`neuronjax report RUN_DIR...`)."""

from __future__ import annotations

import dataclasses
import html
import json
import os
from typing import Optional, Sequence

import numpy as np

from neuronjax.evaluation.results import Interval


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


def compare_table(evaluation: dict) -> str:
    """One line per (a, b, mode) of evaluate.compare: a minus b, both metrics."""
    pairs = evaluation.get("compare") or []
    if not pairs:
        return ""
    lines = ["| a - b | mode | K (a / b) | accuracy difference [95% CI] | consistent difference [95% CI] | a vs b |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for p in pairs:
        d = p["difference"]
        lines.append(f"| {p['a']} - {p['b']} | {p['mode']} | {p['k_a']} / {p['k_b']} | {_fmt(d['accuracy'], True)} | "
                     f"{_fmt(d['consistent'], True)} | {_verdict(d['accuracy'])} |")  # fmt: skip
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
    paired = compare_table(ev)
    if paired:
        out += ["", "Head to head: accuracy of one method's sets minus another's, paired over items [95% CI]:", "",
                paired]  # fmt: skip
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


# ----------------------------------------------------------------------------- pictures + HTML

PICTURES = "report"  # <run>/report/: index.html and the PNG files
INDEX = "index.html"


@dataclasses.dataclass
class Picture:
    """One picture of the HTML report: drawn into `file`, or skipped with the reason."""

    name: str  # e.g. "layer_counts"
    title: str
    caption: str = ""
    file: Optional[str] = None  # PNG file name inside the report directory; None when skipped
    skipped: str = ""
    data: dict = dataclasses.field(default_factory=dict)  # the numbers handed to the plot function


@dataclasses.dataclass
class HtmlReport:
    directory: str
    index: str  # path of index.html
    pictures: list[Picture]

    def summary(self) -> str:
        drawn = [p for p in self.pictures if p.file]
        skipped = [p for p in self.pictures if not p.file]
        line = f"report: {len(drawn)} picture(s) and {INDEX} written to {os.path.abspath(self.directory)}"
        if skipped:
            line += "; skipped: " + "; ".join(f"{p.name} ({p.skipped})" for p in skipped)
        return line


def run_methods(run_dir: str) -> list[str]:
    """The run's methods in their configured order (those with saved neurons, then the rest)."""
    order: list[str] = []
    path = os.path.join(run_dir, "evaluation.json")
    if os.path.exists(path):
        order += list(_load(run_dir, "evaluation.json").get("methods", {}))
    cfg = os.path.join(run_dir, "config.yaml")
    if os.path.exists(cfg):
        import yaml

        with open(cfg) as f:
            order += list(((yaml.safe_load(f) or {}).get("identify") or {}).get("methods") or [])
    neurons = os.path.join(run_dir, "neurons")
    saved = sorted(os.listdir(neurons)) if os.path.isdir(neurons) else []
    saved = [m for m in saved if os.path.exists(os.path.join(neurons, m, "neurons.json"))]
    return [m for m in dict.fromkeys(order + saved) if m in saved]


def load_run_sets(run_dir: str, methods: Sequence[str] = ()) -> dict:
    """{method: NeuronSet} of the run's saved neurons (all, or these methods)."""
    from neuronjax.io.neurons import load_neurons

    names = [m for m in run_methods(run_dir) if not methods or m in methods]
    return {m: load_neurons(os.path.join(run_dir, "neurons", m)) for m in names}


def layer_count_data(sets: dict) -> tuple[dict, dict]:
    """Good and bad neurons per layer of every set: ({method: int [layers]}, same for bad)."""
    good = {m: np.asarray(ns.good, bool).sum(axis=1) for m, ns in sets.items()}
    bad = {m: np.asarray(ns.bad, bool).sum(axis=1) for m, ns in sets.items()}
    return good, bad


def _triple(d: dict) -> list[float]:
    return [d["value"], d["low"], d["high"]]


def curve_data(evaluation: dict) -> dict:
    """{method: {mode: {"k", "value", "low", "high", "ctrl_value", "ctrl_low", "ctrl_high"}}} from
    the "curve" rows, with each method's own-K row of the same mode added as a point."""
    curve = evaluation.get("curve") or []
    if not curve:
        return {}
    modes = list(dict.fromkeys(r["mode"] for r in curve))
    methods = list(dict.fromkeys(r["method"] for r in curve))
    rows = [r for r in curve + evaluation["rows"] if r["method"] in methods and r["mode"] in modes]
    points: dict = {}
    for r in rows:
        points.setdefault((r["method"], r["mode"], r["k"]), {})["ctrl" if r["control"] else "set"] = r
    out: dict = {}
    for (m, mode, k), p in sorted(points.items(), key=lambda kv: (methods.index(kv[0][0]), modes.index(kv[0][1]), kv[0][2])):
        if "set" not in p or "ctrl" not in p:
            continue
        c = out.setdefault(m, {}).setdefault(mode, {key: [] for key in ("k", "value", "low", "high", "ctrl_value", "ctrl_low", "ctrl_high")})
        c["k"].append(k)
        for prefix, row in (("", p["set"]), ("ctrl_", p["ctrl"])):
            v, lo, hi = _triple(row["accuracy"])
            c[prefix + "value"].append(v)
            c[prefix + "low"].append(lo)
            c[prefix + "high"].append(hi)
    return out


def intervention_data(evaluation: dict) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(methods, modes, change, control, empty): accuracy change against no intervention (value,
    low, high) of every method x mode at its own K and of its random control (NaN where missing),
    and where the mode edits an empty set (suppress_good without good neurons, ...)."""
    rows = [r for r in evaluation["rows"] if r["method"] != "none"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    change = np.full((len(methods), len(modes), 3), np.nan)
    control = np.full_like(change, np.nan)
    empty = np.zeros((len(methods), len(modes)), bool)
    for r in rows:
        at = methods.index(r["method"]), modes.index(r["mode"])
        (control if r["control"] else change)[at] = _triple(r["vs_none"]["accuracy"])
        if not r["control"]:
            mode = r["mode"]
            edited = r["good"] if mode.endswith("_good") else r["bad"] if mode.endswith("_bad") else r["good"] + r["bad"]
            empty[at] = edited == 0
    return methods, modes, change, control, empty


def letter_data(evaluation: dict) -> dict:
    """{method: {"none": [4 shares], mode: [4 shares], ...}} of the chosen option letters."""
    rows = [r for r in evaluation["rows"] if not r["control"] and "letters" in r]
    none = next((r["letters"] for r in rows if r["method"] == "none"), None)
    out: dict = {}
    for r in rows:
        if r["method"] == "none":
            continue
        hist = out.setdefault(r["method"], {} if none is None else {"none": none})
        hist[r["mode"]] = r["letters"]
    return out


def _set_label(ns, run_dir: str) -> str:
    task = ns.meta.get("task", {}).get("name", "?")
    run = os.path.basename(os.path.normpath(run_dir))
    return task if run == task else f"{task} ({run})"


def chance_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Expected |A ∩ B| of two independent random sets with these per-layer counts."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a.sum(1) * b.sum(1) / a.shape[1]).sum())


def _overlap_picture(name: str, labels: list[str], sets: list, out_dir: str, title: str, what: str) -> Picture:
    from neuronjax import plots

    pic = Picture(name, title)
    if len(sets) < 2:
        pic.skipped = f"{what}: fewer than two neuron sets to compare"
        return pic
    shapes = {tuple(ns.good.shape) for ns in sets}
    if len(shapes) > 1:
        pic.skipped = f"{what}: the sets come from different neuron grids {sorted(shapes)}"
        return pic
    good, bad = [ns.good for ns in sets], [ns.bad for ns in sets]
    ig, jg = plots.overlap_matrices(good)
    ib, jb = plots.overlap_matrices(bad)
    pic.data = {"labels": labels, "good_intersection": ig, "good_jaccard": jg, "bad_intersection": ib, "bad_jaccard": jb}
    n = len(sets)
    chance = max((max(chance_overlap(good[i], good[j]), chance_overlap(bad[i], bad[j]))
                  for i in range(n) for j in range(n) if i != j), default=0.0)  # fmt: skip
    pic.file = name + ".png"
    plots.overlap_heatmap(os.path.join(out_dir, pic.file), labels, good, bad, title)
    pic.caption = (
        f"{what}. Cells: neurons shared by the row's and the column's set (diagonal: the set's size); "
        f"color: Jaccard index |A∩B| / |A∪B|. Two random sets with the same per-layer counts would share "
        f"at most about {chance:.1f} neurons for any of these pairs."
    )
    return pic


def run_pictures(run_dir: str, out_dir: str, prefix: str = "") -> list[Picture]:
    """Draw the pictures of one evaluated run into out_dir (file names start with prefix)."""
    from neuronjax import plots

    ev = _load(run_dir, "evaluation.json")
    task, run = ev["task"], ev.get("run", os.path.basename(run_dir))
    where = f"task {task}" if run == task else f"run {run}, task {task}"
    pics: list[Picture] = []
    sets = load_run_sets(run_dir)

    pic = Picture(prefix + "layer_counts", "Good and bad neurons per layer")
    if sets:
        good, bad = layer_count_data(sets)
        pic.data = {"good": good, "bad": bad}
        pic.file = pic.name + ".png"
        plots.layer_counts(os.path.join(out_dir, pic.file), good, bad, f"Good and bad neurons per layer ({where})")
        pic.caption = ("Per method, the number of good neurons (up) and bad neurons (down) in each layer, "
                       "read from the saved masks under neurons/<method>/.")  # fmt: skip
    else:
        pic.skipped = f"{run_dir}/neurons holds no saved neuron sets"
    pics.append(pic)

    pic = Picture(prefix + "k_curve", "Accuracy against K")
    curves = curve_data(ev)
    if curves:
        none = next(r for r in ev["rows"] if r["method"] == "none")
        pic.data = {"curves": curves, "baseline": _triple(none["accuracy"])}
        pic.file = pic.name + ".png"
        plots.k_curve(os.path.join(out_dir, pic.file), curves, pic.data["baseline"], f"Accuracy against K ({where})")
        pic.caption = (
            "Held-out accuracy when the top-K good and bad neurons of each method are selected again at "
            "every K and intervened on, with 95% bootstrap intervals over items (error bars). Shaded "
            "bands and dotted lines: the same mode on random sets with the same per-layer counts (pooled "
            f"over {len(ev['random_seeds'])} seeds). Dashed line: no intervention. Sets without a score "
            "order (the random method) have no curve."
        )
    else:
        pic.skipped = ("no accuracy-against-K rows in evaluation.json (evaluate.k_values was empty); "
                       f"add e.g. evaluate.k_values=[10,30,100,300] and run `neuronjax evaluate {run_dir}`")  # fmt: skip
    pics.append(pic)

    methods, modes, change, control, empty = intervention_data(ev)
    pic = Picture(prefix + "interventions", "Interventions against random controls")
    if methods:
        pic.data = {"methods": methods, "modes": modes, "change": change, "control": control, "empty": empty}
        pic.file = pic.name + ".png"
        plots.intervention_bars(os.path.join(out_dir, pic.file), methods, modes, change, control, empty,
                                f"Accuracy change against no intervention ({where})")  # fmt: skip
        pic.caption = (
            "Change in held-out accuracy against no intervention for each method's set at its own K "
            "(colored) and for random sets with the same per-layer counts (grey), with 95% bootstrap "
            "intervals over items. The table above gives the numbers."
        )
    else:
        pic.skipped = "evaluation.json has no intervention rows"
    pics.append(pic)

    hist = letter_data(ev)
    pic = Picture(prefix + "letters", "Chosen option before and after interventions")
    if hist:
        pic.data = {"hist": hist}
        pic.file = pic.name + ".png"
        plots.letter_histogram(os.path.join(out_dir, pic.file), hist, f"Chosen option ({where})")
        pic.caption = ("Share of held-out prompts (all proxies) on which the model chose each option position, "
                       "without intervention (\"none\") and under each intervention of each method's set. "
                       "A share moving towards one position under an intervention is a position bias it introduces.")  # fmt: skip
    else:
        pic.skipped = "evaluation.json rows have no \"letters\" field"
    pics.append(pic)

    pics.append(_overlap_picture(prefix + "overlap_methods", list(sets), list(sets.values()), out_dir,
                                 f"Overlap of neuron sets across methods ({where})",
                                 f"The sets of every method of run {run}"))  # fmt: skip
    return pics


def _common_method(runs: Sequence[str], wanted: Optional[str]) -> tuple[Optional[str], str]:
    per_run = [run_methods(d) for d in runs]
    common = [m for m in per_run[0] if all(m in p for p in per_run[1:])] if per_run else []
    if wanted:
        if wanted in common:
            return wanted, ""
        return None, f"method {wanted!r} is not saved in every run ({', '.join(f'{d}: {p}' for d, p in zip(runs, per_run))})"
    for m in ["neuronllm"] + common:
        if m in common:
            return m, ""
    return None, "the runs have no method in common"


def _identification_table(labels: Sequence[str], sets: Sequence, run_dirs: Sequence[str]) -> str:
    """How each compared set was identified (markdown)."""
    lines = ["| set | run directory | good / bad | K | z | identification items (proxies) | attribution |",
             "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for label, ns, d in zip(labels, sets, run_dirs):
        meta = ns.meta
        method, stats, attr = meta.get("method", {}), meta.get("stats", {}), meta.get("attribution", {})
        how = ", ".join(f"{k}={attr[k]}" for k in ("method", "steps", "groups") if k in attr) or "-"
        lines.append(
            f"| {label} | {os.path.basename(os.path.normpath(d))} | {int(ns.good.sum())} / {int(ns.bad.sum())} | "
            f"{method.get('k', '-')} | {method.get('z', '-')} | {stats.get('items', '?')} ({stats.get('proxies', '?')}) | {how} |"
        )
    return "\n".join(lines)


def _prefixes(run_dirs: Sequence[str]) -> list[str]:
    if len(run_dirs) == 1:
        return [""]
    out, seen = [], set()
    for i, d in enumerate(run_dirs):
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in os.path.basename(os.path.normpath(d)))
        out.append(f"{name}_" if name not in seen else f"{name}{i}_")
        seen.add(name)
    return out


def default_pictures_dir(run_dirs: Sequence[str]) -> str:
    """<run>/report for one run; <the runs' common parent>/report for several."""
    if len(run_dirs) == 1:
        return os.path.join(run_dirs[0], PICTURES)
    return os.path.join(os.path.commonpath([os.path.abspath(d) for d in run_dirs]), PICTURES)


def write_html_report(run_dirs: Sequence[str], out_dir: Optional[str] = None, compare: Sequence[str] = (),
                      overlap_method: Optional[str] = None) -> HtmlReport:  # fmt: skip
    """Draw every picture of the evaluated `run_dirs` and write index.html next to them.

    `compare`: further run directories (identification alone is enough) whose sets join the
    across-runs overlap heatmap; that heatmap is drawn when there are two runs or more, with the
    sets of `overlap_method` (default neuronllm, else the first method every run saved)."""
    for d in compare:
        if not run_methods(d):
            raise FileNotFoundError(f"{d}: no saved neuron sets under {os.path.join(d, 'neurons')}; "
                                    "run `neuronjax identify` for it first")  # fmt: skip
    out_dir = out_dir or default_pictures_dir(run_dirs)
    os.makedirs(out_dir, exist_ok=True)
    sections, pictures = [], []
    for run_dir, prefix in zip(run_dirs, _prefixes(run_dirs)):
        pics = run_pictures(run_dir, out_dir, prefix)
        pictures += pics
        sections.append(_html_run(run_dir, pics))
    everyone = list(run_dirs) + list(compare)
    if len(everyone) > 1:
        method, why = _common_method(everyone, overlap_method)
        body = []
        if len(run_dirs) > 1:
            body += [_md_html("Accuracy [95% CI] of every run:\n\n" + summary_table(run_dirs))]
        if method is None:
            pic = Picture("overlap_runs", "Overlap of neuron sets across runs", skipped=why)
        else:
            sets = [load_run_sets(d, [method])[method] for d in everyone]
            tasks = [ns.meta.get("task", {}).get("name", "?") for ns in sets]
            labels = tasks if len(set(tasks)) == len(tasks) else [_set_label(ns, d) for ns, d in zip(sets, everyone)]
            pic = _overlap_picture("overlap_runs", labels, sets, out_dir,
                                   f"Overlap of {method} neuron sets across runs", f"The {method} sets of {len(sets)} runs")  # fmt: skip
            body.append(_md_html(f"The {method} sets compared:\n\n" + _identification_table(labels, sets, everyone)))
        pictures.append(pic)
        body.append(_html_picture(pic))
        sections.append("<section>\n<h2>Across runs</h2>\n" + "\n".join(body) + "\n</section>")
    index = os.path.join(out_dir, INDEX)
    names = ", ".join(os.path.basename(os.path.normpath(d)) for d in run_dirs)
    with open(index, "w") as f:
        f.write(_HTML_HEAD.format(title=html.escape(f"neuronjax report: {names}")))
        f.write("\n".join(sections))
        f.write("\n</body>\n</html>\n")
    return HtmlReport(out_dir, index, pictures)


_HTML_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; }}
th {{ background: #f2f2f2; }}
td.r, th.r {{ text-align: right; }}
td.lower {{ background: #fde0dd; }} td.higher {{ background: #e0f3db; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 0.9em; color: #444; max-width: 1000px; }}
p.skipped {{ color: #8a4b00; background: #fff4e5; padding: 0.5em; }}
pre {{ background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }}
</style>
</head>
<body>
<h1>{title}</h1>
"""


def _md_html(text: str) -> str:
    """The markdown this module writes (## headings, paragraphs, pipe tables) as HTML."""
    out, table, para = [], [], []

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    def flush():
        if para:
            out.append("<p>" + html.escape(" ".join(para)) + "</p>")
            para.clear()
        if table:
            head, align, body = cells(table[0]), cells(table[1]), [cells(t) for t in table[2:]]
            cls = [' class="r"' if a.endswith(":") else "" for a in align]
            rows = ["<tr>" + "".join(f"<th{c}>{html.escape(h)}</th>" for h, c in zip(head, cls)) + "</tr>"]
            for r in body:
                tds = []
                for v, c in zip(r, cls):
                    if v in ("lower", "higher"):
                        c = f' class="{v}"'
                    tds.append(f"<td{c}>{html.escape(v)}</td>")
                rows.append("<tr>" + "".join(tds) + "</tr>")
            out.append("<table>\n" + "\n".join(rows) + "\n</table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            if para:
                flush()
            table.append(line)
        elif not line.strip():
            flush()
        elif line.startswith("#"):
            flush()
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        else:
            if table:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(out)


def _html_picture(pic: Picture) -> str:
    if not pic.file:
        return f'<p class="skipped"><b>{html.escape(pic.title)}</b>: not drawn: {html.escape(pic.skipped)}.</p>'
    return (f'<figure id="{html.escape(pic.name)}">\n<img src="{html.escape(pic.file)}" alt="{html.escape(pic.title)}">\n'
            f"<figcaption><b>{html.escape(pic.title)}.</b> {html.escape(pic.caption)}</figcaption>\n</figure>")  # fmt: skip


def _settings_html(run_dir: str, ev: dict) -> str:
    model = ev.get("model", {})
    stats = next(iter(ev.get("identify", {}).values()), {})
    items = [
        ("run", ev.get("run", os.path.basename(run_dir))),
        ("task", ev["task"]),
        ("model", f"{model.get('model_id', '?')} ({model.get('model_type', '?')}, {model.get('layers', '?')} layers x "
                  f"{model.get('mlp', '?')} FFN neurons)"),
        ("identification", f"{stats.get('items', '?')} items, {stats.get('proxies', '?')} proxies, "
                           f"{stats.get('prompts_per_second', 0):.2f} prompts/s"),
        ("evaluation", f"{ev['items']} held-out items, {ev['proxies']} proxies, {ev.get('seconds', '?')} s"),
        ("intervals", f"95% bootstrap over items, {ev['bootstrap']} resamples"),
        ("random controls", f"same per-layer counts, seeds {ev['random_seeds']} pooled"),
        ("intervention positions", "all positions" if ev.get("all_positions") else "last prompt position"),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    out = [f"<table>{rows}</table>"]
    methods = ev.get("methods", {})
    if methods:
        lines = ["<tr><th>method</th><th>K</th><th>settings</th></tr>"]
        for name, m in methods.items():
            rest = {k: v for k, v in m.items() if k not in ("name", "k") and not isinstance(v, (list, dict))}
            text = ", ".join(f"{k}={v}" for k, v in rest.items())
            lines.append(f"<tr><td>{html.escape(name)}</td><td class=\"r\">{html.escape(str(m.get('k', '-')))}</td>"
                         f"<td>{html.escape(text)}</td></tr>")  # fmt: skip
        out.append("<table>" + "".join(lines) + "</table>")
    cfg = os.path.join(run_dir, "config.yaml")
    if os.path.exists(cfg):
        with open(cfg) as f:
            out.append(f"<details><summary>config.yaml</summary><pre>{html.escape(f.read())}</pre></details>")
    return "\n".join(out)


def _html_run(run_dir: str, pics: list[Picture]) -> str:
    ev = _load(run_dir, "evaluation.json")
    md = run_section(run_dir).splitlines()
    heading, rest = md[0], "\n".join(md[1:])
    return "\n".join([
        "<section>", _md_html(heading), "<h3>Settings</h3>", _settings_html(run_dir, ev),
        "<h3>Tables</h3>", _md_html(rest), "<h3>Pictures</h3>", *[_html_picture(p) for p in pics], "</section>",
    ])  # fmt: skip
