"""Neuron masks: choosing the good and bad sets from scores, and drawing random controls.

A mask is bool [layers, mlp] over the model's neuron grid. This module depends on numpy only, so
methods, evaluation, reports and notebooks can all select sets the same way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neuronjax.errors import ConfigError


def check_k(k: int, layers: int, mlp: int, where: str = "k") -> None:
    """A set size must be an integer in 1..layers * mlp (the model's neuron count)."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 0 < k <= layers * mlp:
        raise ConfigError(f"{where} = {k!r}: expected an integer in 1..{layers * mlp} (the model's neuron count)")


def top_k_masks(scores, k: int, bad: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(good, bad) bool masks: the k largest scores that are > 0 and the k smallest that are < 0
    (fewer when fewer are strictly positive / negative). Ties go to the lower flat index
    (layer-major order). Non-finite scores never enter a mask. bad=False leaves the bad mask empty
    (methods that only find helpful neurons)."""
    scores = np.asarray(scores, np.float32)
    layers, mlp = scores.shape
    check_k(k, layers, mlp)
    flat = np.where(np.isfinite(scores), scores, 0.0).reshape(-1)
    order_good = np.lexsort((np.arange(flat.size), -flat))[:k]  # stable: ties -> lower index
    good = np.zeros(flat.size, bool)
    good[order_good[flat[order_good] > 0]] = True
    bad_mask = np.zeros(flat.size, bool)
    if bad:
        order_bad = np.lexsort((np.arange(flat.size), flat))[:k]
        bad_mask[order_bad[flat[order_bad] < 0]] = True
    return good.reshape(layers, mlp), bad_mask.reshape(layers, mlp)


def draw_per_layer(layers: int, mlp: int, good_per_layer: Sequence[int], bad_per_layer: Sequence[int],
                   seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per layer, in order: good_per_layer[l] + bad_per_layer[l] distinct neurons drawn uniformly
    without replacement by numpy's default_rng(seed); the first good_per_layer[l] are good, the
    rest bad."""
    rng = np.random.default_rng(seed)
    good = np.zeros((layers, mlp), bool)
    bad = np.zeros((layers, mlp), bool)
    for layer, (g, b) in enumerate(zip(good_per_layer, bad_per_layer)):
        picked = rng.choice(mlp, size=int(g) + int(b), replace=False)
        good[layer, picked[:g]] = True
        bad[layer, picked[g:]] = True
    return good, bad


def random_like(good: np.ndarray, bad: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(good, bad) bool [layers, mlp]: a random control with the per-layer counts of the
    reference masks (the draw of the `random` method, `Random.like(good, bad, seed)`)."""
    good, bad = np.asarray(good, bool), np.asarray(bad, bool)
    if good.ndim != 2 or good.shape != bad.shape:
        raise ConfigError(f"random_like: reference good {good.shape} and bad {bad.shape} masks must both be [layers, mlp]")
    layers, mlp = good.shape
    return draw_per_layer(layers, mlp, good.sum(axis=1), bad.sum(axis=1), seed)
