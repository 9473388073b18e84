"""Free generation under an intervention, with a key/value cache: greedy, or seeded sampling at a
temperature with nucleus (top-p) filtering.

The prompts are left-padded into one batch and run once; every new token is a one-token step
against the prompt's cache (`neuronjax.cached.sample_tokens`, one compiled loop). A last-position
intervention therefore edits the prompt's last token and every generated token (each was "the
last position" when it was computed); an all-positions intervention edits every prompt position
and every generated token.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import numpy as np

from neuronjax.cached import sample_tokens
from neuronjax.errors import InputError
from neuronjax.intervention import Intervention

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
