"""Where a sweep's values come from: keys checked against the run and task configs with the
nearest valid key, errors that name the sweep file's line and grid key (not the command line),
and relative paths resolved against the folder of whoever wrote them."""

import os

import pytest

from neuronjax.configlib import parse_overrides
from neuronjax.errors import ConfigError
from neuronjax.sweep import expand, load_sweep
from tests.sweep.files import TASKS, base_config, sweep_file, write_yaml


def _line(path: str, text: str) -> int:
    """The 1-based line of the sweep file that holds `text`."""
    with open(path) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


@pytest.mark.parametrize(
    "section, key, message",
    [
        ("grid", "identify.methds", "grid: identify.methds: unknown key; did you mean 'methods'? (identify has: "),
        ("grid", "task.prompt.answer_fromat",
         "grid: task.prompt.answer_fromat: unknown key; did you mean 'answer_format'? (task.prompt has: "),
        ("overrides", "evaluate.bootstrp", "overrides: evaluate.bootstrp: unknown key; did you mean 'bootstrap'?"),
    ],
)  # fmt: skip
def test_misspelled_keys_name_the_sweep_file_line_and_nearest_key(tmp_path, section, key, message):
    base_config(tmp_path)
    changes = {"grid": {"identify.k": [3, 5], key: [1]}} if section == "grid" else {"overrides": {key: 1}}
    path = sweep_file(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    assert str(err.value).startswith(f"{path}:{_line(path, key)}: {message}")


def test_a_bad_grid_value_names_the_grid_key_and_its_index_not_the_command_line(tmp_path):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid={"identify.k": [3, "ten"]})
    with pytest.raises(ConfigError) as err:
        expand(load_sweep(path))
    text = str(err.value)
    line = _line(path, "identify.k:")
    assert f"{path}:{line}: grid.identify.k[1] override identify.k=ten (on {path[:-10]}base.yaml): " in text
    assert "identify.k: expected int, got ten" in text and "command-line" not in text
    # A task key: the task YAML's error names the sweep's grid key that set it.
    path = sweep_file(tmp_path, grid={"task.split.seed": [0, "x"]})
    with pytest.raises(ConfigError) as err:
        expand(load_sweep(path))
    line = _line(path, "task.split.seed:")
    assert f"{path}:{line}: grid.task.split.seed[1] override split.seed=x (on " in str(err.value)
    assert "world_facts.yaml): split.seed: expected int, got x" in str(err.value)
    # The sweep's own overrides name their line too.
    path = sweep_file(tmp_path, overrides={"identify.z": -1.5})
    with pytest.raises(ConfigError) as err:
        expand(load_sweep(path))
    assert f"{path}:{_line(path, 'identify.z')}: overrides.identify.z override identify.z=-1.5 (on " in str(err.value)
    assert "identify.z: expected int, got -1.5" in str(err.value)


def _task_copy(directory, name: str) -> str:
    """A copy of the world_facts task YAML under directory/tasks/t.yaml, renamed `name`."""
    (directory / "tasks").mkdir(parents=True)
    with open(os.path.join(TASKS, "world_facts.yaml")) as f:
        text = f.read().replace("name: world_facts", f"name: {name}")
    (directory / "tasks" / "t.yaml").write_text(text)
    return str(directory / "tasks" / "t.yaml")


def test_relative_paths_resolve_against_whoever_wrote_them(tmp_path, monkeypatch):
    """tasks/t.yaml in the sweep file is the one beside the sweep file; on the command line, the
    one in the working directory."""
    sweeps, cwd = tmp_path / "sweeps", tmp_path / "work"
    near_sweep, near_cwd = _task_copy(sweeps, "near_sweep"), _task_copy(cwd, "near_cwd")
    base_config(sweeps)
    monkeypatch.chdir(cwd)
    in_grid = sweep_file(sweeps, grid={"task": ["tasks/t.yaml"], "identify.k": [3]},
                         overrides={"cross_tasks": ["tasks/t.yaml"]})  # fmt: skip
    (point,) = expand(load_sweep(in_grid))
    assert point.config.task == near_sweep and point.config.cross_tasks == (near_sweep,)
    assert point.name == "t-k3"

    on_command_line = sweep_file(sweeps, grid={"identify.k": [3]}, overrides=None)
    (point,) = expand(load_sweep(on_command_line), parse_overrides(["task=tasks/t.yaml", "cross_tasks=[tasks/t.yaml]"]))
    assert point.config.task == near_cwd and point.config.cross_tasks == (near_cwd,)
    # A {key: value} mapping is the command line too.
    (point,) = expand(load_sweep(on_command_line), {"task": "tasks/t.yaml"})
    assert point.config.task == near_cwd


def test_base_resolves_against_the_sweep_file_and_task_keys_do_not_overlap_task(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    base_config(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    path = write_yaml(tmp_path / "runs" / "s.yaml", {
        "name": "s", "base": "base.yaml", "output": "out",
        "overrides": {"task.split.max_identify": 3},
        "grid": {"task": [os.path.join(TASKS, "arithmetic.yaml")], "task.split.seed": [0, 1]},
    })  # fmt: skip
    sweep = load_sweep(path)
    assert sweep.base == str(tmp_path / "runs" / "base.yaml")
    points = expand(sweep)
    assert [p.name for p in points] == ["arithmetic-seed0", "arithmetic-seed1"]
    assert points[1].config.task_overrides == {"split.max_identify": 3, "split.seed": 1}
    assert points[0].run_dir == os.path.join("out", "s", "arithmetic-seed0")  # output: the working directory's
