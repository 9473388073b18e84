"""Free generation under an intervention, with a key/value cache: greedy, or seeded sampling at a
temperature with nucleus (top-p) filtering.

The prompts are left-padded into one batch and run once; every new token is a one-token step
against the prompt's cache (`sample_tokens`, one compiled loop). A last-position
intervention therefore edits the prompt's last token and every generated token (each was "the
last position" when it was computed); an all-positions intervention edits every prompt position
and every generated token.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax.errors import InputError
from neuronjax.intervention import Intervention
from neuronjax.lm import forward

BUCKET = 32  # prompt widths are padded to a multiple of this (fewer compiled shapes)


def generate(
    lm,
    prompts: Sequence[str],
    intervention: Optional[Intervention] = None,
    max_new_tokens: int = 32,
    chat: bool = False,
    stop_at_eos: bool = True,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Continuations of `prompts` (strings; `chat` wraps each in the chat template): greedy at
    temperature 0, else sampled (seeded by `seed`) at `temperature` from the top_p nucleus."""
    tok = lm.tokenizer
    if tok is None:
        raise InputError(f"{lm.source}: this checkpoint has no tokenizer; generation needs one")
    if temperature < 0 or not 0 < top_p <= 1:
        raise InputError(f"temperature = {temperature}, top_p = {top_p}: expected temperature >= 0 and 0 < top_p <= 1")
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens = {max_new_tokens}: expected >= 1")
    if intervention is not None:
        intervention.check_shape(lm.config.num_layers, lm.config.intermediate_size)
    rows = []
    for p in prompts:
        if chat:
            p = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        rows.append(list(tok.encode(p, add_special_tokens=not chat)))
    if any(not r for r in rows):
        raise InputError(f"prompt {prompts[next(i for i, r in enumerate(rows) if not r)]!r} has no tokens")
    width = -(-max(len(r) for r in rows) // BUCKET) * BUCKET
    ids = np.full((len(rows), width), lm.pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    tokens = np.asarray(sample_tokens(lm.state, lm.place(ids), lm.place(mask), intervention, jax.random.key(seed),
                                      graphdef=lm.graphdef, max_new=max_new_tokens, temperature=float(temperature),
                                      top_p=float(top_p)))  # fmt: skip
    eos = lm.config.eos_token_id if stop_at_eos else None
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    out = []
    for row in tokens.tolist():
        cut = next((j for j, t in enumerate(row) if t in eos), len(row))
        out.append(tok.decode(row[:cut], skip_special_tokens=True))
    return out


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
