"""What each picture of the HTML report shows: the numbers gathered from a run's typed evaluation
and saved neuron sets (layer counts, accuracy against K, interventions against random controls,
chosen option letters, overlap of sets), handed to `neuronjax.report.plots` to draw, with the
picture's caption or the reason it was not drawn."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from neuronjax.cards import main_method
from neuronjax.evaluation.results import Evaluation, Interval
from neuronjax.report import plots
from neuronjax.report.runs import load_evaluation, load_run_sets, run_name


@dataclasses.dataclass
class Picture:
    """One picture of the HTML report: drawn into `file`, or skipped with the reason."""

    name: str  # e.g. "layer_counts"
    title: str
    caption: str = ""
    file: Optional[str] = None  # PNG file name inside the report directory; None when skipped
    skipped: str = ""
    data: dict = dataclasses.field(default_factory=dict)  # the numbers handed to the plot function


def layer_count_data(sets: dict) -> tuple[dict, dict]:
    """Good and bad neurons per layer of every set: ({method: int [layers]}, same for bad)."""
    good = {m: np.asarray(ns.good, bool).sum(axis=1) for m, ns in sets.items()}
    bad = {m: np.asarray(ns.bad, bool).sum(axis=1) for m, ns in sets.items()}
    return good, bad


def _triple(iv: Interval) -> list[float]:
    return [iv.value, iv.low, iv.high]


CURVE_KEYS = ("k", "value", "low", "high", "ctrl_value", "ctrl_low", "ctrl_high")


def curve_data(evaluation: Evaluation) -> dict:
    """{method: {mode: {"k", "value", "low", "high", "ctrl_value", "ctrl_low", "ctrl_high"}}} from
    the curve rows, with each method's own-K row of the same mode added as a point."""
    curve = evaluation.curve
    if not curve:
        return {}
    modes = list(dict.fromkeys(r.mode for r in curve))
    methods = list(dict.fromkeys(r.method for r in curve))
    points: dict = {}
    for r in curve + evaluation.rows:
        if r.method in methods and r.mode in modes:
            points.setdefault((r.method, r.mode, r.k), {})["ctrl" if r.control else "set"] = r
    out: dict = {}
    for (m, mode, k), p in sorted(points.items(), key=lambda kv: (methods.index(kv[0][0]), modes.index(kv[0][1]), kv[0][2])):
        if "set" not in p or "ctrl" not in p:
            continue
        c = out.setdefault(m, {}).setdefault(mode, {key: [] for key in CURVE_KEYS})
        c["k"].append(k)
        for prefix, row in (("", p["set"]), ("ctrl_", p["ctrl"])):
            for key, x in zip(("value", "low", "high"), _triple(row.accuracy)):
                c[prefix + key].append(x)
    return out


def intervention_data(evaluation: Evaluation) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(methods, modes, change, control, empty): accuracy change against no intervention (value,
    low, high) of every method x mode at its own K and of its random control (NaN where missing),
    and where the mode edits an empty set (suppress_good without good neurons, ...)."""
    methods, modes = evaluation.method_names, evaluation.modes
    change = np.full((len(methods), len(modes), 3), np.nan)
    control = np.full_like(change, np.nan)
    empty = np.zeros((len(methods), len(modes)), bool)
    for r in evaluation.rows:
        if r.method == "none":
            continue
        at = methods.index(r.method), modes.index(r.mode)
        (control if r.control else change)[at] = _triple(r.vs_none.accuracy)
        if not r.control:
            empty[at] = r.empty
    return methods, modes, change, control, empty


def headline_data(evaluation: Evaluation) -> Optional[dict]:
    """The main method's accuracy (value, low, high) under each mode at its own K and its random
    control's, with no intervention's: {"method", "k", "modes", "accuracy" [modes, 3], "control"
    [modes, 3], "baseline" [3]}; None when no set was evaluated. Modes editing an empty set are
    left out."""
    method = main_method(evaluation.method_names)
    if method is None:
        return None
    rows = [r for r in evaluation.sets() if r.method == method and not r.empty]
    if not rows:
        return None
    control = [evaluation.control_of(r) for r in rows]
    nan = [np.nan] * 3
    return {
        "method": method,
        "k": rows[0].k,
        "modes": [r.mode for r in rows],
        "accuracy": np.array([_triple(r.accuracy) for r in rows]),
        "control": np.array([_triple(c.accuracy) if c else nan for c in control]),
        "baseline": _triple(evaluation.baseline.accuracy),
    }


def letter_data(evaluation: Evaluation) -> dict:
    """{method: {"none": [4 shares], mode: [4 shares], ...}} of the chosen option letters."""
    rows = [r for r in evaluation.rows if not r.control and r.letters]
    none = next((list(r.letters) for r in rows if r.method == "none"), None)
    out: dict = {}
    for r in rows:
        if r.method == "none":
            continue
        hist = out.setdefault(r.method, {} if none is None else {"none": none})
        hist[r.mode] = list(r.letters)
    return out


def chance_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Expected |A ∩ B| of two independent random sets with these per-layer counts."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a.sum(1) * b.sum(1) / a.shape[1]).sum())


def overlap_picture(name: str, labels: list[str], sets: list, out_dir: str, title: str, what: str) -> Picture:
    """The overlap heatmap of `sets` (NeuronSets of one neuron grid), labelled `labels`."""
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
    off = ~np.eye(n, dtype=bool)
    shared = int(max(ig[off].max(initial=0), ib[off].max(initial=0)))
    finding = ("No two of these sets share a neuron. " if shared == 0 else
               f"The most any two share is {shared} neuron{'s' if shared != 1 else ''}. ")  # fmt: skip
    pic.caption = (
        f"{what}. {finding}Cells: neurons shared by the row's and the column's set (diagonal: the set's size); "
        f"color: Jaccard index |A∩B| / |A∪B| on its full 0-1 scale. Two random sets with the same per-layer "
        f"counts would share at most about {chance:.1f} neurons for any of these pairs."
    )
    return pic


def stability_picture(run_dir: str, out_dir: str, name: str, where: str) -> Picture | None:
    """The Jaccard index of each method's sets between replicates against chance (stability.json);
    None when the run has no stability.json."""
    from neuronjax.stability import load_stability

    result = load_stability(run_dir)
    if result is None:
        return None
    rows = [r for r in result.rows if not np.isnan(r.jaccard.value)]
    pic = Picture(name, "Stability of the sets across identification items")
    if not rows:
        pic.skipped = "stability.json: no pair of replicates has a non-empty set"
        return pic
    labels = [f"{r.method} {r.side}" + (" (across seeds)" if r.scope != "within seed" else "") for r in rows]
    observed = np.array([[r.jaccard.value, r.jaccard.low, r.jaccard.high] for r in rows])
    chance = np.array([r.chance for r in rows])
    pic.data = {"labels": labels, "observed": observed, "chance": chance}
    pic.file = name + ".png"
    plots.stability(os.path.join(out_dir, pic.file), labels, observed, chance,
                    f"Jaccard of the K sets between replicates ({where})")  # fmt: skip
    pic.caption = (
        f"{result.summary()}. Dots: the mean Jaccard index of each method's good / bad sets over the pairs of "
        "replicates, with the 95% percentile interval over resampled pairs; grey crosses: its exact "
        "expectation for random sets with the same per-layer counts."
    )
    return pic


def run_pictures(run_dir: str, out_dir: str, prefix: str = "", evaluation: Optional[Evaluation] = None) -> list[Picture]:
    """Draw the pictures of one evaluated run into out_dir (file names start with prefix)."""
    ev = evaluation or load_evaluation(run_dir)
    task, run = ev.task, run_name(ev, run_dir)
    where = f"task {task}" if run == task else f"run {run}, task {task}"
    pics: list[Picture] = []
    sets = load_run_sets(run_dir)

    found = headline_data(ev)
    pic = Picture(prefix + "headline", "The finding")
    if found:
        pic.data = found
        pic.file = pic.name + ".png"
        plots.headline(os.path.join(out_dir, pic.file), found["modes"], found["accuracy"], found["control"],
                       found["baseline"], f"{found['method']} (K = {found['k']}): held-out accuracy, {where}")  # fmt: skip
        pic.caption = (
            f"Held-out accuracy when {found['method']}'s neurons are edited under each mode (colored), next to "
            f"random sets with the same per-layer counts under the same mode (grey, pooled over "
            f"{len(ev.random_seeds)} seeds), with 95% bootstrap intervals over items. Dashed line and band: "
            "no intervention."
        )
    else:
        pic.skipped = "no neuron set was evaluated"
    pics.append(pic)

    pic = Picture(prefix + "layer_counts", "Good and bad neurons per layer")
    if sets:
        good, bad = layer_count_data(sets)
        pic.data = {"good": good, "bad": bad}
        pic.file = pic.name + ".png"
        plots.layer_counts(os.path.join(out_dir, pic.file), good, bad, f"Good and bad neurons per layer ({where})")
        controls = [m for m in sets if m in plots.CONTROL_METHODS]
        pic.caption = ("Per method, the number of good neurons (up) and bad neurons (down) in each layer, "
                       "read from the saved masks under neurons/<method>/.")  # fmt: skip
        if controls:
            pic.caption += (f" {', '.join(controls)} (grey) is the random control: it draws as many neurons per "
                            "layer as the method it controls, so its panel repeats that method's counts and shows "
                            "no finding of its own.")  # fmt: skip
    else:
        pic.skipped = f"{run_dir}/neurons holds no saved neuron sets"
    pics.append(pic)

    pic = Picture(prefix + "k_curve", "Accuracy against K")
    curves = curve_data(ev)
    if curves:
        pic.data = {"curves": curves, "baseline": _triple(ev.baseline.accuracy)}
        pic.file = pic.name + ".png"
        plots.k_curve(os.path.join(out_dir, pic.file), curves, pic.data["baseline"], f"Accuracy against K ({where})")
        pic.caption = (
            "Held-out accuracy when the top-K good and bad neurons of each method are selected again at "
            "every K and intervened on, with 95% bootstrap intervals over items (error bars). Shaded "
            "bands and dotted lines: the same mode on random sets with the same per-layer counts (pooled "
            f"over {len(ev.random_seeds)} seeds). Dashed line: no intervention. Sets without a score "
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

    stable = stability_picture(run_dir, out_dir, prefix + "stability", where)
    if stable is not None:
        pics.append(stable)
    pics.append(overlap_picture(prefix + "overlap_methods", list(sets), list(sets.values()), out_dir,
                                f"Overlap of neuron sets across methods ({where})",
                                f"The sets of every method of run {run}"))  # fmt: skip
    return pics
