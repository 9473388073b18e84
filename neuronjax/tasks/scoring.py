"""Option scores: the model's score for each of the k options of a proxy, [batch, option].

Works with any `logits_fn(input_ids [batch, seq], attention_mask [batch, seq]) -> float32
[batch, seq, vocab]` that handles left-padded rows (e.g. `lm.logits`).

    letter, first_token: score[b, k] = logsumexp over the candidate tokens t of option k of
        log p(t | prompt), read at the last prompt position. Scores are log-probabilities, i.e.
        the logsumexp of the candidates' logits minus the row's log-partition: the shift is the
        same for all the options, so F and the argmax are those of the raw-logit definition.
    whole: score[b, k] = sum over the option's text tokens of log p(token | prompt, earlier
        tokens); whole_mean divides by the number of tokens. Rows are [left-padded prompt |
        right-padded option text], so the prompt's last position is column seq - 1 in every row.
        `make_cached_scorer` computes the same numbers with one prompt pass plus a short pass
        per option over the prompt's key/value cache.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from neuronjax.errors import InputError

LogitsFn = Callable[[jax.Array, jax.Array], jax.Array]


def candidate_log_probs(last_logits: jax.Array, option_tokens: jax.Array) -> jax.Array:
    """float32 [batch, option] from last-position logits [batch, vocab] and candidate ids
    [batch, option, variant] (-1 = no candidate): logsumexp over each option's candidates."""
    log_probs = jax.nn.log_softmax(last_logits.astype(jnp.float32), axis=-1)
    batch, options, variants = option_tokens.shape
    flat = jnp.clip(option_tokens, 0).reshape(batch, options * variants)
    picked = jnp.take_along_axis(log_probs, flat, axis=-1).reshape(batch, options, variants)
    picked = jnp.where(option_tokens >= 0, picked, -jnp.inf)
    return jax.nn.logsumexp(picked, axis=-1)


def continuation_rows(
    input_ids: jax.Array, attention_mask: jax.Array, continuation: jax.Array, pad_id: int
) -> tuple[jax.Array, jax.Array]:
    """[batch * option, seq + cont] ids and mask: each prompt followed by one option's text.

    input_ids, attention_mask: [batch, seq] left-padded prompts; continuation: [batch, option,
    cont] text tokens, -1 after the end (those positions get pad_id and mask 0).
    """
    batch, seq = input_ids.shape
    _, options, cont = continuation.shape
    present = continuation >= 0
    ids = jnp.concatenate(
        [jnp.broadcast_to(input_ids[:, None, :], (batch, options, seq)), jnp.where(present, continuation, pad_id)],
        axis=-1,
    )
    mask = jnp.concatenate(
        [jnp.broadcast_to(attention_mask[:, None, :], (batch, options, seq)), present.astype(attention_mask.dtype)],
        axis=-1,
    )
    return ids.reshape(batch * options, seq + cont), mask.reshape(batch * options, seq + cont)


def continuation_scores(logits: jax.Array, continuation: jax.Array, mean: bool = False) -> jax.Array:
    """float32 [batch, option] from the logits [batch * option, seq + cont, vocab] of
    `continuation_rows`: the summed (or mean) log-prob of each option's text tokens."""
    batch, options, cont = continuation.shape
    seq = logits.shape[1] - cont
    present = continuation >= 0
    # Position seq - 1 + j predicts continuation token j.
    predicting = logits[:, seq - 1 : seq - 1 + cont, :].astype(jnp.float32)
    log_probs = jax.nn.log_softmax(predicting, axis=-1)
    targets = jnp.clip(continuation, 0).reshape(batch * options, cont, 1)
    token_lp = jnp.take_along_axis(log_probs, targets, axis=-1)[..., 0].reshape(batch, options, cont)
    total = jnp.sum(jnp.where(present, token_lp, 0.0), axis=-1)
    if mean:
        total = total / jnp.maximum(jnp.sum(present, axis=-1), 1)
    return total


def continuation_log_probs(
    logits_fn: LogitsFn,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    continuation: jax.Array,
    pad_id: int,
    mean: bool = False,
) -> jax.Array:
    """float32 [batch, option]: log-prob of each option's whole text after the prompt. Runs
    batch * option rows of length seq + cont through `logits_fn`."""
    rows_ids, rows_mask = continuation_rows(input_ids, attention_mask, continuation, pad_id)
    return continuation_scores(logits_fn(rows_ids, rows_mask), continuation, mean)


def option_scores(logits_fn: LogitsFn, batch: dict, option_score: str = "first_token", pad_id: int = 0) -> jax.Array:
    """float32 [batch, option] scores of one pipeline batch (see module docstring)."""
    if option_score in ("whole", "whole_mean"):
        if batch["continuation"].shape[-1] == 0:
            raise InputError("option_score whole needs batches encoded with option_score whole (continuation is empty)")
        return continuation_log_probs(
            logits_fn,
            batch["input_ids"],
            batch["attention_mask"],
            batch["continuation"],
            pad_id,
            mean=option_score == "whole_mean",
        )
    if option_score != "first_token":
        raise InputError(f"option_score: expected first_token, whole or whole_mean, got {option_score!r}")
    logits = logits_fn(batch["input_ids"], batch["attention_mask"])
    return candidate_log_probs(logits[:, -1, :], batch["option_tokens"])


_candidates_jit = jax.jit(candidate_log_probs)
_rows_jit = jax.jit(continuation_rows, static_argnames=("pad_id",))
_continuation_jit = jax.jit(continuation_scores, static_argnames=("mean",))


def make_scorer(logits_fn: LogitsFn, option_score: str = "first_token", pad_id: int = 0):
    """`batch -> scores [batch, option]`, same result as `option_scores`. The model function is
    called as it is (it is expected to be compiled already: its parameters never become
    constants of another jit); the small reductions around it are jit-compiled. For first_token
    the function may return only the last position ([batch, 1, vocab])."""
    if option_score not in ("first_token", "whole", "whole_mean"):
        raise InputError(f"option_score: expected first_token, whole or whole_mean, got {option_score!r}")

    def run(batch: dict) -> jax.Array:
        if option_score == "first_token":
            logits = logits_fn(jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"]))
            return _candidates_jit(logits[:, -1, :], jnp.asarray(batch["option_tokens"]))
        continuation = jnp.asarray(batch["continuation"])
        if continuation.shape[-1] == 0:
            raise InputError("option_score whole needs batches encoded with option_score whole (continuation is empty)")
        rows_ids, rows_mask = _rows_jit(
            jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"]), continuation, pad_id=pad_id
        )
        return _continuation_jit(logits_fn(rows_ids, rows_mask), continuation, mean=option_score == "whole_mean")

    return run


def cached_continuation_scores(
    last_logits: jax.Array, extend_logits: jax.Array, continuation: jax.Array, mean: bool = False
) -> jax.Array:
    """float32 [batch, option] whole-text scores from a cached pass.

    last_logits: [batch, vocab] at the prompt's last position (predicts text token 0);
    extend_logits: [batch * option, cont, vocab] of the text tokens run after the prompt's cache
    (position j predicts text token j + 1); continuation: [batch, option, cont], -1 = pad.
    """
    batch, options, cont = continuation.shape
    present = continuation >= 0
    first_lp = jax.nn.log_softmax(last_logits.astype(jnp.float32), axis=-1)
    first = jnp.take_along_axis(first_lp, jnp.clip(continuation[:, :, 0], 0), axis=-1)
    rest_lp = jax.nn.log_softmax(extend_logits[:, : cont - 1, :].astype(jnp.float32), axis=-1)
    targets = jnp.clip(continuation[:, :, 1:], 0).reshape(batch * options, cont - 1, 1)
    rest = jnp.take_along_axis(rest_lp, targets, axis=-1)[..., 0].reshape(batch, options, cont - 1)
    total = first + jnp.sum(jnp.where(present[:, :, 1:], rest, 0.0), axis=-1)
    if mean:
        total = total / jnp.maximum(jnp.sum(present, axis=-1), 1)
    return total


_cached_jit = jax.jit(cached_continuation_scores, static_argnames=("mean",))


def _repeat_rows(cache, times: int):
    """Each batch row of a cache `times` times: its own `repeat_rows` (e.g. a KVCache, whose
    keys are layer-major), else every leaf repeated along its first (batch) axis."""
    if hasattr(cache, "repeat_rows"):
        return cache.repeat_rows(times)
    return jax.tree.map(lambda x: jnp.repeat(x, times, axis=0), cache)


_repeat_jit = jax.jit(_repeat_rows, static_argnames=("times",))


def make_cached_scorer(prefill_fn, extend_fn, mean: bool = False, pad_id: int = 0):
    """Whole-text `batch -> scores [batch, option]` through a key/value cache.

    prefill_fn(input_ids [batch, seq], attention_mask) -> (logits [batch, 1, vocab] at the last
    position, cache: a pytree whose leaves are batch-first); extend_fn(cache, ids [rows, cont],
    mask [rows, cont]) -> logits [rows, cont, vocab]. Each option's text is run once against
    its own copy of the prompt's cache, so the prompt is not recomputed per option.
    """

    def run(batch: dict) -> jax.Array:
        continuation = jnp.asarray(batch["continuation"])
        if continuation.shape[-1] == 0:
            raise InputError("option_score whole needs batches encoded with option_score whole (continuation is empty)")
        last, cache = prefill_fn(jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"]))
        return score_continuations(extend_fn, cache, last[:, -1, :], continuation, mean, pad_id, jitted=True)

    return run


def score_continuations(extend_fn, cache, last_logits, continuation, mean=False, pad_id=0, jitted=False):
    """Whole-text scores [batch, option] after a prompt whose cache and last-position logits
    [batch, vocab] are given: each option's text runs once (extend_fn(cache, ids, mask) ->
    logits, as in `make_cached_scorer`) against its own copy of the prompt's cache. `jitted` uses
    the compiled helpers (when called outside a trace)."""
    batch_size, options, cont = continuation.shape
    present = continuation >= 0
    ids = jnp.where(present, continuation, pad_id).reshape(batch_size * options, cont)
    rows = _repeat_jit(cache, times=options) if jitted else _repeat_rows(cache, options)
    logits = extend_fn(rows, ids, present.astype(jnp.int32).reshape(ids.shape))
    score = _cached_jit if jitted else cached_continuation_scores
    return score(last_logits, logits, continuation, mean=mean)
