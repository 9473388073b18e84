"""Free generation under an intervention (greedy).

The sequence buffer has one fixed width (prompt + new tokens, rounded up), so the forward
compiles once; each step runs the buffer's real tokens and reads the logits at the last one.
With a last-position intervention, the positions edited are the prompt's last token and every
generated token: exactly the positions a cached decoder would edit, one step at a time (each of
them was "the last position" when it was computed). With ``all_positions`` every position is
edited.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax.numpy as jnp
import numpy as np

from neuronjax.intervention import Intervention
from neuronjax.lm import forward


def generate(
    lm,
    prompts: Sequence[str],
    intervention: Optional[Intervention] = None,
    max_new_tokens: int = 32,
    chat: bool = False,
    stop_at_eos: bool = True,
) -> list[str]:
    """Greedy continuations of `prompts` (strings; `chat` wraps each in the chat template)."""
    tok = lm.tokenizer
    if tok is None:
        raise ValueError(f"{lm.source}: this checkpoint has no tokenizer; generation needs one")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens = {max_new_tokens}: expected >= 1")
    if intervention is not None:
        intervention.check_shape(lm.config.num_layers, lm.config.intermediate_size)
    rows = []
    for p in prompts:
        if chat:
            p = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        rows.append(list(tok.encode(p, add_special_tokens=not chat)))
    longest = max(len(r) for r in rows)
    width = -(-(longest + max_new_tokens) // 32) * 32
    b = len(rows)
    ids = np.full((b, width), lm.pad_id, np.int32)
    mask = np.zeros((b, width), np.int32)
    lengths = np.array([len(r) for r in rows])
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r  # right-padded: each row grows to the right
        mask[i, : len(r)] = 1
    positions = np.arange(width)[None, :]
    edit_from = lengths[:, None] - 1
    eos = lm.config.eos_token_id if stop_at_eos else None
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    done = np.zeros(b, bool)
    new = [[] for _ in range(b)]
    for _ in range(max_new_tokens):
        if intervention is not None and bool(intervention.all_positions):
            edit = mask.astype(bool)
        else:
            edit = (positions >= edit_from) & mask.astype(bool)
        out = forward(lm.state, lm._place(ids), lm._place(mask), intervention, None, lm._place(jnp.asarray(edit)),
                      graphdef=lm.graphdef, logits_at="last")  # fmt: skip
        nxt = np.asarray(jnp.argmax(out.logits[:, -1], axis=-1))
        for i in range(b):
            if done[i]:
                continue
            t = int(nxt[i])
            if t in eos:
                done[i] = True
                continue
            pos = lengths[i]
            ids[i, pos], mask[i, pos] = t, 1
            lengths[i] += 1
            new[i].append(t)
        if done.all():
            break
    return [tok.decode(n, skip_special_tokens=True) for n in new]
