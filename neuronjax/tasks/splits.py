"""Deterministic split of a task into identification, demonstration and held-out evaluation items.

Items are ordered by a seeded hash of their id (not by file position), so the split depends only
on the seed and the set of ids: reordering the file changes nothing. The split is a plain record
of ids, saved with every result.

Answer-disjoint splits (`disjoint: answer`) keep every gold answer text on one side: items are
grouped by their gold text (stripped, case-folded), and whole groups go either to the held-out
side or to the other side (identification and demonstration), so no held-out item shares its
gold answer with an item the neurons were found on or with a demonstration shown in its prompt.
`answer_and_subject` also keeps each item's subject entity (`Item.entity`, e.g. world_facts'
country) on one side: gold texts and entities are one set of keys, and items sharing any key are
one group (connected components), so "What is the capital of France?" (Paris, France) and
"On which continent is France?" (Europe, France) fall together, and with them every item whose
gold is Paris, France or Europe. Groups are ordered by a seeded hash of their first key; a group
joins the held-out side while it fits the held-out share (eval_fraction of the non-demo items),
otherwise the other side. The caps (max_eval, max_identify) then apply as usual.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Literal, Optional

from neuronjax.errors import ConfigError
from neuronjax.tasks.schema import Item, Task

log = logging.getLogger("neuronjax.tasks")

Disjoint = Literal["none", "answer", "answer_and_subject"]


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How many items go where. Identification gets what the other two leave."""

    seed: int = 0  # changes which items land in which split
    num_demo: int = 4  # items reserved as one-shot demonstrations (never scored)
    eval_fraction: float = 0.3  # share of the non-demo items held out for evaluation
    max_eval: Optional[int] = None  # cap on held-out items (None: no cap)
    max_identify: Optional[int] = None  # cap on identification items (None: no cap)
    # none: items split one by one; answer: no gold answer text (stripped, case-folded) on both the
    # held-out side and the identification/demonstration side; answer_and_subject: neither a gold
    # text nor an item's subject entity (Item.entity, e.g. world_facts' country) on both sides
    disjoint: Disjoint = "none"


@dataclasses.dataclass(frozen=True)
class Split:
    """Disjoint id lists; each in seeded-hash order."""

    seed: int
    identify: tuple[str, ...]
    demo: tuple[str, ...]
    evaluate: tuple[str, ...]
    disjoint: str = "none"  # the SplitConfig.disjoint it was made with
    # disjoint splits: (groups on the held-out side, groups on the identification/demo side)
    groups: Optional[tuple[int, int]] = None

    def to_dict(self) -> dict:
        out = {
            "seed": self.seed,
            "identify": list(self.identify),
            "demo": list(self.demo),
            "evaluate": list(self.evaluate),
            "fingerprint": self.fingerprint(),
        }
        if self.disjoint != "none":
            out["disjoint"] = self.disjoint
            out["groups"] = {"evaluate": self.groups[0], "identify_and_demo": self.groups[1]}
        return out

    def summary(self) -> str:
        """'identify 160, demo 4, evaluate 66 items' (and the groups of a disjoint split)."""
        text = f"identify {len(self.identify)}, demo {len(self.demo)}, evaluate {len(self.evaluate)} items"
        if self.disjoint != "none":
            text += (f"; disjoint by {self.disjoint.replace('_', ' ')}: {self.groups[0]} groups held out, "
                     f"{self.groups[1]} groups for identification and demonstration")  # fmt: skip
        return text

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


def normalise(text: str) -> str:
    """The form gold texts and entities are compared in: stripped, case-folded."""
    return text.strip().casefold()


def item_keys(item: Item, disjoint: str) -> list[str]:
    """The texts that must not appear on both sides: the gold text, and for answer_and_subject
    the entity too (one namespace: an entity that is another item's gold answer joins them)."""
    keys = [normalise(item.gold_text)]
    if disjoint == "answer_and_subject" and item.entity:
        keys.append(normalise(item.entity))
    return keys


def answer_groups(items: list[Item], disjoint: str) -> list[list[Item]]:
    """Items that share a key (gold text, or entity for answer_and_subject), transitively: the
    connected components of the item-key graph (union-find over the keys)."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for item in items:
        first, *rest = item_keys(item, disjoint)
        for key in rest:
            a, b = find(first), find(key)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(find(item_keys(item, disjoint)[0]), []).append(item)
    return list(groups.values())


def _disjoint_sides(task: Task, config: SplitConfig) -> tuple[list[str], list[str], tuple[int, int]]:
    """(held-out ids, identification + demo ids, (held-out groups, other groups)) of a disjoint split."""
    where = f"split.disjoint: {config.disjoint}: task {task.name!r} ({task.source})"
    if config.disjoint == "answer_and_subject" and not any(item.entity for item in task.items):
        raise ConfigError(f"{where}: no item records a subject entity (Item.entity; a task file's 'entity' "
                          "field), so there is nothing to keep apart but the answers; expected disjoint: answer")  # fmt: skip
    groups = answer_groups(list(task.items), config.disjoint)
    # seeded order of the groups (by their smallest key), items in seeded-hash order inside a group
    keyed = sorted(groups, key=lambda g: _rank(config.seed, min(k for i in g for k in item_keys(i, config.disjoint))))
    target = max(1, round((len(task.items) - config.num_demo) * config.eval_fraction))
    held, rest, held_groups = [], [], 0
    for group in keyed:
        ids = [item.id for item in group]
        if len(held) + len(ids) <= target:
            held += ids
            held_groups += 1
        else:
            rest += ids
    largest = max(groups, key=len)
    if not held:
        raise ConfigError(
            f"{where}: its {len(task)} items share gold answers in {len(groups)} group(s), the largest "
            f"{len(largest)} items ({largest[0].gold_text!r}), and none fits the held-out share of "
            f"{target} items (eval_fraction {config.eval_fraction}); an answer-disjoint split is impossible, "
            "expected a task with more distinct answers or disjoint: none"
        )
    if len(rest) < config.num_demo + 1:
        raise ConfigError(f"{where}: {len(rest)} items left for demonstration and identification after holding "
                          f"out {len(held)}; need at least num_demo + 1 = {config.num_demo + 1}")  # fmt: skip
    if held_groups < 2 or len(groups) - held_groups < 2:
        side = "held-out" if held_groups < 2 else "identification/demonstration"
        log.warning("%s: the %s side holds a single answer group (%d of %d groups held out), so its items share "
                    "one gold answer", where, side, held_groups, len(groups))  # fmt: skip
    order = lambda ids: sorted(ids, key=lambda i: _rank(config.seed, i))  # noqa: E731
    return order(held), order(rest), (held_groups, len(groups) - held_groups)


def make_split(task: Task, config: SplitConfig = SplitConfig()) -> Split:
    """Split `task` by `config`; raises when the task is too small to fill every part (or, for a
    disjoint split, when its answers cannot be kept apart)."""
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
    groups = None
    if config.disjoint == "none":
        demo, rest = ids[: config.num_demo], ids[config.num_demo :]
        num_eval = min(max(1, round(len(rest) * config.eval_fraction)), len(rest) - 1)
        evaluate, identify = rest[:num_eval], rest[num_eval:]
    elif config.disjoint in ("answer", "answer_and_subject"):
        evaluate, other, groups = _disjoint_sides(task, config)
        demo, identify = other[: config.num_demo], other[config.num_demo :]
    else:
        raise ConfigError(f"split.disjoint: expected none, answer or answer_and_subject, got {config.disjoint!r}")
    if config.max_eval is not None:
        evaluate = evaluate[: config.max_eval]
    if config.max_identify is not None:
        identify = identify[: config.max_identify]
    split = Split(seed=config.seed, identify=tuple(identify), demo=tuple(demo), evaluate=tuple(evaluate),
                  disjoint=config.disjoint, groups=groups)  # fmt: skip
    if groups is not None:
        log.info("task %r: %s", task.name, split.summary())
    return split
