"""CNI / ACE: contrastive neuron identification by average contrastive effect (NeuronLLM,
arXiv 2601.04548, Sec. 3.3), as a streaming reduction.

For item j with proxies p, the example score of neuron w is ES_j(w) = sum_p attr_{j,p}(w).
G_j = the z neurons with the largest ES_j among those with ES_j > 0; B_j = the z with the
smallest ES_j among those with ES_j < 0. A neuron found in G_j for some item and in B_k for
another is ambiguous and scores 0. Otherwise

    ACE(w) = (1 / N) * sum_j 1[w in G_j or w in B_j] * ES_j(w)

Good neurons: the top K by ACE with ACE > 0; bad neurons: the bottom K with ACE < 0.

The state kept across batches is O(neurons): running sums and per-neuron hit counts, so a task of
any size streams through, and the state is what a resumable run checkpoints. Ties in ES are
broken towards the lower flat index (layer-major), as `lax.top_k` does, so results are
deterministic.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AceState:
    total: jax.Array  # float32 [layers, mlp]: sum over items of ES_j(w) where w in G_j or B_j
    good_hits: jax.Array  # int32 [layers, mlp]: number of items with w in G_j
    bad_hits: jax.Array  # int32 [layers, mlp]: number of items with w in B_j
    items: jax.Array  # int32 []: N, the items seen


def init_state(layers: int, mlp: int) -> AceState:
    z = jnp.zeros((layers, mlp), jnp.float32)
    return AceState(z, jnp.zeros((layers, mlp), jnp.int32), jnp.zeros((layers, mlp), jnp.int32), jnp.zeros((), jnp.int32))


def item_sets(es: jax.Array, z: int) -> tuple[jax.Array, jax.Array]:
    """Per-item G and B as bool masks [items, neurons] from ES [items, neurons]. A non-finite ES
    (NaN, +-inf) ranks as 0, so it never takes one of an item's z slots: `lax.top_k` would put
    NaN and +inf first (and -inf first among the smallest), pushing a finite neuron out of G_j or
    B_j, and an infinite ES would make the neuron's ACE infinite."""
    es = jnp.where(jnp.isfinite(es), es, 0.0)  # 0 is neither > 0 nor < 0: never in G_j or B_j
    top_v, top_i = jax.lax.top_k(es, z)
    bot_v, bot_i = jax.lax.top_k(-es, z)
    rows = jnp.arange(es.shape[0])[:, None]
    good = jnp.zeros(es.shape, bool).at[rows, top_i].set(top_v > 0)
    bad = jnp.zeros(es.shape, bool).at[rows, bot_i].set(bot_v > 0)
    return good, bad


@functools.partial(jax.jit, static_argnames=("z",))
def update(state: AceState, attributions: jax.Array, z: int, valid: jax.Array | None = None) -> AceState:
    """Fold a batch of items in. attributions: float [items, proxies, layers, mlp]; valid: bool
    [items] (False rows, e.g. padding, are ignored)."""
    n, _, layers, mlp = attributions.shape
    es = attributions.astype(jnp.float32).sum(axis=1).reshape(n, layers * mlp)
    good, bad = item_sets(es, z)
    if valid is not None:
        good, bad = good & valid[:, None], bad & valid[:, None]
        n = jnp.sum(valid).astype(jnp.int32)
    shape = (layers, mlp)
    return AceState(
        total=state.total + jnp.where(good | bad, es, 0.0).sum(axis=0).reshape(shape),
        good_hits=state.good_hits + good.sum(axis=0, dtype=jnp.int32).reshape(shape),
        bad_hits=state.bad_hits + bad.sum(axis=0, dtype=jnp.int32).reshape(shape),
        items=state.items + n,
    )


def finalize(state: AceState, mask_ambiguous: bool = True) -> jax.Array:
    """ACE [layers, mlp]. mask_ambiguous=False is the ablation that keeps ambiguous neurons."""
    ace = state.total / jnp.maximum(state.items, 1).astype(jnp.float32)
    if mask_ambiguous:
        ace = jnp.where((state.good_hits > 0) & (state.bad_hits > 0), 0.0, ace)
    return ace


def select(scores: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """(good, bad) bool masks [layers, mlp]: top-k scores > 0 and bottom-k scores < 0 (fewer when
    fewer are strictly positive / negative). Ties go to the lower flat index."""
    from neuronjax.masks import top_k_masks

    good, bad = top_k_masks(scores, k)
    return jnp.asarray(good), jnp.asarray(bad)


def ace_scores(attributions: jax.Array, z: int, mask_ambiguous: bool = True) -> jax.Array:
    """ACE [layers, mlp] of attributions [items, proxies, layers, mlp] in one go."""
    _, _, layers, mlp = attributions.shape
    return finalize(update(init_state(layers, mlp), attributions, z), mask_ambiguous)
