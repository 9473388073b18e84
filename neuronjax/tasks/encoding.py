"""Token ids of proxy prompts and of the answers they are scored against.

The answer is read at the last prompt position. For `letter` the candidates of option k are all
single tokens that spell its letter ('A', ' A', 'ĠA', '▁A', ...), scored together by
log-sum-exp. For `option_text` they are the tokens of " <option text>": tokens that all the
options share at the start (a lone space token before digits, say) carry no choice, so they are
moved into the prompt; the first remaining token is the `first_token` candidate and the rest
complete the `whole` text.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from neuronjax.tasks.aqua import Proxy
from neuronjax.tasks.prompts import PromptConfig, answer_separator, build_prompt, choose_demo
from neuronjax.tasks.schema import LETTERS, NUM_OPTIONS, Item


class TokenizerError(ValueError):
    """The tokenizer cannot express what the answer format needs."""


@dataclasses.dataclass(frozen=True)
class ProxyRecord:
    """One tokenized proxy, ready to be padded into a batch."""

    item_index: int  # position of the item in the list given to `encode_proxies`
    proxy_index: int
    gold: int  # letter index of the gold option in this proxy
    prompt_ids: np.ndarray  # int32 [seq]: prompt tokens, ending where the answer is read
    option_tokens: np.ndarray  # int32 [option (k), variant]: candidate first answer tokens, -1 = none
    continuation: np.ndarray  # int32 [option, cont]: option text tokens (whole scoring), -1 = pad
    first_token_tie: bool  # two options start with the same token: first_token cannot tell them apart


def _round_trip_id(tokenizer: Any, token: str) -> int | None:
    """Id of a vocabulary entry spelled exactly `token`, or None (unknown-token ids are rejected)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id < 0:
        return None
    return token_id if tokenizer.convert_ids_to_tokens(token_id) == token else None


def letter_token_ids(tokenizer: Any, letters: Sequence[str] = LETTERS[:NUM_OPTIONS]) -> list[list[int]]:
    """For each letter, every single-token spelling of it that can follow the cue.

    Found two ways: strings "X" and " X" that encode to one token, and vocabulary entries "X",
    "ĠX" (byte-level BPE) and "▁X" (SentencePiece). Raises TokenizerError when a letter has no
    single-token spelling or two letters share a token.
    """
    result = []
    for letter in letters:
        ids: list[int] = []
        for text in (letter, " " + letter):
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) == 1:
                ids.append(int(encoded[0]))
        for token in (letter, "Ġ" + letter, "▁" + letter):
            token_id = _round_trip_id(tokenizer, token)
            if token_id is not None:
                ids.append(int(token_id))
        ids = sorted(set(ids))
        if not ids:
            raise TokenizerError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r}: no single token spells the "
                f"option letter {letter!r} (tried {letter!r}, ' {letter}', 'Ġ{letter}', '▁{letter}'); "
                "the letter answer format needs one, use answer_format: option_text"
            )
        result.append(ids)
    seen: dict[int, str] = {}
    for letter, ids in zip(letters, result):
        for token_id in ids:
            if token_id in seen:
                raise TokenizerError(
                    f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r}: token {token_id} spells "
                    f"both {seen[token_id]!r} and {letter!r}"
                )
            seen[token_id] = letter
    return result


def pad_rows(rows: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """int32 [len(rows), width] with -1 after each row's end."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.full((len(rows), width), -1, np.int32)
    for k, row in enumerate(rows):
        out[k, : len(row)] = row
    return out


def _shared_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the common start of `seqs`, leaving every sequence at least one token."""
    limit = min(len(s) for s in seqs) - 1
    n = 0
    while n < limit and all(s[n] == seqs[0][n] for s in seqs):
        n += 1
    return n


def _encode_prompt(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    # Plain prompts get the tokenizer's usual special tokens (a BOS where the model expects one);
    # a chat template already writes its own.
    return list(tokenizer.encode(prompt, add_special_tokens=not chat))


def encode_proxies(
    items: Sequence[Item],
    proxies: Sequence[Proxy],
    demos: Sequence[Item],
    tokenizer: Any,
    config: PromptConfig,
) -> list[ProxyRecord]:
    """Tokenize every proxy of `items` (proxies refer to items by id); a proxy with k options
    gets option arrays [k, ...] with the letters A.. up to the k-th."""
    index_of = {item.id: k for k, item in enumerate(items)}
    letter_ids: dict[int, np.ndarray] = {}  # k -> the candidate ids of the first k letters
    records = []
    for proxy in proxies:
        demo = choose_demo(proxy.item_id, demos, config)
        prompt = build_prompt(proxy, demo, config, tokenizer)
        prompt_ids = _encode_prompt(tokenizer, prompt, config.chat_template)
        k = len(proxy.options)
        if config.answer_format == "letter":
            if k not in letter_ids:
                letter_ids[k] = pad_rows(letter_token_ids(tokenizer, LETTERS[:k]))
            option_tokens, continuation, tie = letter_ids[k], np.zeros((k, 0), np.int32), False
        else:
            sep = answer_separator(prompt)
            conts = [list(tokenizer.encode(sep + text, add_special_tokens=False)) for text in proxy.options]
            for j, cont in enumerate(conts):
                if not cont:
                    raise TokenizerError(f"item {proxy.item_id!r}: option {LETTERS[j]} encodes to no tokens")
            shared = _shared_prefix(conts)
            prompt_ids = prompt_ids + conts[0][:shared]
            conts = [c[shared:] for c in conts]
            option_tokens = pad_rows([[c[0]] for c in conts])
            continuation = pad_rows(conts) if config.option_score != "first_token" else np.zeros((k, 0), np.int32)
            tie = len({c[0] for c in conts}) < len(conts)
        records.append(
            ProxyRecord(
                item_index=index_of[proxy.item_id],
                proxy_index=proxy.proxy_index,
                gold=proxy.answer,
                prompt_ids=np.asarray(prompt_ids, np.int32),
                option_tokens=option_tokens,
                continuation=continuation,
                first_token_tie=tie,
            )
        )
    return records
