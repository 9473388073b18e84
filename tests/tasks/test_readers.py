import json

import pytest

from neuronjax.tasks.readers import infer_format, load_task_file, read_rows
from neuronjax.tasks.schema import FieldMap, TaskDataError

ROWS = [
    {"id": "r1", "question": "What is 1+1?", "options": ["2", "3", "4", "5"], "answer": "A", "subject": "math"},
    {"id": "r2", "question": "Capital of France?", "options": ["Rome", "Paris", "Oslo", "Bern"], "answer": 1},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_jsonl_roundtrip(tmp_path):
    task = load_task_file(write_jsonl(tmp_path / "t.jsonl", ROWS))
    assert task.name == "t" and len(task) == 2 and task.skipped == 0
    assert task.items[0].subject == "math" and task.items[1].answer == 1 and task.items[1].subject is None


def test_csv_with_option_columns_and_line_numbers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("question,o1,o2,o3,o4,answer\nQ1,a,b,c,d,C\nQ2,a,b,c,,D\nQ3,a,b,c,d,7\n")
    fields = FieldMap(options=("o1", "o2", "o3", "o4"))
    with pytest.raises(TaskDataError) as err:
        load_task_file(str(path), fields=fields)
    assert [str(p) for p in err.value.problems] == [
        f"{path}:line 3: field 'o4': missing field (expected one of the 4 option fields)",
        f"{path}:line 4: field 'answer': expected a letter A-D or an index 0-3, got '7'",
    ]
    task = load_task_file(str(path), fields=fields, on_error="skip")
    assert len(task) == 1 and task.items[0].answer == 2 and task.skipped == 2
    assert task.items[0].id == "t:line2"


def test_csv_list_cell_as_json(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('question,options,answer\nQ,"[""w"", ""x"", ""y"", ""z""]",0\n')
    assert load_task_file(str(path)).items[0].options == ("w", "x", "y", "z")


def test_jsonl_every_error_kind_named(tmp_path):
    rows = [
        ROWS[0],
        {"id": "r2", "options": ["a", "b", "c", "d"], "answer": "A"},  # missing question
        {"id": "r3", "question": "Q", "options": ["a", "b", "c", "d"], "answer": "E"},  # answer outside
        {"id": "r4", "question": "Q", "options": ["a", "b", "c", "d"], "answer": 4},  # index outside
        {"id": "r5", "question": "Q", "options": ["a", "b", "c"], "answer": "A"},  # three options
        {"id": "r1", "question": "Q", "options": ["a", "b", "c", "d"], "answer": "A"},  # duplicate id
        {"id": "r7", "question": "Q", "options": ["a", "b", "c", "d"]},  # missing answer
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TaskDataError) as err:
        load_task_file(path)
    assert [str(p) for p in err.value.problems] == [
        f"{path}:line 2: field 'question': missing field (expected the question text)",
        f"{path}:line 3: field 'answer': expected a letter A-D or an index 0-3, got 'E'",
        f"{path}:line 4: field 'answer': expected a letter A-D or an index 0-3, got 4",
        f"{path}:line 5: field 'options': expected exactly 4 options, got 3",
        f"{path}:line 6: field 'id': duplicate id 'r1' (first used at line 1)",
        f"{path}:line 7: field 'answer': missing field (expected a letter A-D or an index 0-3)",
    ]
    assert str(err.value).startswith(f"{path}: 6 bad row(s)")
    task = load_task_file(path, on_error="skip")
    assert [i.id for i in task.items] == ["r1"] and task.skipped == 6


def test_invalid_json_line_is_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(TaskDataError, match=r"t.jsonl:line 2: field '<json>': not valid JSON"):
        load_task_file(str(path))


def test_parquet_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    bad = {"id": "r3", "question": "Q", "options": ["a", "b", "c", "d"], "answer": "X", "subject": None}
    pq.write_table(pa.Table.from_pylist([dict(ROWS[0]), {**ROWS[1], "answer": "B", "subject": None}, bad]), path)
    with pytest.raises(TaskDataError, match=r"t.parquet:row 2: field 'answer'"):
        load_task_file(str(path))
    task = load_task_file(str(path), on_error="skip")
    assert [i.answer for i in task.items] == [0, 1] and task.skipped == 1


def test_saved_dataset_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets", reason="writing the fixture needs the datasets package")
    rows = [{**r, "answer": str(r["answer"])} for r in ROWS]
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "single"))
    task = load_task_file(str(tmp_path / "single"))
    assert [i.id for i in task.items] == ["r1", "r2"] and task.items[1].options[1] == "Paris"
    datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dict"))
    task = load_task_file(str(tmp_path / "dict"), split="test")
    assert [i.id for i in task.items] == ["r2"]
    with pytest.raises(ValueError, match="set split to one of"):
        load_task_file(str(tmp_path / "dict"))
    with pytest.raises(ValueError, match="split 'dev' not found"):
        load_task_file(str(tmp_path / "dict"), split="dev")


def test_saved_dataset_layout_written_by_hand(tmp_path):
    """The on-disk layout of save_to_disk (Arrow stream files listed in state.json), built with
    pyarrow alone, so this runs where the datasets package is not installed."""
    pa = pytest.importorskip("pyarrow")
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = [{"subject": None, **r, "answer": str(r["answer"])} for r in ROWS]
    schema = pa.Table.from_pylist(rows).schema  # one schema for every shard, as datasets writes them
    for k, part in enumerate((rows[:1], rows[1:])):
        table = pa.Table.from_pylist(part, schema=schema)
        with pa.OSFile(str(folder / f"data-0000{k}-of-00002.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
    files = [{"filename": f"data-0000{k}-of-00002.arrow"} for k in range(2)]
    (folder / "state.json").write_text(json.dumps({"_data_files": files}))
    task = load_task_file(str(folder))
    assert [i.id for i in task.items] == ["r1", "r2"] and [i.answer for i in task.items] == [0, 1]
    assert [i.subject for i in task.items] == ["math", None]


def test_format_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="task file not found"):
        read_rows(str(tmp_path / "missing.jsonl"))
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        infer_format(str(tmp_path / "t.txt"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="no state.json"):
        list(read_rows(str(tmp_path / "empty_dir")))
