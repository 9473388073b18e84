"""Properties of the task-file reader (neuronjax.tasks.readers) over generated rows:

- any valid row round-trips through JSONL and CSV: same question, options (stripped of the
  surrounding whitespace the reader removes) and gold, whatever unicode, whitespace, commas,
  quotes, brackets or line breaks the text holds;
- invalid rows are rejected (on_error: fail) with a message naming each bad row's line, or
  skipped and counted (on_error: skip); never dropped unseen: items + skipped rows = rows written.
"""

import csv
import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronjax.tasks.readers import load_task_file
from neuronjax.tasks.schema import LETTERS, TaskDataError

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any character but lone surrogates (a UTF-8 file cannot hold them), with the awkward ones for CSV
# and JSON drawn often.
AWKWARD = st.sampled_from([",", '"', "'", "\n", "\r\n", "\t", " ", "[", "]", "\\", ";", "\u00a0", "\u2028", "é", "漢", "🙂"])
CHARS = st.one_of(st.characters(blacklist_categories=("Cs",)), AWKWARD)
TEXT = st.lists(CHARS, min_size=1, max_size=20).map("".join).filter(lambda t: t.strip() != "")
# A question that is the word "question" is taken for a stray header row (and counted as one).
QUESTION = TEXT.filter(lambda t: t.strip().lower() != "question")


@st.composite
def valid_rows(draw, min_size=1, max_size=6):
    n = draw(st.integers(min_size, max_size))
    rows = []
    for k in range(n):
        answer = draw(st.integers(0, 3))
        rows.append({
            "id": f"item{k}",
            "question": draw(QUESTION),
            "options": draw(st.lists(TEXT, min_size=4, max_size=4)),
            "answer": draw(st.sampled_from([answer, LETTERS[answer], LETTERS[answer].lower(), str(answer)])),
            "gold": answer,
        })  # fmt: skip
    return rows


def _write(folder, fmt, rows) -> str:
    if fmt == "jsonl":
        path = os.path.join(folder, "t.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({k: v for k, v in r.items() if k != "gold"}) + "\n")
        return path
    path = os.path.join(folder, "t.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question", "options", "answer"])
        for r in rows:
            options = json.dumps(r["options"]) if isinstance(r.get("options"), list) else r.get("options", "")
            writer.writerow([r.get("id", ""), r.get("question", ""), options, r.get("answer", "")])
    return path


def _same(item, row) -> None:
    assert item.id == row["id"]
    assert item.question == row["question"].strip()
    assert item.options == tuple(o.strip() for o in row["options"])
    assert item.answer == row["gold"]
    assert item.gold_text == row["options"][row["gold"]].strip()


@SETTINGS
@given(rows=valid_rows(), fmt=st.sampled_from(["jsonl", "csv"]))
def test_valid_rows_round_trip(rows, fmt):
    with tempfile.TemporaryDirectory() as folder:
        task = load_task_file(_write(folder, fmt, rows))
    assert (len(task), task.skipped, task.header_rows) == (len(rows), 0, 0)
    for item, row in zip(task.items, rows):
        _same(item, row)


# Ways to break a row; each names the field the reader must blame.
MUTATIONS = {
    "no question": ("question", lambda r, d: r.pop("question")),
    "blank question": ("question", lambda r, d: r.update(question=d(st.sampled_from([" ", "\t", "\n "])))),
    "answer out of range": ("answer", lambda r, d: r.update(answer=d(st.sampled_from(["E", "Z", "4", "-1", "AB", "1.5"])))),
    "no answer": ("answer", lambda r, d: r.pop("answer")),
    "too few options": ("options", lambda r, d: r.update(options=r["options"][: d(st.integers(0, 3))])),
    "too many options": ("options", lambda r, d: r.update(options=r["options"] + ["extra"] * d(st.integers(1, 3)))),
    "empty option": ("options", lambda r, d: r["options"].__setitem__(d(st.integers(0, 3)), d(st.sampled_from(["", "  "])))),
    "not a list": ("options", lambda r, d: r.update(options="not a list")),
    "duplicate id": ("id", lambda r, d: r.update(id="item0")),
}  # fmt: skip


@st.composite
def mixed_rows(draw):
    """Valid rows with some of them broken; returns (rows, {row index: field blamed})."""
    rows = draw(valid_rows(min_size=2, max_size=8))
    broken = {}
    for k in range(1, len(rows)):  # row 0 stays valid (the duplicate-id mutation refers to it)
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(MUTATIONS)))
            field, mutate = MUTATIONS[name]
            mutate(rows[k], draw)
            broken[k] = field
    return rows, broken


@SETTINGS
@given(data=mixed_rows(), fmt=st.sampled_from(["jsonl", "csv"]))
def test_invalid_rows_are_named_or_counted_never_dropped(data, fmt):
    rows, broken = data
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, fmt, rows)
        first_line = 2 if fmt == "csv" else 1  # the CSV header is line 1
        lines = [first_line + k for k in range(len(rows))]
        if fmt == "csv":  # a row spans as many file lines as its line breaks (inside quoted cells)
            lines = _csv_end_lines(path)
        if broken:
            try:
                load_task_file(path)
                raise AssertionError("bad rows were accepted")
            except TaskDataError as err:
                named = {(p.location, p.field) for p in err.problems}
                assert {p.location for p in err.problems} == {f"line {lines[k]}" for k in broken}
                for k, field in broken.items():
                    assert (f"line {lines[k]}", field) in named
                for p in err.problems:
                    assert str(p).startswith(f"{path}:{p.location}: field '{p.field}': ")
        task = load_task_file(path, on_error="skip")
    assert len(task) + task.skipped == len(rows)
    assert task.skipped == len(broken)
    good = [r for k, r in enumerate(rows) if k not in broken]
    for item, row in zip(task.items, good):
        _same(item, row)


def _csv_end_lines(path) -> list[int]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        out = []
        for _ in reader:
            out.append(reader.line_num)
    return out
