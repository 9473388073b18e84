"""From a task config and a tokenizer to the batches of one split part."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterator, Optional

import numpy as np

from neuronjax.errors import InputError
from neuronjax.tasks.aqua import make_all_proxies
from neuronjax.tasks.config import TaskConfig, load_task_and_split
from neuronjax.tasks.encoding import ProxyRecord, encode_proxies
from neuronjax.tasks.pipeline import iterate_batches
from neuronjax.tasks.schema import Item, Task
from neuronjax.tasks.splits import Split

log = logging.getLogger("neuronjax.tasks")


@dataclasses.dataclass(frozen=True)
class EncodedTask:
    """The tokenized proxies of one part of a task's split."""

    config: TaskConfig
    task: Task
    split: Split
    part: str  # 'identify' or 'evaluate'
    items: tuple[Item, ...]  # record.item_index indexes this
    records: tuple[ProxyRecord, ...]
    pad_id: int

    def batches(
        self, process_index: Optional[int] = None, process_count: Optional[int] = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """This process's batches (see `pipeline`)."""
        return iterate_batches(self.records, self.pad_id, self.config.pipeline, process_index, process_count)

    @property
    def first_token_ties(self) -> int:
        """Proxies whose options share a first token (option_text first_token cannot separate them)."""
        return sum(r.first_token_tie for r in self.records)


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, else its EOS id, else 0 (padding is masked out either way)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def encode_task(
    config: TaskConfig, tokenizer: Any, part: str = "evaluate", max_items: Optional[int] = None
) -> EncodedTask:
    """Load, split, make proxies for and tokenize one part ('identify' or 'evaluate')."""
    if part not in ("identify", "evaluate"):
        raise InputError(f"part {part!r}: expected 'identify' or 'evaluate' (demo items are never scored)")
    task, split = load_task_and_split(config)
    items = split.items(task, part)[:max_items]
    demos = split.items(task, "demo")
    proxies = make_all_proxies(items, config.aqua, config.name)
    records = encode_proxies(items, proxies, demos, tokenizer, config.prompt)
    encoded = EncodedTask(config, task, split, part, tuple(items), tuple(records), pad_token_id(tokenizer))
    report_ties(encoded)
    return encoded


def report_ties(encoded: EncodedTask) -> int:
    """Warn about proxies whose options the option score cannot tell apart: options sharing their
    first token (option_text, first_token), or encoding to the same tokens (option_text, whole).
    Returns how many proxies are affected (the letter format has none)."""
    prompt = encoded.config.prompt
    if prompt.answer_format != "option_text":
        return 0
    if prompt.option_score == "first_token":
        tied = [r for r in encoded.records if r.first_token_tie]
        what, fix = "start with the same token", "option_score: whole or answer_format: letter"
    else:
        tied = [r for r in encoded.records if len({tuple(row) for row in r.continuation.tolist()}) < len(r.continuation)]
        what, fix = "encode to the same tokens", "options with distinct texts"
    if tied:
        item = encoded.items[tied[0].item_index]
        log.warning("task %r (%s): %d of %d proxies have two options that %s, which option_score %s cannot tell "
                    "apart (e.g. item %r, options %s); consider %s", encoded.config.name, encoded.part, len(tied),
                    len(encoded.records), what, prompt.option_score, item.id, list(item.options), fix)  # fmt: skip
    return len(tied)
