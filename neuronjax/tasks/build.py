"""From a task config and a tokenizer to the batches of one split part."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional

import numpy as np

from neuronjax.tasks.aqua import make_all_proxies
from neuronjax.tasks.config import TaskConfig, load_task_and_split
from neuronjax.tasks.encoding import ProxyRecord, encode_proxies
from neuronjax.tasks.pipeline import iterate_batches
from neuronjax.tasks.schema import Item, Task
from neuronjax.tasks.splits import Split


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
        raise ValueError(f"part {part!r}: expected 'identify' or 'evaluate' (demo items are never scored)")
    task, split = load_task_and_split(config)
    items = split.items(task, part)[:max_items]
    demos = split.items(task, "demo")
    proxies = make_all_proxies(items, config.aqua)
    records = encode_proxies(items, proxies, demos, tokenizer, config.prompt)
    return EncodedTask(config, task, split, part, tuple(items), tuple(records), pad_token_id(tokenizer))
