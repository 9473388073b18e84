"""The target function F and the accuracy metrics, as pure functions of option scores.

Axis names: proxy = one row per proxy question (batch rows concatenated), option = the k
letters A.. of the task's items (four for most tasks), item = the original question a proxy was
made from.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp


def target_f(scores: jax.Array, gold: jax.Array) -> jax.Array:
    """F = log softmax over the k option scores, taken at the gold option (NeuronLLM Eq. for
    the contrastive target; = minus the cross-entropy of the gold option). scores: float
    [proxy, option]; gold: int [proxy]. Returns float32 [proxy]."""
    log_probs = jax.nn.log_softmax(scores.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(log_probs, gold[:, None].astype(jnp.int32), axis=-1)[:, 0]


def proxy_correct(scores: jax.Array, gold: jax.Array) -> jax.Array:
    """bool [proxy]: the gold option scores strictly above every other option (a tie is wrong,
    so a scorer that cannot tell two options apart earns nothing from the tie)."""
    gold_score = jnp.take_along_axis(scores, gold[:, None].astype(jnp.int32), axis=-1)
    others = jnp.where(jax.nn.one_hot(gold, scores.shape[-1], dtype=bool), -jnp.inf, scores)
    return gold_score[:, 0] > jnp.max(others, axis=-1)


def _valid(valid: Optional[jax.Array], n: int) -> jax.Array:
    return jnp.ones((n,), bool) if valid is None else valid.astype(bool)


def accuracy(scores: jax.Array, gold: jax.Array, valid: Optional[jax.Array] = None) -> jax.Array:
    """float32 []: share of valid proxies answered correctly."""
    ok = _valid(valid, scores.shape[0])
    hits = jnp.sum(proxy_correct(scores, gold) & ok)
    return hits / jnp.maximum(jnp.sum(ok), 1)


def permutation_consistent_accuracy(
    scores: jax.Array,
    gold: jax.Array,
    item_index: jax.Array,
    num_items: int,
    valid: Optional[jax.Array] = None,
) -> jax.Array:
    """float32 []: share of items whose every proxy is answered correctly.

    item_index: int [proxy] in [0, num_items); items with no valid proxy are not counted.
    """
    ok = _valid(valid, scores.shape[0])
    correct = proxy_correct(scores, gold)
    wrong_count = jax.ops.segment_sum((~correct & ok).astype(jnp.int32), item_index, num_items)
    present = jax.ops.segment_sum(ok.astype(jnp.int32), item_index, num_items) > 0
    consistent = present & (wrong_count == 0)
    return jnp.sum(consistent) / jnp.maximum(jnp.sum(present), 1)


def letter_histogram(scores: jax.Array, valid: Optional[jax.Array] = None) -> jax.Array:
    """int32 [option]: how often each letter is the model's choice (argmax; ties go to the
    earlier letter); length k, the number of options. A flat histogram (1 / k each) is what an
    unbiased model gives on AQUA proxies."""
    ok = _valid(valid, scores.shape[0])
    choice = jnp.argmax(scores, axis=-1)
    return jnp.sum(jax.nn.one_hot(choice, scores.shape[-1], dtype=jnp.int32) * ok[:, None], axis=0)
