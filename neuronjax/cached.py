"""Scoring against a cached prompt: the prompt runs once, its last position under any intervention.

An intervention at the last prompt position leaves every earlier position unchanged (attention is
causal), so the prompt minus its last token runs once (`prefix_cache`) and the last token then runs
as a one-token step against that cache, once per intervention (`last_token_scores`). Attribution's
replay, held-out evaluation, the learned method's fit and generation all build on these functions.

Option scores ([batch, option]) follow the task's answer format (`neuronjax.tasks.scoring`):
``first_token`` reads the candidate tokens' log-probabilities at the last position; ``whole`` /
``whole_mean`` continue each option's text after the (edited) prompt without editing the text
tokens (the intervention acts on the prompt pass).

Functions that take ``state`` and ``graphdef`` are pure and compiled (the parameters are an
argument, never a constant of the compiled function); `prefix_cache` works on a merged model
inside another trace.
"""

from __future__ import annotations

import functools
from typing import Literal, Optional

import jax
import jax.numpy as jnp

from neuronjax.intervention import Intervention
from neuronjax.lm import forward
from neuronjax.models.decoder import Decoder, KVCache
from neuronjax.tasks.scoring import candidate_log_probs, score_continuations

OptionScore = Literal["first_token", "whole", "whole_mean"]


def prefix_cache(model: Decoder, input_ids: jax.Array, attention_mask: jax.Array) -> KVCache:
    """Keys and values of every position but the last, from a merged model (inside a trace).
    Rows must be left-padded, so the last column is every row's last token."""
    return model(input_ids[:, :-1], attention_mask[:, :-1], logits_at="none", return_cache=True).cache


@functools.partial(jax.jit, static_argnames=("graphdef",))
def compute_prefix_cache(state, input_ids: jax.Array, attention_mask: jax.Array, *, graphdef) -> KVCache:
    """`prefix_cache` compiled, from the parameter state: the cache shared by every
    last-position intervention of a batch."""
    return forward(state, input_ids[:, :-1], attention_mask[:, :-1], None, None, graphdef=graphdef,
                   logits_at="none", return_cache=True).cache  # fmt: skip


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


def pick_tokens(logits: jax.Array, key: jax.Array, temperature: float, top_p: float) -> jax.Array:
    """int32 [batch]: the next token of each row of logits [batch, vocab]. temperature 0: the argmax
    (greedy). Otherwise a draw from softmax(logits / temperature) restricted to the smallest set of
    most likely tokens whose probability reaches top_p (nucleus sampling; top_p = 1: every token)."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # probability of the tokens ranked above
        keep_sorted = before < top_p  # the most likely token is always kept
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new", "temperature", "top_p"))
def sample_tokens(state, input_ids: jax.Array, attention_mask: jax.Array, intervention, key: Optional[jax.Array] = None,
                  *, graphdef, max_new: int, temperature: float = 0.0, top_p: float = 1.0) -> jax.Array:  # fmt: skip
    """int32 [batch, max_new]: continuations of left-padded prompts [batch, seq] under an
    intervention (or None), with a key/value cache; greedy for temperature 0, else sampled with
    `key` (seeded: the same key gives the same tokens) at that temperature and nucleus top_p.

    The prompt runs once (the intervention edits the positions its policy names) and keeps its
    cache; each new token then runs as a one-token step, which the intervention edits under either
    policy (it is the last position). The cache has a fixed width, so the whole loop compiles once:
    it starts with max_new - 1 empty slots on the left, and each step appends the new token's keys
    and values on the right and drops the leftmost slot (always an empty one). The newest token
    thus sits right after the query's own slot, so slot distances are position distances and
    sliding-window attention sees the right keys.
    """
    b = input_ids.shape[0]
    keys = jax.random.split(key if key is not None else jax.random.key(0), max_new)
    out = forward(state, input_ids, attention_mask, intervention, None, graphdef=graphdef, logits_at="last",
                  return_cache=True)  # fmt: skip
    first = pick_tokens(out.logits[:, -1], keys[0], temperature, top_p)
    buffer = out.cache.pad_left(max_new - 1)
    ones = jnp.ones((b, 1), jnp.int32)

    def step(i, carry):
        buffer, tokens, token = carry
        out = forward(state, token[:, None], ones, intervention, buffer, graphdef=graphdef, logits_at="last",
                      return_cache=True)  # fmt: skip
        token = pick_tokens(out.logits[:, -1], keys[i], temperature, top_p)
        return out.cache.drop_first(), tokens.at[:, i].set(token), token

    tokens = jnp.zeros((b, max_new), jnp.int32).at[:, 0].set(first)
    _, tokens, _ = jax.lax.fori_loop(1, max_new, step, (buffer, tokens, first))
    return tokens


def greedy_tokens(state, input_ids, attention_mask, intervention, *, graphdef, max_new: int) -> jax.Array:
    """`sample_tokens` at temperature 0."""
    return sample_tokens(state, input_ids, attention_mask, intervention, None, graphdef=graphdef, max_new=max_new)
