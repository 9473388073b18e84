"""Last-position interventions that join the rows at the first layer they edit.

An intervention changes nothing below the first layer whose scale or shift it sets, so below that
layer its row of the one-token step is the unedited row. `score_last_position` runs every
intervention through every layer; here the unedited last token runs as one more row (the
carrier), and the interventions, sorted by their first edited layer, join the rows in groups:
group g's rows start as copies of the carrier entering its first layer lo_g and run layers
lo_g.. together with the rows of the groups before it, as IG's joined replay does
(`neuronjax.attribution.last_token.joined_f`). The groups are cut where they save the most layer
passes (`quadrature.schedule_groups` with ``rerun_first``, which minimises (rows of a group) x
(layers from its first)); an intervention that edits nothing joins at the last layer.

The scores are the same option log-probabilities as `cached.score_last_position`'s (full
vocabulary, `tasks.scoring.candidate_log_probs`); the arithmetic of each row is the same, only
the matrix products have other row counts (tests/evaluation/test_joined.py compares the two). Only
for first-token option scores: whole-text scores continue each option's text on the edited
prompt cache and keep the per-intervention path.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuronjax import intervention as iv
from neuronjax.attribution import last_token as lt
from neuronjax.attribution.quadrature import schedule_groups
from neuronjax.cached import KVCache
from neuronjax.intervention import Intervention
from neuronjax.tasks.scoring import candidate_log_probs

# most row groups: each is one scan over its layers (a longer program to compile), and the
# default run's 137 interventions enter at 9 distinct layers, 96 of them at the first
GROUPS = 4


def entry_layers(interventions: Intervention) -> np.ndarray:
    """int [intervention]: the first layer each of the stacked interventions edits (scale != 1
    or shift != 0 for some neuron), the number of layers for one that edits nothing."""
    scale, shift = np.asarray(interventions.scale), np.asarray(interventions.shift)
    edited = ((scale != 1) | (shift != 0)).any(axis=-1)  # [intervention, layers]
    return np.where(edited.any(axis=1), edited.argmax(axis=1), edited.shape[1])


@dataclasses.dataclass(frozen=True)
class JoinPlan:
    """How one call's stacked interventions join: their order (sorted by entry layer), the
    groups' layer ranges and row counts (static arguments of the compiled call)."""

    order: np.ndarray  # int [intervention]: row k of the call is intervention order[k]
    bounds: tuple  # ((0, hi_0), (hi_0, hi_1), ..., (lo, layers))
    counts: tuple  # rows of each group, in order

    @property
    def passes(self) -> int:
        """One-token layer passes of the call's rows (every row from its group's first layer)."""
        layers = self.bounds[-1][1]
        return int(sum(n * (layers - lo) for (lo, _), n in zip(self.bounds, self.counts)))


def join_plan(interventions: Intervention, groups: int = GROUPS) -> JoinPlan:
    """The `JoinPlan` of stacked interventions: each joins at the first layer of the group that
    holds its entry layer (an intervention editing nothing counts as entering at the last)."""
    layers = np.shape(interventions.scale)[1]
    entry = np.minimum(entry_layers(interventions), layers - 1)
    per_layer = np.bincount(entry, minlength=layers)
    bounds = tuple(schedule_groups(per_layer.tolist(), groups, rerun_first=True))
    counts = tuple(int(per_layer[lo:hi].sum()) for lo, hi in bounds)
    return JoinPlan(order=np.argsort(entry, kind="stable"), bounds=bounds, counts=counts)


def reorder(interventions: Intervention, order: np.ndarray) -> Intervention:
    """The stacked interventions in the given order (the position policy kept)."""
    take = jnp.asarray(order, jnp.int32)
    return dataclasses.replace(interventions, scale=interventions.scale[take], shift=interventions.shift[take])


@functools.partial(jax.jit, static_argnames=("graphdef", "bounds", "counts"))
def score_joined(state, cache: KVCache, input_ids: jax.Array, option_tokens: jax.Array, interventions: Intervention,
                 *, graphdef, bounds: tuple, counts: tuple) -> jax.Array:  # fmt: skip
    """float32 [intervention, batch, option]: first-token option scores of stacked last-position
    interventions, already in the order of a `JoinPlan` (bounds, counts), on the prompt cache
    ``cache`` of input_ids [batch, seq] minus their last column (only that last column is read:
    `score_interventions` passes it alone, [batch, 1], for one program per cache width)."""
    model = nnx.merge(graphdef, state)
    block_def, replay = lt.replay_inputs(model, input_ids[:, -1], cache)
    # row 0 is the unedited last token, the carrier: a group's rows start as copies of it at the
    # group's first layer; its scale and shift leave it unedited
    scale = jnp.concatenate([jnp.ones_like(interventions.scale[:1]), interventions.scale])
    shift = jnp.concatenate([jnp.zeros_like(interventions.shift[:1]), interventions.shift])
    scale, shift = jnp.swapaxes(scale, 0, 1), jnp.swapaxes(shift, 0, 1)  # [layers, 1 + intervention, mlp]
    one = jnp.ones((1, 1, 1), jnp.float32)  # the one-token step's only position is edited

    def body(x, layer):
        j, s, t = layer
        block, rope, bias, past = lt.layer_at(block_def, replay, j)
        x_mid, _ = block.attend(x, rope, bias, past)
        h = iv.apply(block.neurons(x, x_mid), s[:, None, None, :], t[:, None, None, :], one)
        return x_mid + block.ffn_out(h), None

    x, used = replay.x0[None], 1  # [rows, batch, 1, embed]
    for (lo, hi), n in zip(bounds, counts):
        if n:
            x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (n,) + x.shape[1:])])
            used += n
        x, _ = jax.lax.scan(body, x, (jnp.arange(lo, hi), scale[lo:hi, :used], shift[lo:hi, :used]))
    x = x[1:]
    v, b = x.shape[:2]
    logits = model.head_logits(x[:, :, 0])
    options = jnp.broadcast_to(option_tokens[None], (v,) + option_tokens.shape)
    scores = candidate_log_probs(logits.reshape(v * b, -1), options.reshape((v * b,) + option_tokens.shape[1:]))
    return scores.reshape(v, b, -1)
