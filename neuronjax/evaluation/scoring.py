"""Option scores of every held-out proxy under many interventions, sharing what can be shared.

For last-position interventions the prompt minus its last token runs once per batch and the last
token once per intervention against that cache, the interventions of a group in one compiled
call (`neuronjax.cached.score_last_position`). The token prefix every prompt of a batch starts with
(the role block and demonstration) runs once for the batch when it can (`cached.split_prefix`).
Interventions on all positions edit that prefix too, so they run the whole prompt per
intervention (`score_all_positions`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax import cached
from neuronjax.distributed import global_batches, to_host
from neuronjax.errors import InputError
from neuronjax.evaluation.joined import join_plan, reorder, score_joined
from neuronjax.intervention import Intervention
from neuronjax.kernels.choice import backend_or_current
from neuronjax.overlap import in_flight, in_order
from neuronjax.tasks.metrics import proxy_correct

GROUP = 32  # most interventions per compiled call (see `_groups`), and what `neuronjax plan` plans for
# backends with a larger cap: XLA's CPU backend copies each layer's weights out of the stacked
# arrays once per call, so fewer, larger calls pay less (a default run's 137 interventions in one
# call per batch: 80.5 s against 90.1 s for 5 calls of 28 over 294 prompts, 2026-11-30,
# docs/performance.md); accelerators keep GROUP, which bounds the call's memory
GROUP_ON = {"cpu": 160}
# backends where first-token scoring joins each intervention at the first layer it edits
# (`evaluation.joined`): one call per batch holds every intervention there, so one program; on
# accelerators each call of GROUP would have its own groups, and its own program to compile
JOINED_ON = ("cpu",)


def most_per_call(backend: Optional[str] = None) -> int:
    """The most interventions one compiled call scores on `backend` (default: the default
    device's platform): `GROUP_ON`'s entry, else `GROUP`."""
    return GROUP_ON.get(backend_or_current(backend), GROUP)


def stack(interventions: Sequence[Intervention]) -> Intervention:
    """One Intervention whose leaves have a leading intervention axis (all of one policy)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *interventions)


@dataclasses.dataclass
class Scored:
    """Option scores of every held-out proxy under every intervention."""

    scores: np.ndarray  # float32 [intervention, proxy, option]
    gold: np.ndarray  # int32 [proxy]
    item_index: np.ndarray  # int32 [proxy]
    proxy_index: np.ndarray  # int32 [proxy]
    num_items: int
    # float32 [proxy, neuron]: the unedited activations at the last prompt position of the neurons
    # `score_interventions` was asked to capture (None when it was not)
    activations: Optional[np.ndarray] = None

    @property
    def correct(self) -> np.ndarray:
        """bool [intervention, proxy]: gold strictly above every other option."""
        v, p, o = self.scores.shape
        flat = proxy_correct(self.scores.reshape(v * p, o), np.tile(self.gold, v))
        return np.asarray(flat).reshape(v, p)

    @property
    def choices(self) -> np.ndarray:
        """int [intervention, proxy]: the chosen letter (ties to the earlier letter)."""
        return self.scores.argmax(axis=2)


def _groups(interventions: Sequence[Intervention], most: int, identity: Intervention,
            most_all: Optional[int] = None) -> list:  # fmt: skip
    """(positions, indices, stacked) per compiled call: the interventions of one policy spread
    evenly over the fewest calls of at most `most` each (`most_all` for those editing every
    position, which run whole prompts; default `most`) (137 at most 32 a call: 5 calls of 28, 3
    padding slots instead of the 23 of 32-wide calls), the last call padded with identities to
    the same size so that every call of a policy has one shape."""
    out = []
    for policy in ("last", "all"):
        members = [i for i, iv in enumerate(interventions) if iv.positions == policy]
        if not members:
            continue
        cap = most if policy == "last" or most_all is None else most_all
        calls = -(-len(members) // cap)
        size = -(-len(members) // calls)
        for lo in range(0, len(members), size):
            idx = np.asarray(members[lo : lo + size])
            ivs = [interventions[i] for i in idx]
            ivs += [dataclasses.replace(identity, positions=policy)] * (size - len(ivs))
            out.append((policy, idx, stack(ivs)))
    return out


def score_interventions(
    lm, encoded, interventions: Sequence[Intervention], progress: Optional[Callable[[int], None]] = None,
    share_prefix: bool = True, capture: Optional[Sequence[tuple[int, int]]] = None, joined: Optional[bool] = None,
) -> Scored:
    """Score every proxy of `encoded` (an `EncodedTask`) under each intervention. share_prefix:
    build each batch's cache for last-position interventions with its common prefix run once
    (False: every row runs its whole prompt; both give the same scores). capture: neurons
    [(layer, index)] whose unedited activations at the last position come back as
    `Scored.activations`, read from the same prompt caches (what `neuronjax.cards` shows).
    joined: first-token scores of last-position interventions with each intervention's rows
    joining at the first layer it edits (`evaluation.joined`; the same scores, fewer layer
    passes); None: on the backends of `JOINED_ON`."""
    if not interventions:
        raise InputError("score_interventions: no interventions given (pass Intervention.identity for none)")
    c = lm.config
    for k, iv in enumerate(interventions):
        iv.check_shape(c.num_layers, c.intermediate_size, f"intervention {k}")
    p = encoded.config.prompt
    kind = p.option_score if p.answer_format == "option_text" else "first_token"
    size = most_per_call() if kind == "first_token" else 2  # whole-text copies the prompt cache per option
    groups = _groups(interventions, size, Intervention.identity(c.num_layers, c.intermediate_size),
                     min(size, GROUP))  # whole prompts per intervention: at most GROUP a call  # fmt: skip
    any_last = any(policy == "last" for policy, _, _ in groups)
    if joined is None:
        joined = backend_or_current() in JOINED_ON
    plans = {}  # call -> (its JoinPlan, its interventions in the plan's order, the inverse order)
    if joined and kind == "first_token":
        for k, (policy, _, ivs) in enumerate(groups):
            if policy == "last":
                plan = join_plan(ivs)
                plans[k] = (plan, reorder(ivs, plan.order), np.argsort(plan.order))
    if capture is not None:
        want = (jnp.asarray([layer for layer, _ in capture], jnp.int32), jnp.asarray([i for _, i in capture], jnp.int32))
    scores, gold, items, proxies, acts = [], [], [], [], []
    static = dict(graphdef=lm.graphdef, kind=kind, pad_id=encoded.pad_id)
    pipeline = encoded.config.pipeline
    heads: dict = {}  # the task's shared prefix, run once for all its batches

    def one(batch) -> tuple:
        """(scores [intervention, valid row, option], captured activations or None) of a batch."""
        valid = np.asarray(batch["valid"], bool)
        ids, mask, options, cont = (lm.place(batch[k]) for k in ("input_ids", "attention_mask", "option_tokens", "continuation"))
        cache = None
        if any_last or capture is not None:
            cache = cached.batch_prefix_cache(lm, batch, ids, mask, share_prefix, pipeline.suffix_multiple,
                                              0 if kind == "first_token" else batch["continuation"].shape[-1],
                                              heads, pipeline.cache_multiple)  # fmt: skip
            # the steps on the cache read the prompts' last column only: one program per cache bucket
            last = lm.place(np.asarray(batch["input_ids"])[:, -1:])
        out = np.zeros((len(interventions), int(valid.sum()), batch["option_tokens"].shape[1]), np.float32)
        for k, (policy, idx, ivs) in enumerate(groups):
            if k in plans:
                plan, ordered, inverse = plans[k]
                got = to_host(score_joined(lm.state, cache, last, options, ordered, graphdef=lm.graphdef,
                                           bounds=plan.bounds, counts=plan.counts))[inverse]  # fmt: skip
            elif policy == "all":
                got = to_host(cached.score_all_positions(lm.state, ids, mask, options, cont, ivs, **static))
            else:
                got = to_host(cached.score_last_position(lm.state, cache, last, options, cont, ivs, **static))
            out[idx] = got[: len(idx)][:, valid]
        if capture is None:
            return out, None
        return out, to_host(cached.last_position_activations(lm.state, cache, last, *want, graphdef=lm.graphdef))[valid]

    for batch, (out, captured) in in_order(one, global_batches(encoded), in_flight(lm)):  # on CPU two batches at once
        valid = np.asarray(batch["valid"], bool)
        scores.append(out)
        if captured is not None:
            acts.append(captured)
        gold.append(batch["gold"][valid])
        items.append(batch["item_index"][valid])
        proxies.append(batch["proxy_index"][valid])
        if progress is not None:
            progress(int(valid.sum()))
    return Scored(
        scores=np.concatenate(scores, axis=1),
        gold=np.concatenate(gold).astype(np.int32),
        item_index=np.concatenate(items).astype(np.int32),
        proxy_index=np.concatenate(proxies).astype(np.int32),
        num_items=len(encoded.items),
        activations=np.concatenate(acts).astype(np.float32) if capture is not None else None,
    )
