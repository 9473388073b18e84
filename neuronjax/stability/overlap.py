"""The numbers of a stability comparison: the Jaccard index of two sets, the exact distribution of
the overlap of two random sets with given per-layer counts (per-layer hypergeometrics, convolved),
the chance Jaccard and p-value it gives, and the mean over pairs with a percentile interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from neuronjax.evaluation.results import Interval


def jaccard(a, b) -> float:
    """|A ∩ B| / |A ∪ B| of two bool masks of one shape; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int(np.sum(a | b))
    return float(np.sum(a & b)) / union if union else math.nan


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def hypergeometric(n: int, a: int, b: int) -> np.ndarray:
    """P(I = i), i = 0..min(a, b): the number of neurons shared by a fixed set of a and a uniformly
    random set of b among n (float64)."""
    if not (0 <= a <= n and 0 <= b <= n):
        raise ValueError(f"hypergeometric: set sizes {a}, {b} must lie in 0..{n}")
    i = np.arange(min(a, b) + 1)
    logp = np.array([_log_comb(a, k) + _log_comb(n - a, b - k) - _log_comb(n, b) if b - k <= n - a else -np.inf
                     for k in i])  # fmt: skip
    p = np.exp(logp)
    return p / p.sum()


def intersection_distribution(a_counts: Sequence[int], b_counts: Sequence[int], n: int) -> np.ndarray:
    """P(|A ∩ B| = i), i = 0..sum_l min(a_l, b_l), for A and B random with per-layer counts a_l, b_l
    among n neurons per layer (independent layers: the convolution of per-layer hypergeometrics)."""
    if len(a_counts) != len(b_counts):
        raise ValueError(f"per-layer counts of {len(a_counts)} and {len(b_counts)} layers")
    dist = np.ones(1)
    for a, b in zip(a_counts, b_counts):
        dist = np.convolve(dist, hypergeometric(n, int(a), int(b)))
    return dist


def chance_jaccard(a_counts: Sequence[int], b_counts: Sequence[int], n: int) -> float:
    """Exact E[Jaccard] of two random sets with these per-layer counts (n neurons per layer); NaN
    when both sets are empty."""
    size = int(np.sum(a_counts)) + int(np.sum(b_counts))
    if size == 0:
        return math.nan
    dist = intersection_distribution(a_counts, b_counts, n)
    i = np.arange(len(dist))
    return float(np.sum(dist * i / (size - i)))


def chance_p(a_counts: Sequence[int], b_counts: Sequence[int], n: int, shared: int) -> float:
    """Exact P(|A ∩ B| >= shared) for random sets with these per-layer counts."""
    dist = intersection_distribution(a_counts, b_counts, n)
    return float(min(1.0, np.sum(dist[shared:]))) if shared > 0 else 1.0


def mean_interval(values: Sequence[float], bootstrap: int, seed: int) -> Interval:
    """The mean of `values` (NaN left out) with a 95% percentile interval over `bootstrap`
    resamples of them (numpy default_rng(seed)); NaN when none is finite."""
    x = np.asarray([v for v in values if not math.isnan(v)], np.float64)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(bootstrap, x.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(x.mean()), float(low), float(high))
