"""Scoring against a cached prompt: the prompt runs once, its last position under any intervention.

An intervention at the last prompt position leaves every earlier position unchanged (attention is
causal), so the prompt minus its last token runs once (`prefix_cache`) and the last token then runs
as a one-token step against that cache, once per intervention (`last_token_scores`). Attribution's
replay, held-out evaluation and the learned method's fit all build on these functions.

Option scores ([batch, option]) follow the task's answer format (`neuronjax.tasks.scoring`):
``first_token`` reads the candidate tokens' log-probabilities at the last position; ``whole`` /
``whole_mean`` continue each option's text after the (edited) prompt without editing the text
tokens (the intervention acts on the prompt pass).

Functions that take ``state`` and ``graphdef`` are pure and compiled (the parameters are an
argument, never a constant of the compiled function); `prefix_cache` works on a merged model
inside another trace.

Shared prefixes: the prompts of a task start with the same role block and demonstration. `split_prefix`
finds, on the host, the token prefix every row of a batch starts with and cuts it off the rows;
`shared_prefix_cache` (or `compute_shared_prefix_cache`) then runs that prefix once as a one-row
batch, gives every row a copy of its keys and values, and runs only the rows' suffixes (minus their
last tokens) against it. The cache it returns is used like `prefix_cache`'s: positions count real
tokens and the masked padding slots of the suffixes sit between the prefix and the suffix tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Literal, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuronjax.intervention import Intervention
from neuronjax.lm import forward
from neuronjax.models.config import ModelConfig
from neuronjax.models.decoder import Decoder, KVCache
from neuronjax.tasks.scoring import candidate_log_probs, score_continuations

OptionScore = Literal["first_token", "whole", "whole_mean"]


def prefix_cache(model: Decoder, input_ids: jax.Array, attention_mask: jax.Array) -> KVCache:
    """Keys and values of every position but the last, from a merged model (inside a trace).
    Rows must be left-padded, so the last column is every row's last token."""
    return model(input_ids[:, :-1], attention_mask[:, :-1], logits_at="none", return_cache=True).cache


# the prompt caches that one-token steps read (attribution's replay, the evaluation's scoring) are
# left-padded with empty slots to a multiple of this by default (a task's `pipeline.cache_multiple`),
# so that the step compiles once for every suffix width a task's batches fall in, not once per width
CACHE_BUCKET = 64


def cache_slots(length: int, multiple: Optional[int]) -> Optional[int]:
    """The slots a prompt cache of `length` slots is padded to: `length` rounded up to a multiple of
    `multiple` (None: not padded, None returned)."""
    if multiple is None:
        return None
    if multiple < 1:
        raise ValueError(f"cache multiple {multiple}: expected an int >= 1")
    return max(multiple, -(-length // multiple) * multiple)


def padded(cache: KVCache, slots: Optional[int]) -> KVCache:
    """`cache` with empty slots (mask False) before its first, to `slots` in all (None: as it is).
    The same cache for every step that reads it: positions count the real slots, and attention's
    masks and sliding windows measure distances between slots, which the padding at the far left
    shifts all alike."""
    if slots is None or slots == cache.length:
        return cache
    if slots < cache.length:
        raise ValueError(f"a prompt cache of {cache.length} slots cannot be padded to {slots}")
    return cache.pad_left(slots - cache.length)


@functools.partial(jax.jit, static_argnames=("graphdef", "slots"))
def compute_prefix_cache(state, input_ids: jax.Array, attention_mask: jax.Array, *, graphdef,
                         slots: Optional[int] = None) -> KVCache:  # fmt: skip
    """`prefix_cache` compiled, from the parameter state: the cache shared by every
    last-position intervention of a batch; slots: padded to that many (`padded`)."""
    cache = forward(state, input_ids[:, :-1], attention_mask[:, :-1], None, None, graphdef=graphdef,
                    logits_at="none", return_cache=True).cache  # fmt: skip
    return padded(cache, slots)


PREFIX_BUCKET = 16  # shared prefix lengths are multiples of this (few compiled shapes)
# the rows' own tokens after a shared prefix are left-padded to multiples of this by default (a
# task's `pipeline.suffix_multiple`; 32 until 2026-12-01, 16 pads less at the same shape count
# on the default task, docs/tasks.md)
SUFFIX_BUCKET = 16


@dataclasses.dataclass(frozen=True)
class PrefixSplit:
    """A left-padded batch cut into the token prefix every row starts with and the rows' rest."""

    shared: np.ndarray  # int32 [1, P]: the common prefix (P > 0, a multiple of the bucket)
    input_ids: np.ndarray  # int32 [batch, S]: each row's tokens after the prefix, left-padded
    attention_mask: np.ndarray  # int32 [batch, S]

    @property
    def length(self) -> int:
        return self.shared.shape[1]


def _real_rows(input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
    ids, mask = np.asarray(input_ids), np.asarray(attention_mask).astype(bool)
    return [ids[r][mask[r]] for r in range(ids.shape[0])]


def common_prefix_length(input_ids: np.ndarray, attention_mask: np.ndarray) -> int:
    """How many tokens at the start of their real tokens all rows share, at most the shortest
    row's length - 1 (every row keeps its last token out of the prefix)."""
    rows = _real_rows(input_ids, attention_mask)
    if not rows:
        return 0
    n = min(len(r) for r in rows) - 1
    if n <= 0:
        return 0
    heads = np.stack([r[:n] for r in rows])
    same = (heads == heads[:1]).all(axis=0)
    return int(n if same.all() else np.argmin(same))


def smallest_window(cfg: ModelConfig) -> Optional[int]:
    """The smallest sliding attention window of any layer, or None (every layer attends globally)."""
    windows = [w for w in (cfg.window_of(k) for k in cfg.attention_kinds) if w is not None]
    return min(windows) if windows else None


def split_prefix(input_ids: np.ndarray, attention_mask: np.ndarray, *, bucket: int = PREFIX_BUCKET,
                 seq_bucket: int = SUFFIX_BUCKET, window: Optional[int] = None,
                 extra_slots: int = 0) -> Optional[PrefixSplit]:  # fmt: skip
    """Cut a left-padded batch (numpy [batch, seq]) into its common prefix and suffixes, or None
    when nothing is worth sharing (run the batch unshared then).

    The prefix is the longest one common to every row's real tokens (`common_prefix_length`),
    rounded down to a multiple of `bucket` (P); None when P is 0. Each row's remaining tokens (at
    least its last one) are left-padded to S columns, the longest suffix rounded up to a multiple
    of `seq_bucket` (at least 2, so that the suffix minus its last token is not empty).
    Sliding-window attention measures distances in slots, and the padding between prefix and
    suffix tokens would stretch them: with a `window` (`smallest_window`) smaller than the P + S
    slots of the prompt plus `extra_slots` (tokens run after the prompt on its cache, e.g. option
    texts), None.
    """
    ids, mask = np.asarray(input_ids), np.asarray(attention_mask)
    p = (common_prefix_length(ids, mask) // bucket) * bucket
    if p <= 0:
        return None
    rows = _real_rows(ids, mask)
    longest = max(len(r) for r in rows) - p
    s = max(2, -(-longest // seq_bucket) * seq_bucket)
    if window is not None and window < p + s + extra_slots:
        return None
    suffix = np.zeros((len(rows), s), np.int32)
    suffix_mask = np.zeros((len(rows), s), np.int32)
    pad = ids[~mask.astype(bool)]
    if pad.size:
        suffix[:] = pad.flat[0]  # the batch's own padding id in the padding slots
    for r, row in enumerate(rows):
        n = len(row) - p
        suffix[r, s - n :] = row[p:]
        suffix_mask[r, s - n :] = 1
    return PrefixSplit(rows[0][:p][None].astype(np.int32), suffix, suffix_mask)


def prefix_head(model: Decoder, shared_ids: jax.Array) -> KVCache:
    """The cache of the shared prefix shared_ids [1, P] alone (one row), from a merged model."""
    return model(shared_ids, jnp.ones_like(shared_ids), logits_at="none", return_cache=True).cache


def extend_head(model: Decoder, head: KVCache, input_ids: jax.Array, attention_mask: jax.Array) -> KVCache:
    """`prefix_cache` of the rows head's prefix + input_ids [batch, S] (left-padded suffixes, mask
    attention_mask): every row reads a copy of the head's keys and values, and the suffixes minus
    their last tokens run on it. The cache has P + S - 1 slots: the prefix, then each row's
    padding (masked), then its tokens."""
    b = input_ids.shape[0]

    def rows(x):
        return jnp.broadcast_to(x, x.shape[:1] + (b,) + x.shape[2:])

    head = KVCache(rows(head.keys), rows(head.values), jnp.broadcast_to(head.mask, (b, head.length)))
    return model(input_ids[:, :-1], attention_mask[:, :-1], None, head, logits_at="none", return_cache=True).cache


def shared_prefix_cache(model: Decoder, shared_ids: jax.Array, input_ids: jax.Array,
                        attention_mask: jax.Array) -> KVCache:  # fmt: skip
    """`prefix_cache` of the rows shared_ids [1, P] + input_ids [batch, S], from a merged model
    (inside a trace): the prefix runs once (`prefix_head`), then the rows on it (`extend_head`)."""
    return extend_head(model, prefix_head(model, shared_ids), input_ids, attention_mask)


@functools.partial(jax.jit, static_argnames=("graphdef", "slots"))
def compute_shared_prefix_cache(state, shared_ids: jax.Array, input_ids: jax.Array, attention_mask: jax.Array,
                                *, graphdef, slots: Optional[int] = None) -> KVCache:  # fmt: skip
    """`shared_prefix_cache` compiled, from the parameter state (`compute_prefix_cache` of a batch
    cut by `split_prefix`); slots: padded to that many (`padded`)."""
    return padded(shared_prefix_cache(nnx.merge(graphdef, state), shared_ids, input_ids, attention_mask), slots)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def compute_prefix_head(state, shared_ids: jax.Array, *, graphdef) -> KVCache:
    """`prefix_head` compiled, from the parameter state."""
    return prefix_head(nnx.merge(graphdef, state), shared_ids)


@functools.partial(jax.jit, static_argnames=("graphdef", "slots"))
def compute_extended_cache(state, head: KVCache, input_ids: jax.Array, attention_mask: jax.Array,
                           *, graphdef, slots: Optional[int] = None) -> KVCache:  # fmt: skip
    """`extend_head` compiled, from the parameter state; slots: padded to that many (`padded`)."""
    return padded(extend_head(nnx.merge(graphdef, state), head, input_ids, attention_mask), slots)


def _slots_after(head_length: int, ids, multiple: Optional[int]) -> Optional[int]:
    """The padded slots (`cache_slots`) of the cache of rows `ids` [rows, width] run on a prefix of
    `head_length` slots: the prefix and every row position but the last."""
    return cache_slots(head_length + ids.shape[1] - 1, multiple)


def _rows_pass(lm, ids: jax.Array, mask: jax.Array, head: Optional[KVCache], multiple: Optional[int]):
    """The compiled prompt pass `rows_cache` calls: (function, arguments, static keywords)."""
    slots = _slots_after(0 if head is None else head.length, ids, multiple)
    static = dict(graphdef=lm.graphdef, slots=slots)
    if head is None:
        return compute_prefix_cache, (lm.state, ids, mask), static
    return compute_extended_cache, (lm.state, head, ids, mask), static


def rows_cache(lm, ids: jax.Array, mask: jax.Array, head: Optional[KVCache] = None,
               multiple: Optional[int] = CACHE_BUCKET) -> KVCache:  # fmt: skip
    """The cache of every position but the last of left-padded rows (ids and mask [rows, width],
    placed on the mesh): on the cache of a prefix the rows all follow (head, `compute_prefix_head`;
    the rows are then their tokens after it) or on their own (head None), left-padded to the
    multiple of `multiple` slots at or above its length (`cache_slots`; None: not padded). One
    program per row width and head length; the steps that read the cache compile once per
    multiple."""
    fn, args, static = _rows_pass(lm, ids, mask, head, multiple)
    return fn(*args, **static)


def rows_cache_compiled(lm, ids: jax.Array, mask: jax.Array, head: Optional[KVCache] = None,
                        multiple: Optional[int] = CACHE_BUCKET) -> tuple[jax.stages.Compiled, KVCache]:  # fmt: skip
    """`rows_cache`'s compiled program (whose HLO names the operations a profile traces) and the
    cache it gives for these rows."""
    fn, args, static = _rows_pass(lm, ids, mask, head, multiple)
    program = fn.lower(*args, **static).compile()
    return program, program(*args)


HEADS_KEPT = 8  # most distinct prefixes a `batch_prefix_cache` memo holds before it starts over
_HEADS_LOCK = threading.Lock()


def batch_prefix_cache(lm, batch: dict, ids: jax.Array, mask: jax.Array, share: bool = True,
                       seq_bucket: int = SUFFIX_BUCKET, extra_slots: int = 0, heads: Optional[dict] = None,
                       cache_multiple: Optional[int] = CACHE_BUCKET) -> KVCache:  # fmt: skip
    """The cache of every prompt position but the last for one batch of a task (`batch`, the
    pipeline's host arrays; ids and mask its input_ids and attention_mask already placed on the
    mesh): the prefix common to every row run once where `split_prefix` allows it (share=True;
    not for a model whose sliding window is shorter than the prompt's slots plus `extra_slots`),
    else every row's whole prompt (`compute_prefix_cache`). heads: a dict the caller keeps across
    the batches of a task; a prefix already in it (the same tokens: a task's role block and
    demonstration) is not run again, only the batch's rows on it. cache_multiple: the cache is
    left-padded to a multiple of this many slots (`padded`; a task's `pipeline.cache_multiple`),
    so that the steps reading it compile once for all the task's suffix widths below it; None:
    not padded."""
    split = None
    if share:
        split = split_prefix(batch["input_ids"], batch["attention_mask"], seq_bucket=seq_bucket,
                             window=smallest_window(lm.config), extra_slots=extra_slots)  # fmt: skip
    if split is None:
        return rows_cache(lm, ids, mask, None, cache_multiple)
    rows, rows_mask = lm.place(split.input_ids), lm.place(split.attention_mask)
    if heads is not None:
        return rows_cache(lm, rows, rows_mask, kept_prefix_head(lm, split.shared, heads), cache_multiple)
    # one program for the prefix and the rows (no head kept): the same slots as on a kept head
    slots = _slots_after(split.length, split.input_ids, cache_multiple)
    return compute_shared_prefix_cache(lm.state, lm.place(split.shared), rows, rows_mask, graphdef=lm.graphdef,
                                       slots=slots)  # fmt: skip


def kept_prefix_head(lm, shared: np.ndarray, heads: dict) -> KVCache:
    """The cache of the prefix shared (host int32 [1, P]), `compute_prefix_head`, taken from
    heads (a dict the caller keeps across the batches of a task) when the same tokens are in it,
    else computed and kept there (at most `HEADS_KEPT` prefixes; the dict then starts over)."""
    key = shared.tobytes()
    with _HEADS_LOCK:  # batches worked on in two threads (`neuronjax.overlap`) run a prefix once
        head = heads.get(key)
        if head is None:
            if len(heads) >= HEADS_KEPT:
                heads.clear()
            head = heads[key] = compute_prefix_head(lm.state, lm.place(shared), graphdef=lm.graphdef)
    return head


@functools.partial(jax.jit, static_argnames=("graphdef",))
def last_position_activations(state, cache: KVCache, input_ids: jax.Array, layers: jax.Array, index: jax.Array,
                              *, graphdef) -> jax.Array:  # fmt: skip
    """float32 [batch, neuron]: the unedited activations of the neurons (layers[n], index[n]) at
    the last prompt position, from the prompt's cache (`prefix_cache` or `batch_prefix_cache`)
    and its last column of input_ids [batch, seq]; equal to a full forward's, without running the
    prompt again."""
    b = input_ids.shape[0]
    out = forward(state, input_ids[:, -1:], jnp.ones((b, 1), jnp.int32), None, cache, graphdef=graphdef,
                  capture=True, logits_at="none")  # fmt: skip
    return out.activations[:, layers, index]


def continuation_scores(state, graphdef, cache: KVCache, last_logits: jax.Array, continuation: jax.Array,
                        kind: OptionScore, pad_id: int) -> jax.Array:  # fmt: skip
    """Whole-text option scores [batch, option]: each option's text tokens continuation
    [batch, option, cont] (-1 = pad) run once against a copy of the prompt's cache (which ends
    with the prompt's last token); last_logits [batch, vocab] predict the first text token."""

    def extend(rows, ids, mask):
        return forward(state, ids, mask, None, rows, graphdef=graphdef, logits_at="all").logits

    return score_continuations(extend, cache, last_logits, continuation, mean=kind == "whole_mean", pad_id=pad_id)


def last_token_scores(state, graphdef, input_ids: jax.Array, cache: KVCache, intervention: Intervention,
                      option_tokens: jax.Array, continuation: jax.Array, kind: OptionScore, pad_id: int) -> jax.Array:  # fmt: skip
    """Option scores [batch, option] of one intervention: the prompt's last token (the last
    column of input_ids [batch, seq]) run on `cache` (the rest of the prompt). A one-token step
    edits its only position under either position policy."""
    b = input_ids.shape[0]
    whole = kind != "first_token"
    out = forward(state, input_ids[:, -1:], jnp.ones((b, 1), jnp.int32), intervention, cache, graphdef=graphdef,
                  logits_at="last", return_cache=whole)  # fmt: skip
    last = out.logits[:, -1]
    if not whole:
        return candidate_log_probs(last, option_tokens)
    return continuation_scores(state, graphdef, out.cache, last, continuation, kind, pad_id)


def full_prompt_scores(state, graphdef, input_ids: jax.Array, attention_mask: jax.Array, intervention: Intervention,
                       option_tokens: jax.Array, continuation: jax.Array, kind: OptionScore, pad_id: int) -> jax.Array:  # fmt: skip
    """Option scores [batch, option] with the whole prompt run under the intervention (needed when
    it edits every position)."""
    whole = kind != "first_token"
    out = forward(state, input_ids, attention_mask, intervention, None, graphdef=graphdef, logits_at="last",
                  return_cache=whole)  # fmt: skip
    last = out.logits[:, -1]
    if not whole:
        return candidate_log_probs(last, option_tokens)
    return continuation_scores(state, graphdef, out.cache, last, continuation, kind, pad_id)


@functools.partial(jax.jit, static_argnames=("graphdef", "kind", "pad_id"))
def score_last_position(state, cache: KVCache, input_ids, option_tokens, continuation, interventions: Intervention,
                        *, graphdef, kind: OptionScore, pad_id: int) -> jax.Array:  # fmt: skip
    """[intervention, batch, option] for stacked last-position interventions (each leaf with a
    leading intervention axis) on one shared prefix cache (read by broadcasting, not copied)."""
    one = functools.partial(last_token_scores, state, graphdef, input_ids, cache, option_tokens=option_tokens,
                            continuation=continuation, kind=kind, pad_id=pad_id)  # fmt: skip
    return jax.vmap(lambda iv: one(intervention=iv))(interventions)


@functools.partial(jax.jit, static_argnames=("graphdef", "kind", "pad_id"))
def score_all_positions(state, input_ids, attention_mask, option_tokens, continuation, interventions: Intervention,
                        *, graphdef, kind: OptionScore, pad_id: int) -> jax.Array:  # fmt: skip
    """[intervention, batch, option] for stacked interventions that edit every prompt position."""
    one = functools.partial(full_prompt_scores, state, graphdef, input_ids, attention_mask, option_tokens=option_tokens,
                            continuation=continuation, kind=kind, pad_id=pad_id)  # fmt: skip
    return jax.vmap(lambda iv: one(intervention=iv))(interventions)
