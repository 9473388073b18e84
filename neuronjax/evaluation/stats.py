"""Accuracy, permutation-consistent accuracy and their bootstrap intervals (NeuronLLM step 7).

Resampling is over items (the proxies of an item stay together), with one seeded set of resamples
shared by every condition of an evaluation, so that differences between two conditions are paired.
Axis names: seed (pooled random controls), item, proxy, resample.

A paired difference also gets a two-sided bootstrap p-value from the same resamples as its
interval, p = 2 min(share of resampled differences <= 0, share >= 0), floored at 1 / (resamples
+ 1) (Efron and Tibshirani 1993, ch. 16; it is below 0.05 about when the 95% percentile interval
excludes zero). A bootstrap p-value rather than a paired permutation test: it costs nothing more
(the resamples are already drawn), it agrees with the interval printed next to it, and it serves
both metrics and pooled random controls as they are (a permutation test of the consistent
accuracy against a pooled control would need its own exchangeability argument). Verdicts over a
table's rows are then corrected for multiplicity with Holm's step-down method (Holm 1979), which
controls the family-wise error rate with no assumption on how the rows' tests depend on each
other (they share the unedited model and the resamples, so they do depend).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from neuronjax.evaluation.results import METRICS, Interval, Metrics

ALPHA = 0.05  # family-wise error rate of the corrected verdicts


def per_item(correct: np.ndarray, item_index: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(right proxies [..., item], proxies [item]) from correct bool [..., proxy]; the leading
    axes (interventions, seeds) are kept."""
    lead = correct.shape[:-1]
    right = np.zeros(lead + (num_items,), np.float64)
    np.add.at(right, (..., item_index), correct.astype(np.float64))
    total = np.bincount(item_index, minlength=num_items).astype(np.float64)
    return right, total


def bootstrap_indices(num_items: int, resamples: int, seed: int) -> np.ndarray:
    """int [resample, item]: items drawn with replacement (seeded: every condition of a run uses
    the same resamples, which makes the paired differences paired)."""
    return np.random.default_rng(seed).integers(0, num_items, (resamples, num_items))


def _interval(point: float, samples: np.ndarray, p: Optional[float] = None) -> Interval:
    low, high = np.percentile(samples, [2.5, 97.5])
    return Interval(float(point), float(low), float(high), p=p)


def bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided p-value of a paired difference from its resampled values [resample]:
    2 min(share <= 0, share >= 0), at least 1 / (resamples + 1) and at most 1."""
    d = np.asarray(differences, np.float64)
    share = min(np.mean(d <= 0), np.mean(d >= 0))
    return float(min(1.0, max(2.0 * share, 1.0 / (d.size + 1))))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order: with p sorted ascending, p_(i) times
    (m - i + 1), made non-decreasing along the sorted order, capped at 1. A hypothesis is
    rejected at family-wise level alpha where its adjusted p-value is below alpha."""
    p = np.asarray(p_values, np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m, np.float64)
    out[order] = stepped
    return out


def corrected_verdict(interval: Interval, p_adjusted: float, alpha: float = ALPHA) -> str:
    """The side of the point value, "higher" or "lower", where the adjusted p-value is below
    alpha; else "n.s."."""
    if p_adjusted >= alpha or interval.value == 0:
        return "n.s."
    return "higher" if interval.value > 0 else "lower"


def adjust(intervals: Sequence[Interval], alpha: float = ALPHA) -> list[Interval]:
    """The intervals (each with its p-value) of one family, with their Holm-adjusted p-values and
    corrected verdicts filled in."""
    adjusted = holm([iv.p for iv in intervals]) if intervals else []
    return [iv.with_correction(float(q), corrected_verdict(iv, float(q), alpha)) for iv, q in zip(intervals, adjusted)]


def _samples(right: np.ndarray, total: np.ndarray, resamples: np.ndarray, metric: str) -> np.ndarray:
    """`metric` over each row of item indices resamples [resample, item]: accuracy (right proxies
    over proxies, seeds pooled) or consistent accuracy (share of present items right under every
    proxy, averaged over seeds). Items with no proxy count for neither."""
    right = np.atleast_2d(right)
    seeds = right.shape[0]
    present = total > 0
    if metric == "accuracy":
        return right.sum(axis=0)[resamples].sum(axis=1) / np.maximum(total[resamples].sum(axis=1) * seeds, 1)
    a = (right == total[None]).mean(axis=0)[resamples] * present[resamples]
    return a.sum(axis=1) / np.maximum(present[resamples].sum(axis=1), 1)


def _everything(total: np.ndarray) -> np.ndarray:
    """The sample itself, as one 'resample' [1, item]."""
    return np.arange(total.shape[0])[None]


def accuracy_stats(right: np.ndarray, total: np.ndarray, resamples: np.ndarray) -> Metrics:
    """Accuracy and permutation-consistent accuracy with 95% bootstrap intervals.

    right [seed, item] (or [item]): right proxies per item, averaged over the leading axis (the
    seeds of a pooled random control); total [item]: proxies per item. Items with no proxy are
    not counted."""
    every = _everything(total)
    return Metrics(**{m: _interval(_samples(right, total, every, m)[0], _samples(right, total, resamples, m))
                      for m in METRICS})  # fmt: skip


def difference_stats(right_a: np.ndarray, right_b: np.ndarray, total: np.ndarray, resamples: np.ndarray) -> Metrics:
    """a minus b (each [seed, item] or [item]) for both metrics, paired over the same resamples,
    each with its two-sided bootstrap p-value (`bootstrap_p`)."""
    every = _everything(total)
    out = {}
    for m in METRICS:
        point = _samples(right_a, total, every, m)[0] - _samples(right_b, total, every, m)[0]
        samples = _samples(right_a, total, resamples, m) - _samples(right_b, total, resamples, m)
        out[m] = _interval(point, samples, p=bootstrap_p(samples))
    return Metrics(**out)
