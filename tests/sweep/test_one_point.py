"""One point at a time, as a job array runs a sweep: `--point I` runs point I alone and writes no
table, `--gather` writes the table from what is finished (failed points with their error),
`--count` is the array's size. The pipeline is replaced by stand-ins: no model."""

import csv
import io

import pytest

from neuronjax import run as runs
from neuronjax.cli import main
from neuronjax.evaluation.results import Interval
from neuronjax.sweep import expand, load_sweep
from tests.sweep.files import REPO, base_config, evaluation_of, sweep_file

GRID = {"identify.k": [3, 5], "model.dtype": ["float32", "bfloat16"]}
POINTS = ["k3-float32", "k3-bfloat16", "k5-float32", "k5-bfloat16"]  # as --dry-run numbers them: 1 to 4


@pytest.fixture
def pipeline(monkeypatch):
    """Stand-ins for load / identify / evaluate; records what ran. A point named in `fail` fails."""
    calls = {"loads": [], "ran": [], "fail": set()}

    def identify(config, lm, **kwargs):
        calls["ran"].append(config.name)
        if config.name in calls["fail"]:
            raise RuntimeError(f"no neurons for {config.name}")
        runs.write_config(config)
        return {}

    def evaluate(config, lm, sets, **kwargs):
        evaluation_of(Interval(0.5, 0.25, 0.75)).save(f"{config.run_dir}/evaluation.json")

    monkeypatch.setattr(runs, "load_model_for", lambda config: calls["loads"].append(config.model.dtype))
    monkeypatch.setattr(runs, "identify_run", identify)
    monkeypatch.setattr(runs, "evaluate_run", evaluate)
    return calls


def _rows(sweep_dir):
    return list(csv.DictReader(io.StringIO((sweep_dir / "results.csv").read_text())))


def test_point_runs_exactly_one_point_and_no_table(tmp_path, pipeline, capsys):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid=GRID)
    sweep_dir = tmp_path / "out" / "tiny_sweep"
    assert [p.name for p in expand(load_sweep(path))] == POINTS
    assert main(["sweep", path, "--point", "3", "--quiet"]) == 0
    assert pipeline["ran"] == ["k5-float32"] and pipeline["loads"] == ["float32"]
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["k5-float32"]  # no other run, no table
    out = capsys.readouterr().out
    assert "1 of 4 points: 1 run, 0 skipped (finished), 0 failed" in out and f"neuronjax sweep {path} --gather" in out
    # Again: finished, nothing runs. The array's task number arrives as a string of digits.
    assert main(["sweep", path, "--point", "03", "--quiet"]) == 0
    assert pipeline["ran"] == ["k5-float32"]
    assert "1 of 4 points: 0 run, 1 skipped (finished), 0 failed" in capsys.readouterr().out
    # --dry-run --point: that point's state only.
    assert main(["sweep", path, "--dry-run", "--point", "2"]) == 0
    out = capsys.readouterr().out
    assert "    2  k3-bfloat16  to run" in out and "k5-float32" not in out and "1 of 4 points: 0 finished, 1 to run" in out


@pytest.mark.parametrize("number", ["0", "5"])
def test_point_out_of_range(tmp_path, pipeline, capsys, number):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid=GRID)
    assert main(["sweep", path, "--point", number]) == 2
    assert f"no point {int(number)}: the sweep has 4 points (1 to 4" in capsys.readouterr().err
    assert pipeline["ran"] == []


def test_a_failed_point_is_recorded_and_exits_1(tmp_path, pipeline, capsys):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid=GRID)
    pipeline["fail"].add("k3-bfloat16")
    assert main(["sweep", path, "--point", "2", "--quiet"]) == 1
    error = (tmp_path / "out" / "tiny_sweep" / "k3-bfloat16" / "sweep_error.txt").read_text()
    assert error.startswith("RuntimeError: no neurons for k3-bfloat16\n") and "Traceback" in error
    # The failed attempt's directory holds only the error: the point runs again, unforced.
    pipeline["fail"].clear()
    assert main(["sweep", path, "--point", "2", "--quiet"]) == 0
    assert pipeline["ran"] == ["k3-bfloat16", "k3-bfloat16"]
    assert not (tmp_path / "out" / "tiny_sweep" / "k3-bfloat16" / "sweep_error.txt").exists()


def test_gather_writes_the_table_of_what_is_finished(tmp_path, pipeline, capsys):
    base_config(tmp_path)
    path = sweep_file(tmp_path, grid=GRID)
    sweep_dir = tmp_path / "out" / "tiny_sweep"
    pipeline["fail"].add("k5-float32")
    assert main(["sweep", path, "--point", "1", "--quiet"]) == 0
    assert main(["sweep", path, "--point", "3", "--quiet"]) == 1
    capsys.readouterr()
    pipeline["ran"].clear()
    assert main(["sweep", path, "--gather"]) == 0
    assert pipeline["ran"] == [] and pipeline["loads"] == ["float32", "float32"]  # gathering runs nothing
    out = capsys.readouterr().out
    assert "4 points: 1 evaluated, 3 without results; table in " in out and "| k3 | float32 | none | none | - |" in out
    rows = _rows(sweep_dir)
    assert [(r["point"], r["status"]) for r in rows] == [
        ("k3-float32", "ok"), ("k3-bfloat16", "not evaluated"),
        ("k5-float32", "failed: RuntimeError: no neurons for k5-float32"), ("k5-bfloat16", "not evaluated"),
    ]  # fmt: skip
    assert rows[0]["accuracy"] == "0.5" and rows[0]["accuracy_low"] == "0.25" and rows[0]["items"] == "1"
    md = (sweep_dir / "results.md").read_text()
    assert "| k3 | float32 | none | none | - | 0.500 [0.250, 0.750] | - | - | - | - |" in md
    assert "Points without results (3):" in md and "k5-float32" in md.split("Points without results")[1]
    # A finished point made with another config is not gathered as if it were this sweep's.
    assert main(["sweep", path, "--gather", "evaluate.bootstrap=30"]) == 0
    assert _rows(sweep_dir)[0]["status"].startswith("made with a different config (evaluate.bootstrap: 20 in the run")


def test_count(tmp_path, capsys):
    base_config(tmp_path)
    path = sweep_file(tmp_path)
    assert main(["sweep", path, "--count", "evaluate.bootstrap=30"]) == 0
    assert capsys.readouterr().out == "8\n"
    assert main(["sweep", path, "--count", "identify.kk=3"]) == 2
    assert "identify.kk: unknown key; did you mean 'k'?" in capsys.readouterr().err
    assert main(["sweep", path, "--count", "--dry-run"]) == 2
    with pytest.raises(SystemExit) as err:  # argparse: not allowed with --point
        main(["sweep", path, "--gather", "--point", "1"])
    assert err.value.code == 2


def test_count_of_the_example_sweep(monkeypatch, capsys):
    """configs/sweeps/example.yaml: 3 tasks x 2 methods x 2 K (the size launch/slurm.sh gives its array)."""
    monkeypatch.chdir(REPO)
    assert main(["sweep", "configs/sweeps/example.yaml", "--count"]) == 0
    assert capsys.readouterr().out == "12\n"
