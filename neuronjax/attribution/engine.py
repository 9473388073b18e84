"""Per-neuron attribution of F at the last prompt position (NeuronLLM, arXiv 2601.04548, Sec. 3).

The target (``target``) is a function of the logits at the last position:

- ``ce`` (default): F = log softmax over the four option scores, at the gold option (minus the
  cross-entropy of the gold option among the four), where an option's score is the logsumexp of
  its candidate tokens' logits. Only the candidate columns of the output head are needed.
- ``prob``: P = the probability of the gold option over the whole vocabulary, the sum of
  softmax(logits)[t] over its candidate tokens t (the target of knowledge-neuron IG, Dai et al.
  2022, and of QRNCA). Needs the full output head for every variant; `Attribution.f` then holds
  P. The option scores reported are the same candidate logsumexps for both targets.

Methods:

- ``ig``: integrated gradients per layer (Sundararajan et al. 2017) with a zero baseline. Layer
  l's neuron vector h_l at the last position is scaled by the m nodes alpha_k of a quadrature
  rule on [0, 1] (``rule``, see `quadrature`: right Riemann, trapezoid or Gauss-Legendre), every
  other layer runs normally on the changed residual stream, and
  IG_l = h_l * sum_k w_k dF/dh(alpha_k h_l) (F being the chosen target, the weights w_k summing
  to 1).
- ``grad_x_act``: h * dF/dh for every layer from one forward and one backward pass.
- ``activation``: h itself (for the activation-statistics baselines).

Everything runs on the cached-prompt replay of `last_token`; `naive.py` holds the full-prompt
reference it is tested against.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuronjax.attribution import last_token as lt
from neuronjax.attribution import quadrature
from neuronjax.cached import (
    CACHE_BUCKET, SUFFIX_BUCKET, extend_head, kept_prefix_head, prefix_cache, rows_cache, shared_prefix_cache,
    smallest_window, split_prefix,
)
from neuronjax.errors import InputError
from neuronjax.kernels.choice import backend_or_current
from neuronjax.overlap import in_flight, in_order

Method = Literal["ig", "grad_x_act", "activation"]
METHODS = ("ig", "grad_x_act", "activation")
Target = lt.Target
TARGETS = lt.TARGETS
Rule = quadrature.Rule
RULES = quadrature.RULES
Replay = Literal["auto", "grouped", "joined"]
REPLAYS = ("auto", "grouped", "joined")
# backends where "auto" joins the groups: XLA's CPU backend copies each layer's weights out of the
# stacked arrays on every pass over the layers, and joining reads them once (1.12x at 8 groups,
# docs/performance.md); accelerators keep "grouped", whose backward pass holds one group's values
GROUPS_JOINED_ON = ("cpu",)


def resolve_replay(replay: str, backend: Optional[str] = None) -> str:
    """The replay to run, "grouped" or "joined": ``replay`` itself, or for "auto" "joined" on the
    backends of `GROUPS_JOINED_ON` and "grouped" elsewhere. backend: the platform the work runs
    on (default: the default device's, `kernels.choice.current_backend`)."""
    if replay not in REPLAYS:
        raise InputError(f"replay {replay!r} unknown; expected one of {REPLAYS}")
    if replay != "auto":
        return replay
    return "joined" if backend_or_current(backend) in GROUPS_JOINED_ON else "grouped"


# layer groups when none are given: joined, 8 groups waste less work below each variant's edit
# and still read the weights once (8 against 4 grouped: 2.53 s against 2.77-2.99 s per call of
# 8 world_facts prompts at the default nodes, 2026-11-30; docs/performance.md); grouped, more
# groups are more passes over the weights and longer compiles, so 4
DEFAULT_GROUPS = {"joined": 8, "grouped": 4}


# the most replay rows (prompts x the IG variants of one pass over the layers) per device that
# `attribute` puts in one compiled call when it chooses the chunk, per backend. On CPU the
# replay's saved values grow with the rows, and past a few thousand rows the calls slow down: 16
# world_facts prompts at m = 16 right Riemann (480 variants per prompt) took 1.35-1.40x less time
# in calls of 4 prompts (1,920 rows) than in one call of 16 (7,680 rows, the whole batch, which
# was the default before), and 1.00-1.16x less than in calls of 8 (3,840 rows; five comparisons);
# at the default nodes (119 variants) calls of 4, 8 and 16 prompts were within noise of each other
# (2026-12-01, docs/performance.md). Backends not named here run the whole batch in one call (not
# measured there).
ROW_BUDGET = {"cpu": 2048}


def auto_chunk(prompts: int, rows_per_prompt: int, backend: Optional[str] = None, shards: int = 1) -> int:
    """Prompts per compiled call when the caller gives none: all of them while each of the
    ``shards`` devices the rows are split over holds at most the backend's `ROW_BUDGET` replay
    rows (its prompts x rows_per_prompt, the rows one prompt brings to a pass over the layers);
    else as few calls as the budget allows, the prompts spread evenly over them (the last call
    pads the fewest rows) and each call a multiple of ``shards`` prompts. At least one prompt per
    device and call."""
    budget = ROW_BUDGET.get(backend_or_current(backend))
    shards = max(1, int(shards))
    if budget is None or -(-prompts // shards) * rows_per_prompt <= budget:
        return prompts
    cap = max(1, budget // rows_per_prompt) * shards  # prompts one call may hold
    calls = -(-prompts // cap)
    per_call = -(-prompts // calls)  # the prompts spread evenly over the calls
    return -(-per_call // shards) * shards  # rounded up to a multiple of the devices


def chunks_in_flight(lm, calls: int, rows_per_call: int, backend: Optional[str] = None) -> int:
    """How many of `attribute`'s calls run at once: `overlap.in_flight` (two on one CPU device)
    while the calls in flight hold at most the backend's `ROW_BUDGET` replay rows between them,
    else one. Two calls of 8 world_facts prompts at the default nodes (952 rows each) ran 1.07x
    and 1.19x faster side by side than one after the other (medians of two processes each); two of 8 at
    m = 16 (3,840 rows each) took twice as long (medians 18.6 against 9.2 s; 2026-12-02,
    docs/performance.md)."""
    depth = in_flight(lm, backend) if calls > 1 else 1
    budget = ROW_BUDGET.get(backend_or_current(backend))
    if depth > 1 and budget is not None and depth * rows_per_call > budget:
        return 1
    return depth


def replay_rows(schedule: Sequence[int], groups: int, replay: str) -> int:
    """Replay rows one prompt brings to the largest pass over the layers: every variant of the
    schedule when the groups are joined, the largest group's when they run one after another."""
    if not schedule:
        return 1
    if replay == "joined":
        return int(sum(schedule))
    return max(int(sum(schedule[lo:hi])) for lo, hi in quadrature.schedule_groups(schedule, groups))


def resolve_groups(groups: Optional[int], replay: str) -> int:
    """``groups``, or for None the default of the (resolved) replay, `DEFAULT_GROUPS`."""
    if groups is None:
        return DEFAULT_GROUPS[resolve_replay(replay)]
    if int(groups) < 1:
        raise InputError(f"groups = {groups}: expected >= 1 (or None for the replay's default)")
    return int(groups)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PromptBatch:
    """Proxy prompts ready for the model. Rows must be left-padded (the last column is the
    answer cue's last token in every row)."""

    input_ids: jax.Array  # int32 [batch, seq]
    attention_mask: jax.Array  # int32 [batch, seq]
    option_ids: jax.Array  # int32 [batch, option (k: 2..10, usually 4), candidate]: token ids of each option, -1 = none
    gold: jax.Array  # int32 [batch]: index of the gold option

    def validate(self) -> None:
        ids, mask, opts, gold = (np.asarray(x) for x in (self.input_ids, self.attention_mask, self.option_ids, self.gold))
        b = ids.shape[0]
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise InputError(f"input_ids {ids.shape} and attention_mask {mask.shape} must both be [batch, seq]")
        if ids.shape[1] < 2:
            raise InputError("prompts need at least two tokens (a prefix and the last position)")
        if not mask[:, -1].all():
            bad = np.flatnonzero(mask[:, -1] == 0).tolist()
            raise InputError(f"attention_mask: rows {bad[:10]} are not left-padded (their last column is padding)")
        if opts.ndim != 3 or opts.shape[0] != b or not 2 <= opts.shape[1] <= 10:
            raise InputError(f"option_ids has shape {opts.shape}; expected [batch={b}, options (2..10), candidates]")
        k = opts.shape[1]
        empty = np.argwhere((opts < 0).all(axis=-1))
        if len(empty):
            raise InputError(f"option_ids: (row, option) {empty[0].tolist()} has no candidate token")
        if gold.shape != (b,) or gold.min() < 0 or gold.max() > k - 1:
            raise InputError(
                f"gold must be [batch={b}] with values in 0..{k - 1} ({k} options); got shape {gold.shape}"
            )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Attribution:
    scores: jax.Array  # float32 [batch, layers, mlp]: signed attribution (or h for "activation")
    f: jax.Array  # float32 [batch]: the target (F, or P for target "prob") of the unedited model
    option_scores: jax.Array  # float32 [batch, option]
    activations: jax.Array  # float32 [batch, layers, mlp]: h at the last position


def alphas(steps: int, rule: Rule = "right_riemann") -> np.ndarray:
    """float32 [steps]: the IG scaling points of a rule (by default the right Riemann k / m,
    k = 1..m); `quadrature.nodes` gives their weights too."""
    return quadrature.nodes(rule, steps)[0].astype(np.float32)


def _ig(
    model, block_def, replay, base: lt.Base, batch: PromptBatch, schedule: tuple, groups: int, target: str, rule: str,
    how: str = "grouped", halves_from: int = 0,
) -> jax.Array:
    """IG [layers, batch, mlp] from staircase groups of (layer, alpha) variants, schedule[l] nodes
    for layer l; each variant's gradient is weighted by its node's weight after the backward
    pass and summed into its layer. how: "grouped", one forward and backward per group, or
    "joined", all groups in one (`last_token.joined_f`); the same variants either way.
    halves_from: `last_token.edit_scan`'s."""
    if how not in ("grouped", "joined"):
        raise InputError(f"replay {how!r}: expected 'grouped' or 'joined' here ('auto' is resolved by `attribute`)")
    h = base.h
    b, f = h.shape[1], h.shape[2]
    bounds = quadrature.schedule_groups(schedule, groups)
    if how == "joined":
        layer, a, w = quadrature.variants(rule, schedule, 0, len(schedule))
        counts = [int(sum(schedule[lo:hi])) for lo, hi in bounds]
        owns = [int(schedule[lo]) for lo, _ in bounds]
        start, alpha = jnp.asarray(layer, jnp.int32), jnp.asarray(a, jnp.float32)
        total = lambda shift: lt.joined_f(  # noqa: E731
            model, block_def, replay, bounds, counts, owns, base, start, alpha, shift, batch.option_ids, batch.gold,
            target, halves_from,
        ).sum()
        parts = [(0, len(schedule), layer, w, jax.grad(total)(jnp.zeros((len(layer), b, f), h.dtype)))]
    else:
        parts = []
        for lo, hi in bounds:
            layer, a, w = quadrature.variants(rule, schedule, lo, hi)
            start, alpha = jnp.asarray(layer, jnp.int32), jnp.asarray(a, jnp.float32)
            total = lambda shift, lo=lo, start=start, alpha=alpha: lt.staircase_f(  # noqa: E731
                model, block_def, replay, lo, base, int(schedule[lo]), start, alpha, shift, batch.option_ids,
                batch.gold, target, halves_from,
            ).sum()
            parts.append((lo, hi, layer, w, jax.grad(total)(jnp.zeros((len(layer), b, f), h.dtype))))
    out = []
    for lo, hi, layer, w, g in parts:
        weights = np.zeros((hi - lo, len(layer)), np.float32)  # [layer of the part, variant]
        weights[layer - lo, np.arange(len(layer))] = w
        g = jnp.einsum("nv,vbf->nbf", jnp.asarray(weights), g.astype(jnp.float32))
        out.append(h[lo:hi].astype(jnp.float32) * g)
    return jnp.concatenate(out)


def _attribute(
    state, batch: PromptBatch, shared: Optional[jax.Array] = None, *, graphdef, method: str, steps, groups: int,
    target: str = "ce", rule: str = "gauss_legendre", replay: str = "grouped", head=None, cache=None,
    halves_from: int = 0,
) -> Attribution:
    """shared: None, or int32 [1, P], the token prefix common to every row, cut off the rows of
    `batch` (`cached.split_prefix`): it runs once for the whole batch. head: instead of shared,
    that prefix's cache already computed (`cached.compute_prefix_head`, one row), which the
    batch's rows then run on. cache: instead of both, the cache of every row's prompt but its last
    token already computed (a `cached.KVCache`, left-padded to any number of slots); only the last
    column of batch.input_ids is then read, so a batch of that one column compiles one program
    for every prompt width (what `attribute` does). replay: "grouped" or "joined" (`_ig`;
    `attribute` resolves "auto"). halves_from: `last_token.edit_scan`'s (`attribute` resolves None)."""
    model = nnx.merge(graphdef, state)
    cfg = model.cfg
    ids, mask = batch.input_ids, batch.attention_mask
    if cache is None:
        cache = (extend_head(model, head, ids, mask) if head is not None else prefix_cache(model, ids, mask)
                 if shared is None else shared_prefix_cache(model, shared, ids, mask))  # fmt: skip
    block_def, inputs = lt.replay_inputs(model, batch.input_ids[:, -1], cache)
    b = batch.gold.shape[0]

    def base(shifts):
        f, aux = lt.base_pass(model, block_def, inputs, batch.option_ids, batch.gold, shifts, target)
        return f.sum(), (f, aux)

    shifts = jnp.zeros((cfg.num_layers, b, cfg.intermediate_size), inputs.x0.dtype)
    if method == "grad_x_act":
        grads, (f, (scores, unedited)) = jax.grad(base, has_aux=True)(shifts)
        h = unedited.h
        attr = h.astype(jnp.float32) * grads.astype(jnp.float32)
    else:
        _, (f, (scores, unedited)) = base(None)
        h = unedited.h
        if method == "activation":
            attr = h.astype(jnp.float32)
        else:
            schedule = quadrature.layer_schedule(cfg.num_layers, steps)  # one count, or one per layer
            attr = _ig(model, block_def, inputs, unedited, batch, schedule, groups, target, rule, replay, halves_from)
    h32 = h.astype(jnp.float32)
    return Attribution(
        scores=jnp.swapaxes(attr, 0, 1), f=f, option_scores=scores, activations=jnp.swapaxes(h32, 0, 1)
    )


attribute_compiled = jax.jit(
    _attribute, static_argnames=("graphdef", "method", "steps", "groups", "target", "rule", "replay", "halves_from")
)


def pad_rows(batch: PromptBatch, rows: int, seq: int) -> PromptBatch:
    """Pad to [rows, seq]: extra rows repeat row 0 (dropped later), extra columns pad on the left."""
    ids, mask, opts, gold = (np.asarray(x) for x in (batch.input_ids, batch.attention_mask, batch.option_ids, batch.gold))
    b, s = ids.shape
    take = np.concatenate([np.arange(b), np.zeros(rows - b, np.int64)])
    left = ((0, 0), (seq - s, 0))
    return PromptBatch(
        input_ids=np.pad(ids[take], left).astype(np.int32),
        attention_mask=np.pad(mask[take], left).astype(np.int32),
        option_ids=opts[take].astype(np.int32),
        gold=gold[take].astype(np.int32),
    )


def attribute(
    lm,
    batch: PromptBatch,
    method: Method = "ig",
    steps: Union[int, Sequence[int]] = 16,
    chunk: Optional[int] = None,
    seq_bucket: int = SUFFIX_BUCKET,
    groups: Optional[int] = None,
    target: Target = "ce",
    rule: Rule = "gauss_legendre",
    layer_steps: Optional[Mapping] = None,
    share_prefix: bool = True,
    replay: Replay = "auto",
    heads: Optional[dict] = None,
    cache_bucket: Optional[int] = CACHE_BUCKET,
    halves_from: Optional[int] = None,
) -> Attribution:
    """Attribute the target to every neuron at the last prompt position, for every prompt of
    ``batch``.

    lm: a `neuronjax.LanguageModel`. chunk: prompts per compiled call (default: `auto_chunk`,
    the whole batch unless its replay rows per device, prompts x IG variants, pass the
    backend's `ROW_BUDGET`: 2,048 on CPU); the last chunk is padded to the same shape, and
    sequence lengths are left-padded up to a multiple of ``seq_bucket``, so a run compiles once
    per shape bucket. groups: how many layer groups the IG variants are split into (see
    `last_token`; None: 8 joined, 4 grouped, `resolve_groups`). replay: "grouped" runs one
    forward and backward pass per group, "joined" one for all groups, each group's variants
    joining the rows at its first layer (the same variants and scores; fewer passes over the
    weights, more memory held at once); "auto" joins on CPU only (`resolve_replay`). target: "ce" for the contrastive F over the four options,
    "prob" for the gold option's probability over the whole vocabulary (see the module
    docstring). steps, rule: IG's m nodes and the quadrature rule
    that places and weights them (`quadrature`); steps may be one count for every layer or one
    per layer, and layer_steps ({layer: m}) overrides single layers (`quadrature.layer_schedule`).
    share_prefix: the token prefix common to every prompt of ``batch`` (a multiple of
    `cached.PREFIX_BUCKET` tokens) runs once per chunk instead of once per prompt, and only the
    rest of each prompt, left-padded to a multiple of ``seq_bucket``, runs per row
    (`cached.split_prefix`, decided once for the whole batch so that every chunk has one shape).
    Models with a sliding window shorter than the prompt, and batches without a common prefix,
    run unshared. The shared prefix's cache is computed once per call (not once per chunk), and
    heads, a dict the caller keeps across the batches of a task, holds it across calls: a prefix
    already in it (the same tokens: a task's role block and demonstration) is not run again.
    cache_bucket: each call's prompt pass is a program of its own, whose cache is left-padded with
    empty slots to a multiple of this (`cached.padded`; None: not padded), and the rest of the call
    (the base pass and the replay, the costly program to compile) then compiles once for all
    prompt widths within one multiple (a task's `pipeline.cache_multiple`). halves_from: passes over
    the layers with at least this many rows run the variants as two halves side by side (0: never;
    None: the backend's, `last_token.HALVES_FROM`: 1,024 rows on CPU, never elsewhere).
    """
    if method not in METHODS:
        raise InputError(f"method {method!r} unknown; expected one of {METHODS}")
    if target not in TARGETS:
        raise InputError(f"target {target!r} unknown; expected one of {TARGETS}")
    if rule not in RULES:
        raise InputError(f"rule {rule!r} unknown; expected one of {RULES}")
    replay = resolve_replay(replay)
    groups = resolve_groups(groups, replay)
    halves_from = lt.halves_for(halves_from)
    schedule = quadrature.layer_schedule(lm.config.num_layers, steps, layer_steps)
    if method == "ig":
        quadrature.check_schedule(rule, schedule)
    else:
        schedule = ()  # unused: one compiled program whatever steps says
    batch.validate()
    n, s = np.shape(batch.input_ids)
    rows = replay_rows(schedule, groups, replay) if method == "ig" else 1
    if chunk is None:
        chunk = auto_chunk(n, rows, shards=lm.rules.devices("batch", lm.mesh))
    elif int(chunk) < 1:
        raise InputError(f"chunk = {chunk}: expected >= 1 prompts per call (or None to choose it)")
    if cache_bucket is not None and int(cache_bucket) < 1:
        raise InputError(f"cache_bucket = {cache_bucket}: expected >= 1 slots (or None for no padding)")
    seq = -(-s // seq_bucket) * seq_bucket
    split = head = None
    if share_prefix:
        split = split_prefix(batch.input_ids, batch.attention_mask, seq_bucket=seq_bucket,
                             window=smallest_window(lm.config))  # fmt: skip
    if split is not None:  # the rows become their suffixes after the shared prefix
        batch = dataclasses.replace(batch, input_ids=split.input_ids, attention_mask=split.attention_mask)
        seq = split.input_ids.shape[1]
        head = kept_prefix_head(lm, split.shared, {} if heads is None else heads)
    starts = range(0, n, chunk)
    depth = chunks_in_flight(lm, len(starts), chunk * rows)

    def one(lo: int) -> Attribution:
        part = jax.tree.map(lambda x: np.asarray(x)[lo : lo + chunk], batch)
        part = pad_rows(part, chunk, seq)
        # the prompt pass (compiled per suffix width) and the rest (compiled per cache bucket) are
        # two programs: the rest, the costly one to compile, then serves every width in the bucket
        cache = rows_cache(lm, lm.place(part.input_ids), lm.place(part.attention_mask), head, cache_bucket)
        last = PromptBatch(part.input_ids[:, -1:], part.attention_mask[:, -1:], part.option_ids, part.gold)
        out = attribute_compiled(
            lm.state, jax.tree.map(lm.place, last), None, graphdef=lm.graphdef, method=method, steps=schedule,
            groups=groups, target=target, rule=rule, replay=replay if method == "ig" else "grouped", cache=cache,
            halves_from=halves_from if method == "ig" else 0,
        )
        # with two chunks in flight (CPU), each thread waits for its own call: the next chunk's
        # call then starts beside a running one instead of queueing behind it
        return jax.block_until_ready(out) if depth > 1 else out

    outs = [jax.tree.map(lambda x, k=min(chunk, n - lo): x[:k], out) for lo, out in in_order(one, starts, depth)]
    if len(outs) == 1:
        return outs[0]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)
