"""Sweep files: validation errors naming the file and key, expansion order and run names, and a
2 tasks x 2 methods x 2 K sweep on a tiny on-disk model gathered into one table, skipped when
run again, resumed from saved neurons, conflicts, failures and the CLI's --dry-run."""

import csv
import io
import json
import os
import pathlib

import pytest
import yaml

from neuronjax import run as runs
from neuronjax.cli import main
from neuronjax.evaluation.results import Interval
from neuronjax.sweep import expand, load_sweep, plan, run_sweep
from tests.sweep.files import NAMES, TASKS, base_config, evaluation_of, sweep_file, write_yaml

# ----------------------------------------------------------------------------- without a model


def test_expansion_order_names_and_configs(tmp_path):
    base_config(tmp_path)
    path = sweep_file(tmp_path)
    sweep = load_sweep(path)
    points = expand(sweep)
    assert [p.name for p in points] == NAMES  # the last grid key varies fastest
    assert [p.index for p in points] == list(range(8))
    p = points[6]
    assert p.labels == {"task": "arithmetic", "identify.methods": "mean_activation+random", "identify.k": "k3"}
    assert p.config.task == os.path.join(TASKS, "arithmetic.yaml")  # resolved against the sweep file
    assert p.config.identify.methods == ("mean_activation", "random") and p.config.identify.k == 3
    assert p.config.identify.z == 10  # from the base
    assert p.config.task_overrides == {"split.max_identify": 3, "split.max_eval": 3}
    assert p.run_dir == os.path.join(str(tmp_path / "out"), "tiny_sweep", p.name)
    # Command-line overrides reach every point; expansion is deterministic.
    again = expand(sweep, {"evaluate.bootstrap": 7, "task.split.seed": 2})
    assert [q.name for q in again] == NAMES
    assert all(q.config.evaluate.bootstrap == 7 and q.config.task_overrides["split.seed"] == 2 for q in again)


def test_labels_and_automatic_labels(tmp_path):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid={
        "model.path": [None, "ckpt/model.gguf"],
        "identify.methods": [["neuronllm", "random"], ["kn_ig"]],
        "task.split.seed": [0, 1],
        "evaluate.all_positions": [False],
    }, labels={"identify.methods": ["nllm", None]})  # fmt: skip
    # model.path is resolved when the file exists (otherwise it may be a Hugging Face repo id)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.gguf").write_bytes(b"")
    sweep = load_sweep(path)
    names = [p.name for p in expand(sweep)]
    assert names[:3] == ["embedded-nllm-seed0-all_positions_false", "embedded-nllm-seed1-all_positions_false",
                         "embedded-kn_ig-seed0-all_positions_false"]  # fmt: skip
    assert names[4] == "model-nllm-seed0-all_positions_false" and len(names) == 8
    assert expand(sweep)[4].config.model.path == str(tmp_path / "ckpt" / "model.gguf")
    assert expand(sweep)[1].config.task_overrides["split.seed"] == 1


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"gird": {}}, "gird: unknown key; did you mean 'grid'?"),
        ({"name": None}, "missing key(s) name"),
        ({"name": "a/b"}, "name: expected a folder name"),
        ({"base": "nowhere.yaml"}, "base: "),
        ({"grid": {"identify.kk": [1, 2]}}, "grid: identify.kk: unknown key; did you mean 'k'?"),
        ({"grid": {"identify.k.x": [1]}}, "grid: identify.k.x: identify.k is a value, not a section"),
        ({"grid": {"name": ["a", "b"]}}, "grid: name: not allowed in a sweep"),
        ({"grid": {"task_overrides.split.seed": [0, 1]}}, "use task.<key>"),
        ({"grid": {"identify.k": []}}, "grid.identify.k: expected a non-empty list"),
        ({"grid": {"identify.k": 5}}, "grid.identify.k: expected a non-empty list"),
        ({"grid": {}}, "grid: expected a mapping"),
        ({"grid": {"identify.k": [5, 5]}}, "grid.identify.k: value 5 appears twice"),
        ({"overrides": {"identify.zz": 3}}, "overrides: identify.zz: unknown key"),
        ({"overrides": {"identify.k": 3}}, "grid.identify.k: also set in overrides"),
        ({"labels": {"identify.z": ["a"]}}, "labels.identify.z: not a grid key"),
        ({"labels": {"identify.k": ["a"]}}, "labels.identify.k: expected a list of 2 labels"),
        ({"labels": {"identify.k": ["a", "b c"]}}, "labels.identify.k[1]: expected a name"),
        ({"labels": {"identify.k": ["same", "same"]}}, "grid.identify.k: values 3 and 5 both get the label 'same'"),
        ({"grid": {"task": ["x/world_facts.yaml", "y/world_facts.yaml"]}},
         "grid.task: values"),
    ],
)  # fmt: skip
def test_sweep_file_errors_name_the_file_and_key(tmp_path, changes, message):
    base_config(tmp_path)
    path = sweep_file(tmp_path, **changes)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_sweep(path)
    assert message in str(err.value) and path in str(err.value)


@pytest.mark.parametrize(
    "grid,labels,message",
    [
        ({"identify.k": [3, "ten"]}, None, ("point ten (identify.k='ten')", "identify.k: expected int")),
        ({"identify.methods": [["neuronllm"], ["bogus"]]}, None, "'bogus' unknown"),
        ({"task.split.sed": [1]}, None, "grid: task.split.sed: unknown key; did you mean 'seed'?"),
        ({"evaluate.modes": [["suppress_everything"]]}, None, "suppress_everything"),
        ({"identify.k": [3, 4], "identify.z": [10, 11]}, {"identify.k": ["a-b", "a"], "identify.z": ["c", "b-c"]},
         "share the run name 'a-b-c'"),
    ],
)  # fmt: skip
def test_point_errors_name_the_file_point_and_key(tmp_path, grid, labels, message):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid=grid, labels=labels)
    with pytest.raises(ValueError) as err:
        expand(load_sweep(path))
    text = str(err.value)
    assert path in text
    for part in message if isinstance(message, tuple) else (message,):
        assert part in text


def test_grid_keys_cannot_be_overridden_for_every_point(tmp_path):
    base_config(tmp_path)
    path = sweep_file(tmp_path)
    with pytest.raises(ValueError, match="grid.identify.k: a grid key cannot be overridden"):
        expand(load_sweep(path), {"identify.k": 9})
    with pytest.raises(ValueError, match=r"identify\.kk: unknown key; did you mean 'k'\?"):
        expand(load_sweep(path), {"identify.kk": 9})


def test_failed_points_are_listed(tmp_path, monkeypatch, capsys):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid={"identify.k": [3, 5]})

    def broken(config, *a, **k):
        raise RuntimeError(f"no neurons for {config.name}")

    monkeypatch.setattr(runs, "load_model_for", lambda config: object())
    monkeypatch.setattr(runs, "identify_run", broken)
    assert main(["sweep", path, "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "2 points: 0 run, 0 skipped (finished), 2 failed; table in" in out
    md = (tmp_path / "out" / "tiny_sweep" / "results.md").read_text()
    assert "Points without results (2)" in md and "RuntimeError: no neurons for k5" in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "tiny_sweep" / "results.csv").read_text())))
    assert [(r["point"], r["status"]) for r in rows] == [("k3", "failed: RuntimeError: no neurons for k3"),
                                                         ("k5", "failed: RuntimeError: no neurons for k5")]  # fmt: skip
    assert "RuntimeError" in (tmp_path / "out" / "tiny_sweep" / "k3" / "sweep_error.txt").read_text()


def test_points_run_grouped_by_model_each_model_loaded_once_and_force(tmp_path, monkeypatch):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid={"identify.k": [3, 5], "model.dtype": ["float32", "bfloat16"]})
    loads, ran = [], []
    iv = Interval(0.5, 0.25, 0.75)

    def identify(config, lm, **kwargs):
        ran.append((config.name, lm))
        runs.write_config(config)
        return {}

    def evaluate(config, lm, sets, **kwargs):
        evaluation_of(iv).save(os.path.join(config.run_dir, "evaluation.json"))

    monkeypatch.setattr(runs, "load_model_for", lambda config: loads.append(config.model.dtype) or config.model.dtype)
    monkeypatch.setattr(runs, "identify_run", identify)
    monkeypatch.setattr(runs, "evaluate_run", evaluate)
    result = run_sweep(path, progress=False, log=lambda line: None)
    assert loads == ["float32", "bfloat16"]
    assert ran == [("k3-float32", "float32"), ("k5-float32", "float32"),
                   ("k3-bfloat16", "bfloat16"), ("k5-bfloat16", "bfloat16")]  # fmt: skip
    # The table keeps the expansion order.
    rows = list(csv.DictReader(io.StringIO(pathlib.Path(result.csv_path).read_text())))
    assert [r["point"] for r in rows] == ["k3-float32", "k3-bfloat16", "k5-float32", "k5-bfloat16"]
    assert rows[0]["model.dtype"] == "float32" and rows[0]["accuracy_high"] == "0.75"
    # Run again: nothing to do. With another config: an error, or with force a replacement.
    ran.clear()
    assert run_sweep(path, progress=False, log=lambda line: None).skipped == [p.name for p in result.points]
    marker = tmp_path / "out" / "tiny_sweep" / "k3-float32" / "left_over.txt"
    marker.write_text("x")
    with pytest.raises(ValueError, match="k3-float32: made with a different config: evaluate.bootstrap: 20"):
        run_sweep(path, {"evaluate.bootstrap": 30}, progress=False, log=lambda line: None)
    assert ran == [] and marker.exists()
    again = run_sweep(path, {"evaluate.bootstrap": 30}, force=True, progress=False, log=lambda line: None)
    assert len(again.ran) == 4 and len(ran) == 4 and not marker.exists()


# ----------------------------------------------------------------------------- on the tiny model


@pytest.fixture(scope="module")
def swept(tiny_dir, tmp_path_factory):
    """The 8-point sweep run once on the tiny model; counts the model loads."""
    d = tmp_path_factory.mktemp("sweep")
    base_config(d, str(tiny_dir))
    path = sweep_file(d)
    loads = []
    original = runs.load_model_for

    def counting(config):
        loads.append(config.model.path)
        return original(config)

    runs.load_model_for = counting
    try:
        result = run_sweep(path, progress=False, log=lambda line: None)
    finally:
        runs.load_model_for = original
    return d, path, result, loads


def _files(run_dir):
    out = {}
    for root, _, files in os.walk(run_dir):
        for f in files:
            p = os.path.join(root, f)
            out[p] = os.stat(p).st_mtime_ns
    return out


@pytest.mark.torch
@pytest.mark.real_model
def test_sweep_gathers_one_table(swept):
    d, path, result, loads = swept
    assert result.failed == {} and result.ran == NAMES and result.skipped == []
    assert len(loads) == 1  # one model, loaded once for all eight points
    sweep_dir = d / "out" / "tiny_sweep"
    assert result.csv_path == str(sweep_dir / "results.csv") and result.md_path == str(sweep_dir / "results.md")
    assert result.summary() == f"8 points: 8 run, 0 skipped (finished), 0 failed; table in {result.md_path}"
    rows = list(csv.DictReader(io.StringIO(pathlib.Path(result.csv_path).read_text())))
    assert {"task", "identify.methods", "identify.k"} <= set(rows[0])
    assert [r["point"] for r in rows if r["method"] == "none"] == NAMES  # one baseline row per point, in order
    modes = ["suppress_good", "enhancer"]
    for p in expand(load_sweep(path)):
        mine = [r for r in rows if r["point"] == p.name]
        methods = list(p.config.identify.methods)
        # one row per point x method x mode (plus the unedited model)
        assert [(r["method"], r["mode"]) for r in mine] == [("none", "none")] + [(m, mo) for m in methods for mo in modes]
        assert all(r["task"] == p.labels["task"] and r["identify.k"] == p.labels["identify.k"]
                   and r["identify.methods"] == p.labels["identify.methods"] and r["status"] == "ok" for r in mine)  # fmt: skip
        ev = json.loads((sweep_dir / p.name / "evaluation.json").read_text())
        own = [r for r in ev["rows"] if not r["control"]]
        controls = {(r["method"], r["mode"]): r for r in ev["rows"] if r["control"]}
        assert len(own) == len(mine)
        for r, e in zip(mine, own):
            assert float(r["accuracy"]) == e["accuracy"]["value"]
            assert float(r["accuracy_low"]) == e["accuracy"]["low"] and float(r["accuracy_high"]) == e["accuracy"]["high"]
            assert float(r["change"]) == e["vs_none"]["accuracy"]["value"]
            assert float(r["change_low"]) == e["vs_none"]["accuracy"]["low"]
            assert float(r["change_high"]) == e["vs_none"]["accuracy"]["high"]
            if e["method"] == "none":
                assert r["random_change"] == "" and r["vs_random"] == ""
            else:
                c = controls[(e["method"], e["mode"])]
                assert float(r["random_change"]) == c["vs_none"]["accuracy"]["value"]
                assert float(r["random_change_high"]) == c["vs_none"]["accuracy"]["high"]
                assert float(r["vs_random"]) == e["vs_random"]["accuracy"]["value"]
                assert int(r["k"]) == p.config.identify.k
            assert int(r["items"]) == ev["items"] == 3
    md = pathlib.Path(result.md_path).read_text()
    assert "| task | identify.methods | identify.k | method | mode | K | accuracy [95% CI] |" in md
    assert "| arithmetic | mean_activation+random | k5 | random | enhancer | 5 |" in md
    assert "Points without results" not in md


@pytest.mark.torch
@pytest.mark.real_model
def test_second_invocation_runs_nothing(swept, monkeypatch):
    d, path, _, _ = swept
    before = _files(d / "out" / "tiny_sweep")

    def must_not_run(*a, **k):
        raise AssertionError("a finished point ran again")

    for name in ("load_model_for", "identify_run", "evaluate_run", "load_sets"):
        monkeypatch.setattr(runs, name, must_not_run)
    result = run_sweep(path, progress=False, log=lambda line: None)
    assert result.ran == [] and result.failed == {} and result.skipped == NAMES
    assert result.summary().startswith("8 points: 0 run, 8 skipped (finished), 0 failed; table in ")
    after = _files(d / "out" / "tiny_sweep")
    gathered = {result.csv_path, result.md_path}
    assert {p: t for p, t in after.items() if p not in gathered} == {p: t for p, t in before.items() if p not in gathered}


@pytest.mark.torch
@pytest.mark.real_model
def test_resume_conflict_and_dry_run(swept, monkeypatch, capsys):
    d, path, _, _ = swept
    sweep_dir = d / "out" / "tiny_sweep"
    # A point whose evaluation is missing is evaluated again from its saved neurons.
    target = sweep_dir / NAMES[2]
    rows_before = json.loads((target / "evaluation.json").read_text())["rows"]
    (target / "evaluation.json").unlink()
    monkeypatch.setattr(runs, "identify_run", lambda *a, **k: pytest.fail("identified again"))
    result = run_sweep(path, progress=False, log=lambda line: None)
    assert result.ran == [NAMES[2]] and len(result.skipped) == 7
    assert json.loads((target / "evaluation.json").read_text())["rows"] == rows_before
    monkeypatch.undo()

    # Another config for the same run directories is an error naming them and the key...
    with pytest.raises(ValueError) as err:
        plan(path, {"evaluate.bootstrap": 30})
    assert str(sweep_dir / NAMES[0]) in str(err.value) and "evaluate.bootstrap: 20 in the run directory, 30" in str(err.value)
    assert main(["sweep", path, "--dry-run", "evaluate.bootstrap=30"]) == 2
    assert "made with a different config" in capsys.readouterr().err
    # ... which --force turns into a replacement.
    assert main(["sweep", path, "--dry-run", "--force", "evaluate.bootstrap=30"]) == 0
    assert capsys.readouterr().out.count("to replace") == 8

    # --dry-run through the CLI: a larger grid lists finished and new points and runs nothing.
    raw = yaml.safe_load(pathlib.Path(path).read_text())
    raw["grid"]["identify.k"] = [3, 5, 4]
    bigger = write_yaml(d / "bigger.yaml", raw)
    assert main(["sweep", bigger, "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("  ")}
    assert len(lines) == 12
    for name in NAMES:
        assert "finished" in lines[name] and str(sweep_dir / name) in lines[name]
    assert "to run" in lines["arithmetic-neuronllm-k4"] and str(sweep_dir / "arithmetic-neuronllm-k4") in lines["arithmetic-neuronllm-k4"]
    assert "12 points: 8 finished, 4 to run" in out and "dry run: nothing was run" in out
    assert not (sweep_dir / "arithmetic-neuronllm-k4").exists()
