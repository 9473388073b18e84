"""Small stand-ins shared by the task tests: a character-level tokenizer and a few items."""

from __future__ import annotations

import numpy as np

from neuronjax.tasks.schema import Item

BOS = 256
PAD = 257


class CharTokenizer:
    """One token per character (id = code point, < 256), BOS = 256 with special tokens, PAD = 257.

    ' A' is two tokens here, so the letter spellings found are exactly 'A'..'D'."""

    name_or_path = "char-tokenizer"
    pad_token_id = PAD
    eos_token_id = PAD
    chat_template = "fake"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [ord(c) for c in text if ord(c) < 256]
        return ([BOS] if add_special_tokens else []) + ids

    def convert_tokens_to_ids(self, token: str):
        return ord(token) if len(token) == 1 and ord(token) < 256 else None

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return chr(token_id) if token_id < 256 else "<special>"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


class NoLetterTokenizer(CharTokenizer):
    """Spells every capital letter with two tokens: the option letters have no single token."""

    name_or_path = "no-letter-tokenizer"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        out = []
        for token in super().encode(text, add_special_tokens):
            out += [token, 1] if 65 <= token <= 90 else [token]
        return out

    def convert_tokens_to_ids(self, token: str):
        return None


def make_items(n: int, prefix: str = "q") -> list[Item]:
    """n items whose gold answers cycle through A-D and whose options start with distinct letters."""
    return [
        Item(
            id=f"{prefix}{k}",
            question=f"question {k}?",
            options=(f"apple{k}", f"berry{k}", f"cherry{k}", f"date{k}"),
            answer=k % 4,
        )
        for k in range(n)
    ]


def fake_logits_fn(vocab: int = 258, seed: int = 0):
    """A deterministic stand-in for a causal LM: logits[b, s] depend on the tokens up to s only
    (an embedding table summed with position weights), so left-padded rows behave like a model."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(vocab, vocab)).astype(np.float32)

    def logits_fn(input_ids, attention_mask):
        import jax.numpy as jnp

        emb = jnp.asarray(table)[input_ids] * attention_mask[..., None]
        # causal running mean of the row's real tokens
        summed = jnp.cumsum(emb, axis=1)
        count = jnp.maximum(jnp.cumsum(attention_mask, axis=1), 1)[..., None]
        return summed / count

    return logits_fn, table


def fake_cached_fns(table):
    """prefill / extend for the model of `fake_logits_fn`: the cache is the running sum and count
    of the prompt's real-token rows, which is all that model remembers."""
    import jax.numpy as jnp

    def prefill(input_ids, attention_mask):
        emb = jnp.asarray(table)[input_ids] * attention_mask[..., None]
        total, count = emb.sum(axis=1), attention_mask.sum(axis=1, keepdims=True)
        return (total / jnp.maximum(count, 1))[:, None, :], (total, count)

    def extend(cache, input_ids, attention_mask):
        total, count = cache
        emb = jnp.asarray(table)[input_ids] * attention_mask[..., None]
        summed = total[:, None, :] + jnp.cumsum(emb, axis=1)
        counts = count[:, None, :] + jnp.cumsum(attention_mask, axis=1)[..., None]
        return summed / jnp.maximum(counts, 1)

    return prefill, extend
