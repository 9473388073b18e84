"""Shared helpers of the generated tasks: distractor choice and balanced gold letters.

Every generated item has options with different first characters (four options for most tasks,
two for comparisons). Then any tokenizer gives the options different first tokens (once a shared
leading space token is set aside), so the option_text `first_token` score can always tell them
apart.
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.tasks.schema import NUM_OPTIONS, Item


def rng_for(name: str, seed: int = 0) -> np.random.Generator:
    """A generator seeded by a task name, independent of Python's hash randomisation."""
    digest = hashlib.sha256(f"{name}\x00{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def initial(text: str) -> str:
    return text.strip()[:1].lower()


def pick_distractors(
    gold: str, pool: Sequence[str], rng: np.random.Generator, exclude: Sequence[str] = (), count: int = NUM_OPTIONS - 1
) -> Optional[list[str]]:
    """`count` (three) entries of `pool` whose first characters differ from the gold's and each
    other's (and that are not in `exclude`); None when the pool cannot supply them."""
    banned = {gold.lower(), *(e.lower() for e in exclude)}
    chosen: list[str] = []
    initials = {initial(gold)}
    for k in rng.permutation(len(pool)):
        candidate = pool[int(k)]
        if candidate.lower() in banned or initial(candidate) in initials:
            continue
        chosen.append(candidate)
        initials.add(initial(candidate))
        if len(chosen) == count:
            return chosen
    return None


def assemble(
    name: str,
    questions: Sequence[tuple],
    seed: int = 0,
    num_options: int = NUM_OPTIONS,
) -> list[Item]:
    """Items from (question, gold, distractors, subject[, entity]) tuples, num_options - 1
    distractors each, with the gold letters balanced: a seeded shuffle of A, B, C, D, A, B, ...
    (the first num_options letters) decides where each gold option goes."""
    rng = rng_for(name + "/letters", seed)
    positions = rng.permutation(np.resize(np.arange(num_options), len(questions)))
    items = []
    for k, ((question, gold, distractors, subject, *entity), position) in enumerate(zip(questions, positions)):
        if distractors is None or len(distractors) != num_options - 1:
            got = "none" if distractors is None else len(distractors)
            raise ConfigError(f"{name} item {k}: expected {num_options - 1} distractors, got {got}")
        others = [distractors[int(j)] for j in rng.permutation(num_options - 1)]
        options = others[: int(position)] + [gold] + others[int(position) :]
        items.append(Item(id=f"{name}:{k:04d}", question=question, options=tuple(options), answer=int(position),
                          subject=subject, entity=entity[0] if entity else None))  # fmt: skip
    return items
