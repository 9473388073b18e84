"""Deterministic split of a task into identification, demonstration and held-out evaluation items.

Items are ordered by a seeded hash of their id (not by file position), so the split depends only
on the seed and the set of ids: reordering the file changes nothing. The split is a plain record
of ids, saved with every result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Optional

from neuronjax.errors import ConfigError
from neuronjax.tasks.schema import Item, Task


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How many items go where. Identification gets what the other two leave."""

    seed: int = 0  # changes which items land in which split
    num_demo: int = 4  # items reserved as one-shot demonstrations (never scored)
    eval_fraction: float = 0.3  # share of the non-demo items held out for evaluation
    max_eval: Optional[int] = None  # cap on held-out items (None: no cap)
    max_identify: Optional[int] = None  # cap on identification items (None: no cap)


@dataclasses.dataclass(frozen=True)
class Split:
    """Disjoint id lists; each in seeded-hash order."""

    seed: int
    identify: tuple[str, ...]
    demo: tuple[str, ...]
    evaluate: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "identify": list(self.identify),
            "demo": list(self.demo),
            "evaluate": list(self.evaluate),
            "fingerprint": self.fingerprint(),
        }

    def fingerprint(self) -> str:
        """sha256 of the three id lists: equal fingerprints, equal splits."""
        payload = json.dumps([self.identify, self.demo, self.evaluate]).encode()
        return hashlib.sha256(payload).hexdigest()

    def items(self, task: Task, part: str) -> list[Item]:
        """The items of one part ('identify', 'demo' or 'evaluate'), in split order."""
        if part not in ("identify", "demo", "evaluate"):
            raise ConfigError(f"split part {part!r}; expected identify, demo or evaluate")
        by_id = task.by_id()
        return [by_id[i] for i in getattr(self, part)]


def _rank(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}\x00{item_id}".encode()).hexdigest()


def make_split(task: Task, config: SplitConfig = SplitConfig()) -> Split:
    """Split `task` by `config`; raises when the task is too small to fill every part."""
    if config.num_demo < 1:
        raise ConfigError(f"split.num_demo: expected >= 1 (the one-shot demonstration), got {config.num_demo}")
    if not 0.0 < config.eval_fraction < 1.0:
        raise ConfigError(f"split.eval_fraction: expected a value in (0, 1), got {config.eval_fraction}")
    for field in ("max_eval", "max_identify"):
        cap = getattr(config, field)
        if cap is not None and cap < 1:
            raise ConfigError(f"split.{field}: expected a cap >= 1 or null (no cap), got {cap}")
    ids = sorted((item.id for item in task.items), key=lambda i: _rank(config.seed, i))
    if len(ids) < config.num_demo + 2:
        raise ConfigError(
            f"task {task.name!r} ({task.source}): {len(ids)} items; need at least "
            f"num_demo + 2 = {config.num_demo + 2} to fill demo, identify and evaluate"
        )
    demo, rest = ids[: config.num_demo], ids[config.num_demo :]
    num_eval = min(max(1, round(len(rest) * config.eval_fraction)), len(rest) - 1)
    evaluate, identify = rest[:num_eval], rest[num_eval:]
    if config.max_eval is not None:
        evaluate = evaluate[: config.max_eval]
    if config.max_identify is not None:
        identify = identify[: config.max_identify]
    return Split(seed=config.seed, identify=tuple(identify), demo=tuple(demo), evaluate=tuple(evaluate))
