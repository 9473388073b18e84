"""Pictures of identified neurons and their evaluation (PNG files, matplotlib's Agg canvas).

Every function takes plain numbers (arrays, dicts of arrays) and a path, draws one figure and
writes it; gathering those numbers from a run directory is `neuronjax.report.pictures`'s job.
matplotlib is imported inside the functions, so importing this module costs nothing, and no
pyplot state or interactive backend is involved (each figure gets its own Agg canvas).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

DPI = 100
GOOD_COLOR = "#1b9e77"
BAD_COLOR = "#d95f02"
CONTROL_COLOR = "#9a9a9a"
LETTERS = ("A", "B", "C", "D")
CONTROL_METHODS = ("random",)  # methods whose sets are controls: drawn grey and titled as such
# Colors of the conditions in the letter histogram; "none" (no intervention) is the reference.
CONDITION_COLORS = {
    "none": "#4d4d4d",
    "suppress_good": "#e7298a",
    "suppress_bad": "#66a61e",
    "enhancer": "#1f78b4",
    "degrader": "#e6ab02",
}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    return path


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = 2 if n == 4 else min(n, max_cols)  # 2 x 2 rather than 3 + 1
    return math.ceil(n / cols), cols


def _bottom(axes, cols: int) -> list:
    """The lowest panel of every column (with its x tick labels shown, also under shared axes)."""
    n = len(axes)
    out = [ax for i, ax in enumerate(axes) if i + cols >= n]
    for ax in out:
        ax.xaxis.set_tick_params(labelbottom=True)
    return out


def _axes(fig, n: int, max_cols: int = 3, **kw):
    rows, cols = _grid(n, max_cols)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, **kw)).reshape(-1)
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]


def layer_counts(path: str, good: Mapping[str, np.ndarray], bad: Mapping[str, np.ndarray], title: str = "") -> str:
    """Good neurons per layer (bars up) and bad neurons per layer (bars down), one panel per
    method. `good[m]`, `bad[m]`: int [layers]. A control method (`CONTROL_METHODS`: its sets copy
    another method's per-layer counts) is drawn grey and titled as the control."""
    methods = list(good)
    rows, cols = _grid(len(methods))
    fig = _figure(4.2 * cols, 2.6 * rows + 0.6)
    axes = _axes(fig, len(methods), sharex=True, sharey=True)
    top = max(1, max(int(np.max(good[m], initial=0)) for m in methods), max(int(np.max(bad[m], initial=0)) for m in methods))
    for ax, m in zip(axes, methods):
        g, b = np.asarray(good[m]), np.asarray(bad[m])
        layers = np.arange(len(g))
        control = m in CONTROL_METHODS
        ax.bar(layers, g, color=CONTROL_COLOR if control else GOOD_COLOR, width=0.85, label="good")
        ax.bar(layers, -b, color=CONTROL_COLOR if control else BAD_COLOR, width=0.85, label="bad")
        ax.axhline(0, color="black", lw=0.6)
        if control:  # its counts are drawn to match another method's: not a finding of its own
            ax.set_title(f"{m}: control, not a finding  (good {int(g.sum())}, bad {int(b.sum())})", fontsize=10,
                         color="#555555")  # fmt: skip
            ax.set_facecolor("#f4f4f4")
            continue
        ax.set_title(f"{m}  (good {int(g.sum())}, bad {int(b.sum())})", fontsize=10)
    for ax in axes:
        ax.set_ylim(-top * 1.1, top * 1.1)
        ax.grid(axis="y", alpha=0.3)
        ax.yaxis.set_major_formatter(_abs_formatter())
        ax.xaxis.set_major_locator(_integer_locator())
    for ax in _bottom(axes, cols):
        ax.set_xlabel("layer")
    for ax in axes[::cols]:
        ax.set_ylabel("neurons in the layer")
    first = next((ax for ax, m in zip(axes, methods) if m not in CONTROL_METHODS), axes[0])
    handles = first.get_legend_handles_labels()[0]
    fig.legend(handles, ["good neurons (up)", "bad neurons (down)"], loc="outside lower center", ncol=2, fontsize=8,
               frameon=False)  # fmt: skip
    fig.suptitle(title or "Good and bad neurons per layer", fontsize=12)
    return _save(fig, path)


def headline(path: str, labels: Sequence[str], accuracy: np.ndarray, control: np.ndarray,
             baseline: Sequence[float], title: str = "") -> str:  # fmt: skip
    """The finding at a glance: held-out accuracy under each intervention of one method's sets
    (a colored dot per mode, labels[i]) next to the random sets of the same per-layer counts under
    the same mode (grey), with 95% intervals, against no intervention (dashed line, band: its
    interval). `accuracy`, `control`: float [modes, 3] = (value, low, high), NaN where missing."""
    accuracy, control = np.asarray(accuracy, float), np.asarray(control, float)
    n = len(labels)
    fig = _figure(7.6, 0.5 * n + 1.5)
    ax = fig.subplots()
    y = np.arange(n)
    ax.axvspan(baseline[1], baseline[2], color="black", alpha=0.07, lw=0)
    ax.axvline(baseline[0], color="black", lw=1, ls="--")
    for data, off, hollow in ((control, 0.18, True), (accuracy, -0.18, False)):
        for i, mode in enumerate(labels):
            v, lo, hi = data[i]
            if np.isnan(v):
                continue
            color = CONTROL_COLOR if hollow else CONDITION_COLORS.get(mode, "C0")
            ax.errorbar([v], [y[i] + off], xerr=[[v - lo], [hi - v]], fmt="o", ms=7 if not hollow else 5, color=color,
                        mfc="white" if hollow else color, capsize=3, lw=1.5)  # fmt: skip
            if not hollow:
                ax.annotate(f"{v:.3f}", (hi, y[i] + off), xytext=(5, 0), textcoords="offset points", va="center",
                            fontsize=8, color=color)  # fmt: skip
    ax.set_yticks(y, list(labels))
    ax.invert_yaxis()
    ax.set_xlim(0, 1.04)
    ax.set_xlabel("held-out accuracy (95% bootstrap interval)")
    ax.grid(axis="x", alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", color="#333333", ls="", ms=7),
               Line2D([], [], marker="o", color=CONTROL_COLOR, mfc="white", ls="", ms=5),
               Line2D([], [], color="black", ls="--", lw=1)]  # fmt: skip
    fig.legend(handles, ["the method's sets (color: mode)", "random sets, same per-layer counts and mode",
                         f"no intervention ({baseline[0]:.3f})"], loc="outside lower center", ncol=3, fontsize=8,
               frameon=False)  # fmt: skip
    fig.suptitle(title or "Held-out accuracy under each intervention", fontsize=11)
    return _save(fig, path)


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _abs_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{abs(v):g}")


def k_curve(path: str, curves: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
            baseline: Optional[Sequence[float]] = None, title: str = "") -> str:  # fmt: skip
    """Accuracy against K, one panel per method, one line per mode with its 95% interval
    (error bars) and the random control's 95% interval as a band of the same color.

    `curves[method][mode]` holds equal-length lists "k", "value", "low", "high" and
    "ctrl_value", "ctrl_low", "ctrl_high"; `baseline` = (value, low, high) without intervention."""
    methods = list(curves)
    rows, cols = _grid(len(methods))
    fig = _figure(4.2 * cols, 3.0 * rows + 0.7)
    axes = _axes(fig, len(methods), sharey=True)
    for ax, m in zip(axes, methods):
        ks_all = []
        for mode, c in curves[m].items():
            color = CONDITION_COLORS.get(mode, None)
            k = np.asarray(c["k"], float)
            ks_all += list(k)
            ax.fill_between(k, c["ctrl_low"], c["ctrl_high"], color=CONTROL_COLOR, alpha=0.2, lw=0)
            ax.plot(k, c["ctrl_value"], color=color, lw=1, ls=":", alpha=0.8)
            v = np.asarray(c["value"])
            err = np.vstack([v - np.asarray(c["low"]), np.asarray(c["high"]) - v])
            ax.errorbar(k, v, yerr=err, color=color, marker="o", ms=4, lw=1.5, capsize=3, label=mode)
        if baseline is not None:
            ax.axhline(baseline[0], color="black", lw=0.8, ls="--")
        ax.set_xscale("log")
        ks = sorted(set(ks_all))
        ax.set_xticks(ks, [str(int(x)) for x in ks])
        ax.xaxis.set_minor_locator(_null_locator())
        ax.set_ylim(0, 1.02)
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in _bottom(axes, cols):
        ax.set_xlabel("K (good and bad neurons selected)")
    for ax in axes[::cols]:
        ax.set_ylabel("held-out accuracy")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", ls=":"), Patch(color=CONTROL_COLOR, alpha=0.3)]
    labels += ["random control, same mode (same per-layer counts)", "random control 95% interval"]
    if baseline is not None:
        handles.append(Line2D([], [], color="black", ls="--"))
        labels.append("no intervention")
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
    fig.suptitle(title or "Accuracy against K (95% bootstrap intervals)", fontsize=12)
    return _save(fig, path)


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def intervention_bars(path: str, methods: Sequence[str], modes: Sequence[str], change: np.ndarray,
                      control: np.ndarray, empty: Optional[np.ndarray] = None, title: str = "") -> str:  # fmt: skip
    """Accuracy change against no intervention, one panel per mode, one pair of bars per method:
    the method's set and its random control (same per-layer counts), each with its 95% interval.

    `change`, `control`: float [methods, modes, 3] = (value, low, high); NaN where not measured.
    `empty`: bool [methods, modes], where the mode edits an empty set (marked, not a result)."""
    change, control = np.asarray(change, float), np.asarray(control, float)
    n = len(methods)
    fig = _figure(3.3 * len(modes) + 1.4, 0.42 * n + 1.6)
    axes = np.atleast_1d(fig.subplots(1, len(modes), sharey=True, sharex=True, squeeze=False)).reshape(-1)
    y = np.arange(n)
    h = 0.38
    for j, (ax, mode) in enumerate(zip(axes, modes)):
        for data, off, color, label in ((change, -h / 2, CONDITION_COLORS.get(mode, "C0"), "neuron set"),
                                        (control, h / 2, CONTROL_COLOR, "random control")):  # fmt: skip
            v, lo, hi = data[:, j, 0], data[:, j, 1], data[:, j, 2]
            ax.barh(y + off, v, height=h, color=color, label=label)
            ax.errorbar(v, y + off, xerr=np.vstack([v - lo, hi - v]), fmt="none", ecolor="black", lw=0.8, capsize=2)
        if empty is not None:
            for i in np.flatnonzero(np.asarray(empty)[:, j]):
                ax.text(0.02, y[i], " empty set", va="center", ha="left", fontsize=7, color="#555555",
                        transform=ax.get_yaxis_transform())  # fmt: skip
        ax.axvline(0, color="black", lw=0.7)
        ax.set_title(mode, fontsize=10)
        ax.set_xlabel("accuracy change vs none")
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles, labels = handles[:1] + handles[1:2], ["neuron set (color: mode)", "random control, same per-layer counts"]
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    axes[0].set_yticks(y, list(methods))
    axes[0].invert_yaxis()
    fig.suptitle(title or "Accuracy change against no intervention (95% bootstrap intervals)", fontsize=12)
    return _save(fig, path)


def overlap_matrices(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """|A ∩ B| and Jaccard |A ∩ B| / |A ∪ B| of every pair of boolean masks (int [n, n],
    float [n, n]; the Jaccard of two empty sets is 0)."""
    flat = np.stack([np.asarray(m, bool).reshape(-1) for m in masks]).astype(np.int64)
    inter = flat @ flat.T
    sizes = flat.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return inter, jaccard


def overlap_heatmap(path: str, labels: Sequence[str], good: Sequence[np.ndarray], bad: Sequence[np.ndarray],
                    title: str = "") -> str:  # fmt: skip
    """Overlap of the good sets (left) and of the bad sets (right) between every pair of
    `labels`. Cell text: |A ∩ B|; color: Jaccard |A ∩ B| / |A ∪ B| on its whole 0-1 scale (so
    that small overlaps look small); the diagonal, grey, gives each set's size. When no two sets
    share a neuron, the title says so."""
    n = len(labels)
    stats = [overlap_matrices(good), overlap_matrices(bad)]
    off = ~np.eye(n, dtype=bool)
    vmax = 1.0
    shared = any(int(inter[off].max(initial=0)) > 0 for inter, _ in stats)
    side = max(3.4, 0.6 * n + 1.4)
    fig = _figure(2 * side + 1.4, side + 0.6)
    axes = fig.subplots(1, 2)
    im = None
    for ax, (inter, jac), name in zip(axes, stats, ("good", "bad")):
        shown = np.ma.masked_array(jac, mask=~off)
        cmap = _cmap("Blues").with_extremes(bad="#d9d9d9")
        im = ax.imshow(shown, cmap=cmap, vmin=0, vmax=vmax)
        for i in range(n):
            for j in range(n):
                light = i != j and jac[i, j] > 0.6 * vmax
                ax.text(j, i, str(int(inter[i, j])), ha="center", va="center", fontsize=9,
                        color="white" if light else "black", fontstyle="italic" if i == j else "normal")  # fmt: skip
        ax.set_xticks(range(n), labels, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_yticks(range(n), labels if ax is axes[0] else [""] * n, fontsize=8)
        ax.set_title(f"{name} neurons", fontsize=10)
    fig.colorbar(im, ax=list(axes), shrink=0.7, label="Jaccard |A∩B| / |A∪B|")
    note = "cells: shared neurons; grey diagonal: set size" if shared else "no two sets share a neuron (grey diagonal: set size)"
    fig.suptitle((title or "Overlap of neuron sets") + "\n" + note, fontsize=11)
    return _save(fig, path)


def stability(path: str, labels: Sequence[str], observed: np.ndarray, chance: Sequence[float], title: str = "") -> str:
    """One row per label: the mean Jaccard index between replicates (dot, `observed` [rows, 3] =
    value, low, high) and its chance value (grey cross), on the 0-1 scale."""
    observed = np.asarray(observed, float)
    n = len(labels)
    fig = _figure(7.0, 0.45 * n + 1.4)
    ax = fig.subplots()
    y = np.arange(n)
    for i, label in enumerate(labels):
        v, lo, hi = observed[i]
        color = CONTROL_COLOR if label.split()[0] in CONTROL_METHODS else GOOD_COLOR if " good" in label else BAD_COLOR
        ax.errorbar([v], [y[i]], xerr=[[v - lo], [hi - v]], fmt="o", ms=6, color=color, capsize=3, lw=1.5)
        ax.plot([chance[i]], [y[i]], marker="x", color=CONTROL_COLOR, ms=7, ls="")
    ax.set_yticks(y, list(labels))
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("Jaccard index between replicates (dot, 95% over pairs); x: random sets, same per-layer counts")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title or "Stability across identification items", fontsize=11)
    return _save(fig, path)


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def letter_histogram(path: str, hist: Mapping[str, Mapping[str, Sequence[float]]], title: str = "") -> str:
    """Share of each chosen option letter, one panel per method, one bar per condition
    (`hist[method][condition]` = 4 fractions; "none" = without intervention)."""
    methods = list(hist)
    rows, cols = _grid(len(methods))
    fig = _figure(4.2 * cols, 2.7 * rows + 0.7)
    axes = _axes(fig, len(methods), sharey=True)
    x = np.arange(len(LETTERS))
    top = max(max(max(v) for v in hist[m].values()) for m in methods)
    for ax, m in zip(axes, methods):
        conds = list(hist[m])
        w = 0.8 / len(conds)
        for i, cond in enumerate(conds):
            ax.bar(x - 0.4 + w * (i + 0.5), hist[m][cond], width=w, color=CONDITION_COLORS.get(cond, f"C{i}"),
                   label=cond)  # fmt: skip
        ax.axhline(0.25, color="black", lw=0.7, ls="--")
        ax.set_xticks(x, LETTERS)
        ax.set_ylim(0, min(1.0, top * 1.15 + 0.02))
        ax.set_title(m, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in _bottom(axes, cols):
        ax.set_xlabel("chosen option")
    for ax in axes[::cols]:
        ax.set_ylabel("share of choices")
    handles, labels = [], []
    for ax in axes:  # every condition once, in first-seen order
        for hd, lb in zip(*ax.get_legend_handles_labels()):
            if lb not in labels:
                handles.append(hd)
                labels.append(lb)
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="black", ls="--", lw=0.7))
    labels.append("uniform (0.25)")
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title or "Chosen option before and after interventions", fontsize=12)
    return _save(fig, path)
