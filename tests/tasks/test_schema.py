import pytest

from neuronjax.tasks.schema import FieldMap, TaskDataError, make_task, parse_answer, validate_rows


@pytest.mark.parametrize(
    "value, expected",
    [("A", 0), ("b", 1), (" C ", 2), ("D", 3), (0, 0), (3, 3), ("2", 2), (1.0, 1),
     ("E", None), (4, None), (-1, None), ("AB", None), (True, None), (None, None), ("4", None)],
)  # fmt: skip
def test_parse_answer(value, expected):
    assert parse_answer(value) == expected


def row(**kw):
    base = {"id": "x", "question": "Q?", "options": ["a", "b", "c", "d"], "answer": "B"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def test_good_row_becomes_item():
    items, problems, headers = validate_rows([("line 1", row(subject="geo"))], FieldMap(), "f.jsonl", "t:")
    assert problems == [] and headers == 0
    (item,) = items
    assert (item.id, item.question, item.options, item.answer, item.subject) == (
        "x",
        "Q?",
        ("a", "b", "c", "d"),
        1,
        "geo",
    )
    assert item.gold_text == "b"


def test_every_problem_of_a_row_is_reported():
    # a one-option first row: no option count is set yet, so any of the ten letters could be valid
    bad = {"id": "x", "options": ["a"], "answer": "Z"}
    _, problems, _ = validate_rows([("line 3", bad)], FieldMap(), "f.jsonl", "t:")
    messages = sorted(str(p) for p in problems)
    assert messages == [
        "f.jsonl:line 3: field 'answer': expected a letter A-J or an index 0-9, got 'Z'",
        "f.jsonl:line 3: field 'options': expected 2 to 10 options, got 1",
        "f.jsonl:line 3: field 'question': missing field (expected the question text)",
    ]
    # after a four-option row, a two-option row is the one that differs
    rows = [("line 2", row(id="y")), ("line 3", {**bad, "options": ["a", "b"]})]
    _, problems, _ = validate_rows(rows, FieldMap(), "f.jsonl", "t:")
    assert sorted(str(p) for p in problems) == [
        "f.jsonl:line 3: field 'answer': expected a letter A-D or an index 0-3, got 'Z'",
        "f.jsonl:line 3: field 'options': expected exactly 4 options, got 2",
        "f.jsonl:line 3: field 'question': missing field (expected the question text)",
    ]


def test_four_option_columns_and_generated_ids():
    fields = FieldMap(options=("a1", "a2", "a3", "a4"), id=None)
    raw = {"question": "Q", "a1": "w", "a2": "x", "a3": "y", "a4": 7, "answer": 3}
    items, problems, _ = validate_rows([("row 5", raw)], fields, "f.parquet", "t:")
    assert problems == []
    assert items[0].id == "t:row5" and items[0].options == ("w", "x", "y", "7") and items[0].answer == 3


def test_missing_option_column_is_named():
    fields = FieldMap(options=("a1", "a2", "a3", "a4"))
    raw = {"question": "Q", "a1": "w", "a2": "x", "a3": "y", "answer": 0}
    _, problems, _ = validate_rows([("line 2", raw)], fields, "f.csv", "t:")
    assert [str(p) for p in problems] == [
        "f.csv:line 2: field 'a4': missing field (expected one of the 4 option fields)"
    ]


def test_duplicate_id_names_both_lines():
    rows = [("line 1", row(id="same")), ("line 2", row(id="other")), ("line 3", row(id="same"))]
    items, problems, _ = validate_rows(rows, FieldMap(), "f.jsonl", "t:")
    assert [i.id for i in items] == ["same", "other"]
    assert [str(p) for p in problems] == ["f.jsonl:line 3: field 'id': duplicate id 'same' (first used at line 1)"]


def test_header_rows_are_dropped_and_counted():
    header = {"question": "question", "options": "options", "answer": "answer"}
    items, problems, headers = validate_rows([("line 1", header), ("line 2", row())], FieldMap(), "f", "t:")
    assert (len(items), problems, headers) == (1, [], 1)
    _, problems, headers = validate_rows([("line 1", header)], FieldMap(), "f", "t:", drop_header_rows=False)
    assert headers == 0 and len(problems) >= 1


def test_make_task_fail_lists_every_bad_row_and_skip_counts_them():
    rows = [("line 1", row(id="a")), ("line 2", row(id="b", answer="Q")), ("line 3", row(id="c", options=["x"]))]
    items, problems, _ = validate_rows(rows, FieldMap(), "f.jsonl", "t:")
    with pytest.raises(TaskDataError) as err:
        make_task("t", "f.jsonl", items, problems, 0, "fail")
    text = str(err.value)
    assert text.startswith("f.jsonl: 2 bad row(s)")
    assert "f.jsonl:line 2: field 'answer'" in text and "f.jsonl:line 3: field 'options'" in text
    task = make_task("t", "f.jsonl", items, problems, 0, "skip")
    assert len(task) == 1 and task.skipped == 2 and len(task.problems) == 2


def test_fieldmap_from_dict_errors():
    assert FieldMap.from_dict({"options": ["a", "b", "c", "d"]}).options == ("a", "b", "c", "d")
    with pytest.raises(ValueError, match="fields: choices: unknown key"):
        FieldMap.from_dict({"choices": "x"})
    assert FieldMap.from_dict({"options": ["a", "b"]}).options == ("a", "b")  # a two-option task
    with pytest.raises(ValueError, match="a list of 2 to 10 field names"):
        FieldMap.from_dict({"options": ["a"]})
    with pytest.raises(ValueError, match="a list of 2 to 10 field names"):
        FieldMap.from_dict({"options": [f"o{k}" for k in range(11)]})
