"""The one config layer: where an error says it is, "did you mean", unions checked in full, paths
on the command line resolved against the working directory, and `config show` printing every key."""

import dataclasses
import os
import re
from typing import Optional, Union

import pytest

from neuronjax import configlib as cl
from neuronjax.cli import main
from neuronjax.config import EvaluateConfig, IdentifySection, ModelSection, RunConfig, load_run_config
from neuronjax.configlib import parse_overrides
from neuronjax.errors import ConfigError
from neuronjax.tasks.config import TaskConfig
from tests import ROOT


@pytest.fixture
def run_yaml(tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text("name: wf\nsource: builtin:world_facts\n")
    run = tmp_path / "run.yaml"
    run.write_text("name: r\ntask: task.yaml\nidentify:\n  methods: [neuronllm, random]\n  kk: 5\n")
    return run


def test_a_file_typo_and_the_same_typo_as_an_override_say_where_each_is(run_yaml, tmp_path):
    with pytest.raises(ConfigError) as in_file:
        load_run_config(str(run_yaml))
    assert str(in_file.value).startswith(f"{run_yaml}:5: identify.kk: unknown key; did you mean 'k'?")
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(run_yaml.read_text().replace("  kk: 5\n", ""))
    with pytest.raises(ConfigError) as on_command_line:
        load_run_config(str(fixed), parse_overrides(["identify.kk=5"]))
    assert str(on_command_line.value).startswith(
        f"command-line override identify.kk=5 (on {fixed}): identify.kk: unknown key; did you mean 'k'?"
    )


def test_no_suggestion_when_nothing_is_close(run_yaml, tmp_path):
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(run_yaml.read_text().replace("  kk: 5\n", ""))
    with pytest.raises(ConfigError) as err:
        load_run_config(str(fixed), parse_overrides(["identify.zzzzzz=5"]))
    assert "did you mean" not in str(err.value) and "(identify has: methods, k, z," in str(err.value)


def test_a_path_override_resolves_against_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    config = load_run_config("configs/default.yaml", parse_overrides(["task=configs/tasks/arithmetic.yaml"]))
    assert config.task == os.path.join(ROOT, "configs", "tasks", "arithmetic.yaml")
    # the same path written in the file resolves against the file's folder (configs/ there)
    written = load_run_config("configs/default.yaml")
    assert written.task == os.path.join(ROOT, "configs", "tasks", "world_facts.yaml")
    # from another directory, a relative override is relative to that directory
    (tmp_path / "mine.yaml").write_text("name: mine\nsource: builtin:arithmetic\n")
    monkeypatch.chdir(tmp_path)
    config = load_run_config(os.path.join(ROOT, "configs", "default.yaml"), parse_overrides(["task=mine.yaml"]))
    assert config.task == str(tmp_path / "mine.yaml")


def test_unions_are_checked_against_every_member():
    @dataclasses.dataclass(frozen=True)
    class Example:
        options: Union[str, tuple[str, ...]] = "options"
        cap: Optional[int] = None

    source = cl.Source(name="example")
    assert cl.parse(Example, {"options": ["a", "b"]}, source).options == ("a", "b")
    assert cl.parse(Example, {"options": "x"}, source).options == "x"
    with pytest.raises(ConfigError, match=re.escape("example: options: expected str or a list of str, got 5")):
        cl.parse(Example, {"options": 5}, source)
    with pytest.raises(ConfigError, match=re.escape("example: options.1: expected str, got 3")):
        cl.parse(Example, {"options": ["a", 3]}, source)
    with pytest.raises(ConfigError, match=re.escape("example: cap: expected int, got two")):
        cl.parse(Example, {"cap": "two"}, source)


def test_config_show_prints_every_key_with_its_default(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["config", "show", "configs/default.yaml", "identify.k=7", "task.split.seed=3"]) == 0
    out = capsys.readouterr().out
    run_part, task_part = out.split("# task config")
    for cls, text in ((RunConfig, run_part), (TaskConfig, task_part)):
        for f in dataclasses.fields(cls):
            assert re.search(rf"^{f.name}:", text, re.M), f"{cls.__name__}.{f.name} missing from config show"
    for section in (ModelSection, IdentifySection, EvaluateConfig):
        for f in dataclasses.fields(section):
            assert re.search(rf"^  {f.name}:", run_part, re.M), f"{section.__name__}.{f.name} missing"
    assert re.search(r"^  k: 7 .*# good and bad set size .*default: 100$", run_part, re.M)
    assert re.search(r"^  seed: 3 .*default: 0$", task_part, re.M)
    assert re.search(r"^  z: 500 .*# per-item set size", run_part, re.M) and "default: 500" not in run_part


def test_help_lists_the_config_sections(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for section in ("model:", "identify:", "evaluate:", "task.<key>"):
        assert section in out
    assert "[methods, k, z, block_items" in out
