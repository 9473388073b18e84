"""Tasks with too few items: an empty file, a task whose every row was skipped, and a task
smaller than its split asks for."""

import re

import pytest

from neuronjax.tasks.config import load_task_and_split, load_task_config
from neuronjax.tasks.readers import load_task_file
from tests.bad_input.helpers import good_rows, row, write_csv, write_jsonl

NO_ITEMS = "; expected four-option rows with question, options and answer"


def test_empty_jsonl(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n  \n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: task 't' has no items (it holds no rows){NO_ITEMS}")):
        load_task_file(str(path))


def test_csv_with_only_a_header(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["question", "options", "answer"], [])
    with pytest.raises(ValueError, match=re.escape(f"{path}: task 't' has no items (it holds no rows){NO_ITEMS}")):
        load_task_file(path)


def test_file_of_header_copies_only(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["question", "options", "answer"], [["question", "options", "answer"]])
    with pytest.raises(ValueError, match=re.escape(f"{path}: task 't' has no items (it holds only 1 header row(s))")):
        load_task_file(path)


def test_every_row_skipped(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [row(id="a", answer="Z"), row(id="b", options=["x"])])
    message = (f"{path}: task 't' has no items (all 2 rows were bad and skipped, e.g. {path}:line 1: field "
               f"'answer': expected a letter A-D or an index 0-3, got 'Z'){NO_ITEMS}")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        load_task_file(path, on_error="skip")


def _task_yaml(tmp_path, items: int, split: str = "{num_demo: 4}") -> str:
    write_jsonl(tmp_path / "data.jsonl", good_rows(items))
    path = tmp_path / "small.yaml"
    path.write_text(f"name: small\nsource: data.jsonl\nsplit: {split}\n")
    return str(path)


def test_task_smaller_than_its_split(tmp_path):
    config = load_task_config(_task_yaml(tmp_path, 5))
    message = (f"task 'small' ({tmp_path / 'data.jsonl'}): 5 items; need at least num_demo + 2 = 6 to fill demo, "
               "identify and evaluate")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        load_task_and_split(config)


def test_split_made_too_large_by_an_override(tmp_path):
    config = load_task_config(_task_yaml(tmp_path, 8), {"split.num_demo": 7})
    with pytest.raises(ValueError, match=re.escape("8 items; need at least num_demo + 2 = 9")):
        load_task_and_split(config)


@pytest.mark.parametrize("field", ["max_eval", "max_identify"])
@pytest.mark.parametrize("cap", [0, -1])
def test_split_caps_below_one(tmp_path, field, cap):
    """A cap of 0 would empty a part; a negative one would silently drop items from its end."""
    config = load_task_config(_task_yaml(tmp_path, 12, f"{{{field}: {cap}}}"))
    with pytest.raises(ValueError, match=re.escape(f"split.{field}: expected a cap >= 1 or null (no cap), got {cap}")):
        load_task_and_split(config)
