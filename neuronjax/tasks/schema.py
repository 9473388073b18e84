"""The one shape every task is brought into: multiple-choice items, and the validation of raw rows.

An item has 2 to 10 options (letters A-J), four by default, and every item of a task has the same
number: the first row whose options can be read sets the task's count, and a later row with
another count is a bad row like any other (it names that row). One count per task keeps every
batch a dense [batch, option, ...] array and every metric's chance level one number, 1 / k.

A task file may name its fields however it likes; `FieldMap` says which field holds what. Rows go
through `validate_rows`, which turns each good row into an `Item` and each bad one into a
`RowProblem` that names the file, the line (or row) and the field, and says what was expected.
Whether problems stop the load or are skipped (and counted) is the caller's policy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from typing import Any, Iterable, Literal, Optional, Sequence

from neuronjax.errors import ConfigError, DataError

LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J")  # option letters, the first k of them used
NUM_OPTIONS = 4  # the usual count (MMLU-style tasks, the generated tasks but one)
MIN_OPTIONS, MAX_OPTIONS = 2, len(LETTERS)

log = logging.getLogger("neuronjax.tasks")


@dataclasses.dataclass(frozen=True)
class Item:
    """One multiple-choice question with k options (2..10; the same k for every item of a task)."""

    id: str  # unique within its task; generated from the source and line when the file has none
    question: str
    options: tuple[str, ...]  # in the order the source gives them
    answer: int  # index of the gold option in `options`, 0..k-1
    subject: Optional[str] = None  # e.g. an MMLU subject; None when the source has none
    # what the question is about (world_facts: the country), for splits that keep an entity's items
    # on one side (split.disjoint: answer_and_subject); None when the source has none
    entity: Optional[str] = None

    @property
    def gold_text(self) -> str:
        return self.options[self.answer]

    @property
    def num_options(self) -> int:
        return len(self.options)


@dataclasses.dataclass(frozen=True)
class Task:
    """A named set of items plus what was left out while reading them."""

    name: str
    items: tuple[Item, ...]
    source: str  # file path or "builtin:<name>"
    skipped: int = 0  # bad rows dropped under on_error="skip"
    header_rows: int = 0  # stray copies of the header inside the data, dropped
    problems: tuple[str, ...] = ()  # messages of the skipped rows, in file order

    def __len__(self) -> int:
        return len(self.items)

    def by_id(self) -> dict[str, Item]:
        return {item.id: item for item in self.items}

    @property
    def num_options(self) -> int:
        """k, the options of every item (one count per task, checked when the rows are read)."""
        return self.items[0].num_options if self.items else NUM_OPTIONS


@dataclasses.dataclass(frozen=True)
class FieldMap:
    """Which field of a raw row holds which part of an item."""

    question: str = "question"
    # One field holding a list of k options (2..10, the same k in every row), or k fields holding
    # one option each.
    options: str | tuple[str, ...] = "options"
    answer: str = "answer"  # letter A-D (any case; up to the k-th letter) or index 0-3 (0..k-1)
    id: Optional[str] = "id"  # optional per row: a missing or empty value gets a generated id
    subject: Optional[str] = "subject"  # optional per row
    entity: Optional[str] = "entity"  # optional per row: what the question is about (see Item)

    def __post_init__(self):
        if isinstance(self.options, (list, tuple)) and not MIN_OPTIONS <= len(self.options) <= MAX_OPTIONS:
            raise ConfigError(
                f"options: expected one field name or a list of {MIN_OPTIONS} to {MAX_OPTIONS} field names "
                f"(one per option), got {list(self.options)}"
            )

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "fields") -> "FieldMap":
        """A FieldMap from plain data, every key checked (errors name `where`)."""
        from neuronjax import configlib

        return configlib.parse(cls, raw, configlib.Source(name=where))


class TaskDataError(DataError):
    """A task source holds rows that cannot be read as multiple-choice items."""

    def __init__(self, source: str, problems: Sequence["RowProblem"], limit: int = 50):
        self.source = source
        self.problems = tuple(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:limit])
        more = len(self.problems) - limit
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{source}: {len(self.problems)} bad row(s) (set on_error: skip to drop and count them):\n{shown}{tail}"
        )


@dataclasses.dataclass(frozen=True)
class RowProblem:
    """What is wrong with one row, and where."""

    source: str  # file path
    location: str  # "line 7" for JSONL/CSV, "row 7" for Parquet and saved datasets
    field: str  # the raw field name the problem is in
    message: str  # what was expected and what was found

    def __str__(self) -> str:
        return f"{self.source}:{self.location}: field '{self.field}': {self.message}"


class UnreadableRow(dict):
    """Stands in for a line the reader could not parse (not UTF-8, not JSON, not an object): an
    empty mapping, so field lookups find nothing, that `validate_rows` reports as a bad row under
    the same policy as any other (listed under on_error: fail, skipped and counted under skip)."""

    def __init__(self, field: str, message: str):
        super().__init__()
        self.field, self.message = field, message


def parse_answer(value: Any, num_options: int = NUM_OPTIONS) -> Optional[int]:
    """Gold index 0..k-1 from one of the first k letters (any case) or an index 0..k-1; None when
    it is neither (k = num_options, 4 unless the task says otherwise)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < num_options else None
    if isinstance(value, float) and value.is_integer():
        return parse_answer(int(value), num_options)
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 1 and text.upper() in LETTERS[:num_options]:
            return LETTERS.index(text.upper())
        if text.isdigit() and text.isascii() and int(text) < num_options and text == str(int(text)):
            return int(text)
    return None


def answer_expected(num_options: int) -> str:
    """What an answer field may hold: "a letter A-D or an index 0-3" for four options."""
    return f"a letter A-{LETTERS[num_options - 1]} or an index 0-{num_options - 1}"


def _count(num_options: Optional[int]) -> str:
    return str(num_options) if num_options else f"{MIN_OPTIONS} to {MAX_OPTIONS}"


def _options_of(row: dict[str, Any], fields: FieldMap, k: Optional[int]) -> tuple[Optional[list], str, str]:
    """(options or None, field name, problem message) for one raw row; k: the task's option count
    once a row has set it (None before)."""
    if isinstance(fields.options, str):
        name = fields.options
        if name not in row or row[name] is None:
            return None, name, f"missing field (expected a list of {_count(k)} options)"
        value = row[name]
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:  # CSV cells hold lists as JSON text
                value = json.loads(value)
            except json.JSONDecodeError:
                return None, name, f"expected a JSON list of {_count(k)} options, got {value[:60]!r}"
        if not isinstance(value, (list, tuple)):
            return None, name, f"expected a list of {_count(k)} options, got {type(value).__name__}"
        if k is not None and len(value) != k:
            # one count per task: k was set by the first row whose options could be read
            return None, name, f"expected exactly {k} options, got {len(value)}"
        if not MIN_OPTIONS <= len(value) <= MAX_OPTIONS:
            return None, name, f"expected {MIN_OPTIONS} to {MAX_OPTIONS} options, got {len(value)}"
        return list(value), name, ""
    values = []
    for name in fields.options:
        if name not in row or row[name] is None:
            return None, name, f"missing field (expected one of the {len(fields.options)} option fields)"
        values.append(row[name])
    return values, ",".join(fields.options), ""


def _text(value: Any) -> Optional[str]:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def is_header_row(row: dict[str, Any], fields: FieldMap) -> bool:
    """A stray copy of the header inside the data: the question cell holds a column name."""
    value = row.get(fields.question)
    return isinstance(value, str) and value.strip().lower() in {"question", fields.question.lower()}


def _add_problem(problems: list, source: str, location: str, field: str, message: str) -> None:
    problems.append(RowProblem(source, location, field, message))


def validate_rows(
    rows: Iterable[tuple[str, dict[str, Any]]],
    fields: FieldMap,
    source: str,
    id_prefix: str,
    drop_header_rows: bool = True,
) -> tuple[list[Item], list[RowProblem], int]:
    """Items, problems and the number of header rows dropped, from (location, raw row) pairs.

    Every problem of every row is reported (a row can have several). Ids are checked for
    duplicates across the whole source; the second and later uses of an id are the bad rows.
    Rows without an id get `f"{id_prefix}{location without spaces}"`, e.g. "mmlu:line12".
    The first row whose options can be read sets the task's option count (k fields: k); a later
    row with another count is a bad row.
    """
    items: list[Item] = []
    problems: list[RowProblem] = []
    header_rows = 0
    first_seen: dict[str, str] = {}
    k: Optional[int] = None if isinstance(fields.options, str) else len(fields.options)
    for location, row in rows:
        if isinstance(row, UnreadableRow):
            problems.append(RowProblem(source, location, row.field, row.message))
            continue
        if drop_header_rows and is_header_row(row, fields):
            header_rows += 1
            continue
        row_problems: list[RowProblem] = []
        bad = functools.partial(_add_problem, row_problems, source, location)

        question = _text(row.get(fields.question))
        if fields.question not in row or row[fields.question] is None:
            bad(fields.question, "missing field (expected the question text)")
        elif not question:
            bad(fields.question, "expected non-empty question text")
        options, option_field, message = _options_of(row, fields, k)
        if options is None:
            bad(option_field, message)
        else:
            k = len(options)
            texts = [_text(o) for o in options]
            for j, text in enumerate(texts):
                if not text:
                    bad(option_field, f"option {LETTERS[j]} is empty or not text: {options[j]!r}")
        answer = None
        expected = answer_expected(k or MAX_OPTIONS)
        if fields.answer not in row or row[fields.answer] is None:
            bad(fields.answer, f"missing field (expected {expected})")
        else:
            answer = parse_answer(row[fields.answer], k or MAX_OPTIONS)
            if answer is None:
                bad(fields.answer, f"expected {expected}, got {row[fields.answer]!r}")
        raw_id = row.get(fields.id) if fields.id else None
        item_id = _text(raw_id) if raw_id is not None else None
        if not item_id:
            item_id = f"{id_prefix}{location.replace(' ', '')}"
        elif item_id in first_seen:
            bad(fields.id, f"duplicate id {item_id!r} (first used at {first_seen[item_id]})")
        first_seen.setdefault(item_id, location)
        if row_problems:
            problems.extend(row_problems)
            continue
        subject = _text(row.get(fields.subject)) if fields.subject else None
        entity = _text(row.get(fields.entity)) if fields.entity else None
        items.append(
            Item(
                id=item_id,
                question=question,
                options=tuple(texts),
                answer=answer,
                subject=subject or None,
                entity=entity or None,
            )
        )
    return items, problems, header_rows


def make_task(
    name: str,
    source: str,
    items: list[Item],
    problems: list[RowProblem],
    header_rows: int,
    on_error: Literal["fail", "skip"],
) -> Task:
    """Apply the bad-row policy: raise naming every bad row, or drop them and count them."""
    if on_error not in ("fail", "skip"):
        raise DataError(f"on_error: expected 'fail' or 'skip', got {on_error!r}")
    if problems and on_error == "fail":
        raise TaskDataError(source, problems)
    bad_rows = {(p.location) for p in problems}
    if not items:
        if problems:
            left_out = f"all {len(bad_rows)} rows were bad and skipped, e.g. {problems[0]}"
        else:
            left_out = f"it holds only {header_rows} header row(s)" if header_rows else "it holds no rows"
        raise DataError(f"{source}: task {name!r} has no items ({left_out}); expected four-option rows "
                         f"with question, options and answer (or {MIN_OPTIONS} to {MAX_OPTIONS} options, the same "
                         "number in every row)")  # fmt: skip
    if bad_rows:
        log.warning("%s: %d bad row(s) skipped (on_error: skip), e.g. %s", source, len(bad_rows), problems[0])
    if header_rows:
        log.warning("%s: %d copies of the header row inside the data dropped", source, header_rows)
    return Task(
        name=name,
        items=tuple(items),
        source=source,
        skipped=len(bad_rows),
        header_rows=header_rows,
        problems=tuple(str(p) for p in problems),
    )
