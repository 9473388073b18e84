"""Accuracy, permutation-consistent accuracy and their bootstrap intervals (NeuronLLM step 7).

Resampling is over items (the proxies of an item stay together), with one seeded set of resamples
shared by every condition of an evaluation, so that differences between two conditions are paired.
Axis names: seed (pooled random controls), item, proxy, resample.
"""

from __future__ import annotations

import numpy as np

from neuronjax.evaluation.results import METRICS, Interval, Metrics


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


def _interval(point: float, samples: np.ndarray) -> Interval:
    low, high = np.percentile(samples, [2.5, 97.5])
    return Interval(float(point), float(low), float(high))


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
    """a minus b (each [seed, item] or [item]) for both metrics, paired over the same resamples."""
    every = _everything(total)
    out = {}
    for m in METRICS:
        point = _samples(right_a, total, every, m)[0] - _samples(right_b, total, every, m)[0]
        out[m] = _interval(point, _samples(right_a, total, resamples, m) - _samples(right_b, total, resamples, m))
    return Metrics(**out)
