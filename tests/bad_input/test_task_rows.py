"""Malformed task rows, one test per kind: the error names the file, the line (or row), the field
and what was expected; rows dropped under on_error: skip (and stray header rows) are counted and
reported, never dropped unseen."""

import logging
import re

import pytest

from neuronjax.tasks.readers import load_task_file
from neuronjax.tasks.schema import FieldMap, TaskDataError
from tests.bad_input.helpers import GOOD_ROW, good_rows, row, write_csv, write_jsonl


def _one_problem(path, match):
    """Load `path`, expect a TaskDataError with exactly one bad row, and match its message."""
    with pytest.raises(TaskDataError, match=match) as err:
        load_task_file(path)
    assert str(err.value).startswith(f"{path}: 1 bad row(s) (set on_error: skip to drop and count them):")
    return err.value


def _jsonl_with(tmp_path, bad, name="t.jsonl"):
    """A good row on line 1 and `bad` on line 2."""
    return write_jsonl(tmp_path / name, [GOOD_ROW, bad])


def test_line_that_is_not_json(tmp_path):
    path = _jsonl_with(tmp_path, '{"question": "Q?", "options": [')
    _one_problem(path, re.escape(f"{path}:line 2: field '<json>': not valid JSON (Expecting value)"))


def test_line_that_is_json_but_not_an_object(tmp_path):
    path = _jsonl_with(tmp_path, '["Q?", "a", "b", "c", "d"]')
    _one_problem(path, re.escape(f"{path}:line 2: field '<json>': expected an object, got list"))


def test_missing_question(tmp_path):
    path = _jsonl_with(tmp_path, row(id="r2", question=None))
    _one_problem(path, re.escape(f"{path}:line 2: field 'question': missing field (expected the question text)"))


def test_blank_question(tmp_path):
    path = _jsonl_with(tmp_path, row(id="r2", question="   "))
    _one_problem(path, re.escape(f"{path}:line 2: field 'question': expected non-empty question text"))


def test_missing_options(tmp_path):
    path = _jsonl_with(tmp_path, row(id="r2", options=None))
    _one_problem(path, re.escape(f"{path}:line 2: field 'options': missing field (expected a list of 4 options)"))


def test_options_not_a_list(tmp_path):
    path = _jsonl_with(tmp_path, row(id="r2", options="Paris, Rome, Oslo, Bern"))
    _one_problem(path, re.escape(f"{path}:line 2: field 'options': expected a list of 4 options, got str"))


def test_missing_answer(tmp_path):
    path = _jsonl_with(tmp_path, row(id="r2", answer=None))
    _one_problem(path, re.escape(f"{path}:line 2: field 'answer': missing field (expected a letter A-D or an index 0-3)"))


@pytest.mark.parametrize("answer", ["E", "AB", "", "a)"])
def test_answer_letter_outside_a_to_d(tmp_path, answer):
    path = _jsonl_with(tmp_path, row(id="r2", answer=answer))
    _one_problem(path, re.escape(f"{path}:line 2: field 'answer': expected a letter A-D or an index 0-3, got {answer!r}"))


@pytest.mark.parametrize("answer", [4, -1, "4", 2.5, True])
def test_answer_index_out_of_range(tmp_path, answer):
    path = _jsonl_with(tmp_path, row(id="r2", answer=answer))
    _one_problem(path, re.escape(f"{path}:line 2: field 'answer': expected a letter A-D or an index 0-3, got {answer!r}"))


def test_fewer_than_four_options(tmp_path):
    path = _jsonl_with(tmp_path, row(id="r2", options=["Paris", "Rome", "Oslo"]))
    _one_problem(path, re.escape(f"{path}:line 2: field 'options': expected exactly 4 options, got 3"))


def test_more_than_four_options(tmp_path):
    path = _jsonl_with(tmp_path, row(id="r2", options=["Paris", "Rome", "Oslo", "Bern", "Nice"]))
    _one_problem(path, re.escape(f"{path}:line 2: field 'options': expected exactly 4 options, got 5"))


@pytest.mark.parametrize("empty", ["", "   ", "\t\n"])
def test_empty_option_text(tmp_path, empty):
    path = _jsonl_with(tmp_path, row(id="r2", options=["Paris", empty, "Oslo", "Bern"]))
    _one_problem(path, re.escape(f"{path}:line 2: field 'options': option B is empty or not text: {empty!r}"))


@pytest.mark.parametrize("value", [None, True, {"text": "Oslo"}, ["Oslo"]])
def test_option_that_is_not_text(tmp_path, value):
    path = _jsonl_with(tmp_path, row(id="r2", options=["Paris", "Rome", value, "Bern"]))
    _one_problem(path, re.escape(f"{path}:line 2: field 'options': option C is empty or not text: {value!r}"))


def test_numeric_options_are_read_as_text(tmp_path):
    """Numbers are not an error: arithmetic tasks store options as numbers."""
    path = _jsonl_with(tmp_path, row(id="r2", options=[12, 7.5, "3", 25]))
    assert load_task_file(path).items[1].options == ("12", "7.5", "3", "25")


def test_duplicate_id(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [GOOD_ROW, row(id="r2"), row(id="r1", question="Another?")])
    _one_problem(path, re.escape(f"{path}:line 3: field 'id': duplicate id 'r1' (first used at line 1)"))


def test_every_problem_of_every_row_is_listed(tmp_path):
    rows = [GOOD_ROW, row(id="r2", question=None, answer="Z"), row(id="r3", options=["a"])]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(TaskDataError) as err:
        load_task_file(path)
    assert str(err.value).startswith(f"{path}: 3 bad row(s)")  # 3 problems in 2 rows
    assert [str(p) for p in err.value.problems] == [
        f"{path}:line 2: field 'question': missing field (expected the question text)",
        f"{path}:line 2: field 'answer': expected a letter A-D or an index 0-3, got 'Z'",
        f"{path}:line 3: field 'options': expected exactly 4 options, got 1",
    ]


def test_a_long_list_of_problems_is_cut_with_a_count(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [row(id=f"r{k}", answer="Q") for k in range(60)])
    with pytest.raises(TaskDataError, match=r"60 bad row\(s\)") as err:
        load_task_file(path)
    assert str(err.value).endswith("\n  ... and 10 more") and len(err.value.problems) == 60


# ---------------------------------------------------------------------------------------- CSV


def test_csv_options_cell_that_is_not_a_json_list(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["question", "options", "answer"],
                     [["Q?", '["a", "b", "c", "d"]', "A"], ["Q2?", '["a", "b", ', "B"]])  # fmt: skip
    _one_problem(path, re.escape(f"""{path}:line 3: field 'options': expected a JSON list of 4 options, got '["a", "b", '"""))


def test_csv_empty_option_cell(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["question", "A", "B", "C", "D", "answer"],
                     [["Q?", "a", "b", "c", "d", "A"], ["Q2?", "a", "", "c", "d", "B"]])  # fmt: skip
    with pytest.raises(TaskDataError) as err:
        load_task_file(path, fields=FieldMap(options=("A", "B", "C", "D")))
    assert [str(p) for p in err.value.problems] == [
        f"{path}:line 3: field 'B': missing field (expected one of the 4 option fields)"
    ]


def test_csv_line_numbers_count_multi_line_cells(tmp_path):
    """A quoted cell with line breaks spans several file lines; the error points at the file line
    the bad row ends on, not at its row index."""
    path = write_csv(tmp_path / "t.csv", ["question", "A", "B", "C", "D", "answer"],
                     [["line one\nline two\nline three", "a", "b", "c", "d", "A"], ["Q2?", "a", "b", "c", "d", "Z"]])  # fmt: skip
    with pytest.raises(TaskDataError, match=re.escape(f"{path}:line 5: field 'answer'")):
        load_task_file(path, fields=FieldMap(options=("A", "B", "C", "D")))


# ------------------------------------------------------------------------------------ Parquet


def test_parquet_rows_are_named_by_row_index(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "t.parquet")
    table = [dict(GOOD_ROW), row(id="r2", options=["a", "b", "c"])]
    pq.write_table(pa.Table.from_pylist(table), path)
    _one_problem(path, re.escape(f"{path}:row 1: field 'options': expected exactly 4 options, got 3"))


# ------------------------------------------------------------------------ skipped, but counted


def test_skipped_rows_are_counted_listed_and_logged(tmp_path, caplog):
    rows = good_rows(3) + [row(id="b1", answer="Z", question=None), row(id="b2", options=["a"])]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="neuronjax.tasks"):
        task = load_task_file(path, on_error="skip")
    assert len(task) == 3 and task.skipped == 2  # rows, not problems: line 4 has two
    assert task.problems == (
        f"{path}:line 4: field 'question': missing field (expected the question text)",
        f"{path}:line 4: field 'answer': expected a letter A-D or an index 0-3, got 'Z'",
        f"{path}:line 5: field 'options': expected exactly 4 options, got 1",
    )
    assert f"{path}: 2 bad row(s) skipped (on_error: skip), e.g. {task.problems[0]}" in caplog.messages


def test_unparsable_lines_follow_the_bad_row_policy(tmp_path):
    """Lines that are not UTF-8 or not JSON are bad rows like any other: all listed under
    on_error: fail, skipped and counted under skip."""
    path = tmp_path / "t.jsonl"
    write_jsonl(path, good_rows(2) + ["{oops"])
    with open(path, "ab") as f:
        f.write(b'{"question": "caf\xe9?"}\n')
    with pytest.raises(TaskDataError) as err:
        load_task_file(str(path))
    assert [str(p) for p in err.value.problems] == [
        f"{path}:line 3: field '<json>': not valid JSON (Expecting property name enclosed in double quotes)",
        f"{path}:line 4: field '<utf-8>': not UTF-8 text (byte 17 of the line)",
    ]
    task = load_task_file(str(path), on_error="skip")
    assert (len(task), task.skipped) == (2, 2)


def test_csv_row_with_more_cells_than_the_header(tmp_path):
    """An unquoted comma in a cell shifts the row: the extra cells would be lost, so the row is bad."""
    path = tmp_path / "t.csv"
    path.write_text("question,A,B,C,D,answer\nQ?,a,b,c,d,A\nWhere, exactly?,a,b,c,d,B\n")
    with pytest.raises(TaskDataError) as err:
        load_task_file(str(path), fields=FieldMap(options=("A", "B", "C", "D")))
    assert [str(p) for p in err.value.problems] == [f"{path}:line 3: field '<csv>': 1 more cell(s) than the 6 header columns"]


def test_csv_that_is_not_utf8(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("question,options,answer\nCaf\u00e9?,x,A\n".encode("latin-1"))
    with pytest.raises(ValueError, match=re.escape(f"{path}:line 2: not UTF-8 text; expected a UTF-8 CSV file")):
        load_task_file(str(path))


def test_header_rows_inside_the_data_are_counted_and_logged(tmp_path, caplog):
    """Concatenated CSV exports (MMLU's, for one) repeat the header line inside the data."""
    header = ["id", "question", "A", "B", "C", "D", "answer"]
    body = [[f"g{k}", f"Q{k}?", "a", "b", "c", "d", "A"] for k in range(4)]
    path = write_csv(tmp_path / "t.csv", header, body[:2] + [header] + body[2:])
    with caplog.at_level(logging.WARNING, logger="neuronjax.tasks"):
        task = load_task_file(path, fields=FieldMap(options=("A", "B", "C", "D")))
    assert (len(task), task.header_rows, task.skipped) == (4, 1, 0)
    assert f"{path}: 1 copies of the header row inside the data dropped" in caplog.messages
    with pytest.raises(TaskDataError, match=re.escape(f"{path}:line 4: field 'answer'")):
        load_task_file(path, fields=FieldMap(options=("A", "B", "C", "D")), drop_header_rows=False)
