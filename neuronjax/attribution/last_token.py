"""The last prompt position, replayed against a cached prompt.

Attribution only edits the FFN neurons of the last position, and attention is causal, so every
earlier position is the same in every variant. The prompt without its last token is run once and
its keys and values are kept (`neuronjax.cached.prefix_cache`); the last token is then run as a one-token step
against that cache (`base_pass`), and each (layer l, alpha) variant restarts from the unedited
pass as its group's first layer leaves it (`enter_after`, `staircase_f`).

The layers of the replay run under one `lax.scan` over the model's stacked parameters, each step
taking its layer by a dynamic index (the program makes no copy of the weights; XLA's CPU backend
still copies each layer's slice once per pass over the layers, docs/performance.md). Variants are
grouped by the layer they edit. The group of layers lo..hi-1 joins the replay after layer lo:
the base pass saved what that layer computes unedited (its input, its residual after attention,
its neurons), so a row that edits lo runs only lo's down projection on alpha * h + shift, and a
row that edits a later layer starts from the unedited input of lo + 1. One scan over layers
lo+1..L-1 follows, in which each row applies its edit at its own layer (`staircase_f`). A row
still runs the layers between lo + 1 and its own layer unedited: more groups waste less of that
work (about 1/(2 * groups) of the total), fewer groups compile faster and give larger matrix
products. `joined_f` runs the same groups in one pass: each group's rows join the earlier
groups' rows as they leave its first layer, so every layer is read once per pass whatever the
number of groups, and every group's saved values are held at once.

Variants keep their own leading axis: activations are [variant, batch, 1, embed] and every
variant reads the one prompt cache [batch, keys, ...] by broadcasting, never by copying it.

Two targets are read off the final residual stream (``target``): "ce", the contrastive F of the
four option scores, needs only the output-head columns of the candidate tokens
(`option_scores`); "prob", the probability of the gold option over the whole vocabulary
(`gold_probability`), needs the full head, so its [variant, batch, vocab] logits are built a few
variants at a time and recomputed, not stored, for the backward pass.
Axis names: variant, batch (prompts), layers, keys (cached positions), embed, mlp, option,
candidate (tokenizations of one option).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from neuronjax.errors import InputError
from neuronjax.kernels.choice import backend_or_current
from neuronjax.models.decoder import Decoder, KVCache, LayerTables, layer_slice
from neuronjax.tasks.metrics import target_f

Target = Literal["ce", "prob"]
TARGETS = ("ce", "prob")

# Most float32 full-vocabulary logits `gold_probability` builds at once (variants x batch x vocab):
# 2^26 = 256 MiB, a few times that at the peak of the backward pass.
PROB_LOGIT_BUDGET = 1 << 26


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Replay:
    """Everything the one-token steps need. The block parameters are the model's own stacked
    arrays (leading axis = layers), not a copy."""

    params: object  # block parameters, each leaf [layers, ...]
    tables: LayerTables  # per attention kind: rope [kinds, batch, 1, head_dim], masks [kinds, batch, 1, 1, 1, keys + 1]
    keys: jax.Array  # [layers, batch, keys, kv_heads, head_dim]
    values: jax.Array
    x0: jax.Array  # [batch, 1, embed] input of the first layer at the last position


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Base:
    """The unedited last position, layer by layer, as the base pass ran it: what a variant that
    has not yet reached its edit carries (its rows enter the replay from here, `enter_after`)."""

    x_in: jax.Array  # [layers, batch, embed]: the residual entering each layer
    h: jax.Array  # [layers, batch, mlp]: each layer's FFN neurons
    x_mid: jax.Array  # [layers, batch, embed]: the residual after each layer's attention


def replay_inputs(model: Decoder, last_ids: jax.Array, cache: KVCache) -> tuple:
    """(block graphdef, Replay) for one-token steps of the tokens last_ids [batch] after cache."""
    b, t = cache.mask.shape
    positions = cache.mask.sum(axis=1, keepdims=True).astype(jnp.int32)  # [batch, 1]
    key_mask = jnp.concatenate([cache.mask, jnp.ones((b, 1), bool)], axis=1)
    tables = model.layer_tables(positions, jnp.array([t]), jnp.arange(t + 1), key_mask)
    graphdef, params = model.blocks_split()
    replay = Replay(params=params, tables=tables, keys=cache.keys, values=cache.values,
                    x0=model.embed_tokens(last_ids[:, None], positions))  # fmt: skip
    return graphdef, replay


def layer_at(graphdef, replay: Replay, j):
    """(block of layer j, its rope, its mask, its cached (keys, values)); j may be traced."""
    block = nnx.merge(graphdef, layer_slice(replay.params, j))
    kind = replay.tables.kind[j]
    past = (layer_slice(replay.keys, j), layer_slice(replay.values, j))
    return block, replay.tables.rope(kind), replay.tables.bias[kind], past


def run_layers(graphdef, replay: Replay, x: jax.Array, shifts=None):
    """Every layer on one-token rows x [variant, batch, 1, embed].

    shifts: optional [layers, variant, batch, mlp] added to each layer's neurons (their gradient
    is dF/dh). Returns (x, (x_in, h, x_mid)): each layer's input x_in and residual after attention
    x_mid [layers, variant, batch, embed], and its neurons h [layers, variant, batch, mlp].
    """

    def body(x, layer):
        j, shift = layer
        block, rope, bias, past = layer_at(graphdef, replay, j)
        x_mid, _ = block.attend(x, rope, bias, past)
        h = block.neurons(x, x_mid)
        if shift is not None:
            h = h + shift[..., None, :].astype(h.dtype)
        return x_mid + block.ffn_out(h), (x[..., 0, :], h[..., 0, :], x_mid[..., 0, :])

    return jax.lax.scan(body, x, (jnp.arange(replay.keys.shape[0]), shifts))


def option_scores(model: Decoder, x: jax.Array, option_ids: jax.Array) -> jax.Array:
    """float32 [variant, batch, option]: logsumexp of the raw logits of each option's candidate
    tokens, from final residuals x [variant, batch, embed]. Only the candidate columns of the
    output head are computed; the vocabulary normaliser cancels in F."""
    x = model.final_norm(x)
    cols = jnp.take(model.head_weights, jnp.clip(option_ids, 0), axis=1)  # [embed, batch, option, cand]
    logits = model.soft_cap(jnp.einsum("vbe,ebot->vbot", x, cols, preferred_element_type=jnp.float32))
    logits = jnp.where(option_ids[None] >= 0, logits, -jnp.inf)
    return jax.nn.logsumexp(logits, axis=-1)


def f_of_scores(scores: jax.Array, gold: jax.Array) -> jax.Array:
    """F [variant, batch] from option scores [variant, batch, option]."""
    a, b, o = scores.shape
    return target_f(scores.reshape(a * b, o), jnp.tile(gold, a)).reshape(a, b)


def gold_probability(model: Decoder, x: jax.Array, option_ids: jax.Array, gold: jax.Array, budget: int = PROB_LOGIT_BUDGET):
    """P [variant, batch]: the probability of the gold option over the whole vocabulary, the sum
    over its candidate tokens of softmax(logits)[t], from final residuals x [variant, batch, embed].

    The logits are the model's own (full head, soft-capped where the model caps them) in float32.
    When variants x batch x vocab exceeds ``budget``, the variants go through in slices of
    ``budget`` // (batch * vocab) and each slice's logits are recomputed in the backward pass
    (one more head product) instead of being kept, so the largest logits array stays within the
    budget. Within the budget, all variants go at once with nothing recomputed.
    """
    v, b, _ = x.shape
    vocab = model.head_weights.shape[1]
    cand = option_ids[jnp.arange(b), gold]  # [batch, cand]
    valid = cand >= 0
    cand = jnp.clip(cand, 0)

    def one(xv):  # [..., batch, embed] -> [..., batch]
        logits = model.head_logits(xv)  # float32
        idx = jnp.broadcast_to(cand, logits.shape[:-1] + cand.shape[-1:])
        picked = jnp.where(valid, jnp.take_along_axis(logits, idx, axis=-1), -jnp.inf)
        return jnp.exp(jax.nn.logsumexp(picked, axis=-1) - jax.nn.logsumexp(logits, axis=-1))

    rows = max(1, budget // max(1, b * vocab))
    if rows >= v:
        return one(x)
    return jax.lax.map(jax.checkpoint(one), x, batch_size=rows)


def target_of(model: Decoder, x: jax.Array, option_ids: jax.Array, gold: jax.Array, target: Target = "ce"):
    """The target [variant, batch] of final residuals x [variant, batch, embed]: F for "ce", P for
    "prob"."""
    if target == "ce":
        return f_of_scores(option_scores(model, x, option_ids), gold)
    if target == "prob":
        return gold_probability(model, x, option_ids, gold)
    raise InputError(f"target {target!r} unknown; expected one of {TARGETS}")


def base_pass(model, graphdef, replay: Replay, option_ids, gold, shifts=None, target: Target = "ce"):
    """The unedited last position: (F or P [batch], (option scores [batch, option], `Base`)).
    shifts [layers, batch, mlp] as in `run_layers`. The option scores are the candidate
    logsumexps of `option_scores` for either target."""
    shifts = None if shifts is None else shifts[:, None]
    x, (x_in, h, x_mid) = run_layers(graphdef, replay, replay.x0[None], shifts)
    scores = option_scores(model, x[..., 0, :], option_ids)
    if target == "ce":
        f = f_of_scores(scores, gold)
    else:
        f = target_of(model, x[..., 0, :], option_ids, gold, target)
    return f[0], (scores[0], Base(x_in=x_in[:, 0], h=h[:, 0], x_mid=x_mid[:, 0]))


def edit_layer(graphdef, replay: Replay, x: jax.Array, j, start, alpha, shift) -> jax.Array:
    """Layer j (may be traced) on rows x [variant, batch, 1, embed]: the rows with start[v] == j
    replace h by alpha[v] * h + shift[v] (shift [variant, batch, mlp]), the others run unedited."""
    block, rope, bias, past = layer_at(graphdef, replay, j)
    x_mid, _ = block.attend(x, rope, bias, past)
    h = block.neurons(x, x_mid)[..., 0, :]
    here = (start == j)[:, None, None]
    h = jnp.where(here, alpha[:, None, None].astype(h.dtype) * h + shift.astype(h.dtype), h)
    return x_mid + block.ffn_out(h)[..., None, :]


# rows (variants x prompts, over all the call's devices) from which a pass over the layers runs
# its variants as two halves, per backend (`halves_for`; 0 or absent: never). The halves are
# independent chains through every layer, and XLA's CPU runtime runs the operations of the two
# side by side, one on each core,
# where one chain would run each product on both cores and much of the rest on one. Medians of 6
# rounds in rotated order, the replay program alone (2026-12-04, docs/performance.md): 8
# world_facts prompts at m = 16 right Riemann (joined, up to 3,840 rows), 2.717 and 2.738 s
# against 2.831 and 2.837 s, three parts 2.802 s; 4 prompts (1,920 rows), from 1,024 rows on,
# 1.599 s against 1.634 s; 16 prompts at the default nodes (1,904 rows), 1.761 s against 1.906 s;
# but 8 prompts at the default nodes (952 rows) all in halves, 0.922 s against 0.901 s.
# Accelerators keep one chain and its larger products.
HALVES_FROM = {"cpu": 1024}


def halves_for(halves_from: Optional[int] = None, backend: Optional[str] = None) -> int:
    """``halves_from`` itself (0: never), or for None the backend's `HALVES_FROM` (default: the
    default device's backend)."""
    if halves_from is None:
        return HALVES_FROM.get(backend_or_current(backend), 0)
    if int(halves_from) < 0:
        raise InputError(f"halves_from = {halves_from}: expected >= 0 rows (0: never; None: the backend's)")
    return int(halves_from)


def edit_scan(
    model, graphdef, replay: Replay, x: jax.Array, lo: int, hi: int, start, alpha, shift, halves_from: int = 0,
) -> jax.Array:
    """Layers lo..hi-1 on rows x [variant, batch, 1, embed], each as `edit_layer`: row v replaces
    h at layer start[v] by alpha[v] * h + shift[v] and runs unedited elsewhere. halves_from: with
    at least this many rows (variants x batch; 0: never), the variants run as two halves, each
    its own chain through the layers (`HALVES_FROM`); every row's value is the same."""
    v = x.shape[0]
    split = bool(halves_from) and v >= 2 and v * x.shape[1] >= halves_from
    cuts = ((0, v // 2), (v // 2, v)) if split else ((0, v),)

    def body(xs, j):
        return tuple(edit_layer(graphdef, replay, part, j, start[a:b], alpha[a:b], shift[a:b])
                     for part, (a, b) in zip(xs, cuts)), None  # fmt: skip

    # keep every matrix product's output for the backward pass, the attention ones (with batch
    # dimensions) too: 3-10% faster than keeping only those without (2026-11-30, 16 world_facts
    # prompts, interleaved rounds); keeping everything was 10% slower (more memory traffic)
    body = jax.checkpoint(body, policy=jax.checkpoint_policies.dots_saveable)
    xs, _ = jax.lax.scan(body, tuple(x[a:b] for a, b in cuts) if split else (x,), jnp.arange(lo, hi))
    return jnp.concatenate(xs) if split else xs[0]


def entering(x_in: jax.Array, rows: int) -> jax.Array:
    """The unedited residual entering a layer, x_in [batch, embed], as `rows` variant rows
    [rows, batch, 1, embed]."""
    return jnp.broadcast_to(x_in[None, :, None, :], (rows,) + x_in.shape[:1] + (1,) + x_in.shape[1:])


def enter_after(graphdef, replay: Replay, lo: int, base: Base, own: int, alpha, shift) -> jax.Array:
    """The rows [variant, batch, 1, embed] of a group of variants whose first layer is lo, as they
    leave layer lo. The group's rows are ordered by layer; its first ``own`` rows edit layer lo
    itself and leave it as x_mid + ffn_out(alpha * h + shift) from the base pass's x_mid[lo] and
    h[lo] (what `edit_layer` computes for a row that enters lo unedited), the others edit a later
    layer and leave lo unedited, as the base pass's x_in[lo + 1]. So no row runs the layer it
    joins at: a row that edits lo runs only its down projection there, and every other row
    nothing. alpha [variant], shift [variant, batch, mlp]: the group's rows."""
    rows = alpha.shape[0]
    block = nnx.merge(graphdef, layer_slice(replay.params, lo))
    h = base.h[lo]
    edited = alpha[:own, None, None].astype(h.dtype) * h[None] + shift[:own].astype(h.dtype)
    x = (base.x_mid[lo][None] + block.ffn_out(edited))[..., None, :]  # [own, batch, 1, embed]
    if rows > own:
        x = jnp.concatenate([x, entering(base.x_in[lo + 1], rows - own)])
    return x


def staircase_f(
    model, graphdef, replay: Replay, lo: int, base: Base, own: int, start, alpha, shift, option_ids, gold,
    target: Target = "ce", halves_from: int = 0,
):
    """The target (F, or P for ``target="prob"``) [variant, batch] of a group of variants that
    edit layers lo.. : one scan over lo+1..L-1.

    Variant v with start layer start[v] and scale alpha[v] replaces h at that layer's last
    position by alpha * h + shift[v]; below its layer it reproduces the unedited pass (every
    variant leaves layer lo as `enter_after` gives it, the first ``own`` having edited lo), above
    it runs on the edited stream. start, alpha: [variant], ordered by layer; shift: [variant,
    batch, mlp]. The gradient of F with respect to shift is dF/dh at each variant's own edit
    point, so one scan serves every start layer of the group; the caller weights these gradients
    by the quadrature weights of the variants' alphas. halves_from: as `edit_scan`.
    """
    x = enter_after(graphdef, replay, lo, base, own, alpha, shift)
    if lo + 1 < model.cfg.num_layers:
        x = edit_scan(model, graphdef, replay, x, lo + 1, model.cfg.num_layers, start, alpha, shift, halves_from)
    return target_of(model, x[..., 0, :], option_ids, gold, target)


def joined_f(
    model, graphdef, replay: Replay, bounds, counts, owns, base: Base, start, alpha, shift, option_ids, gold,
    target: Target = "ce", halves_from: int = 0,
):
    """The target [variant, batch] of every group's variants in one pass over the layers.

    bounds: the groups' contiguous layer ranges [(0, hi_0), (hi_0, hi_1), ..., (lo, L)], counts
    their variant counts and owns the counts of those that edit each group's first layer (Python
    ints); the variants (start, alpha [variant], shift [variant, batch, mlp]) are ordered by
    layer. Group g's rows join those of groups 0..g-1 as they leave its first layer lo_g
    (`enter_after`), and the layers lo_g+1..lo_{g+1} then run once on all rows so far (one scan
    per group). Each row's value and gradient are those of `staircase_f` over its own group; the
    layers are read once per pass instead of once per group and the products have more rows, at
    the price of every group's saved values living at once in the backward pass. halves_from: as
    `edit_scan`, for each group's scan."""
    n_layers = model.cfg.num_layers
    x = None
    used = 0
    for g, ((lo, _), n, own) in enumerate(zip(bounds, counts, owns)):
        new = enter_after(graphdef, replay, lo, base, own, alpha[used:used + n], shift[used:used + n])
        x = new if x is None else jnp.concatenate([x, new])
        used += n
        end = bounds[g + 1][0] + 1 if g + 1 < len(bounds) else n_layers
        if lo + 1 < end:
            x = edit_scan(model, graphdef, replay, x, lo + 1, end, start[:used], alpha[:used], shift[:used],
                          halves_from)  # fmt: skip
    return target_of(model, x[..., 0, :], option_ids, gold, target)
