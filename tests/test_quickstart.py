"""The front door: `neuronjax run quickstart` found by name from any working directory, the
shipped configs in the package data, the command-line details a first user meets (--version,
program names, choices), and the optional extras (pictures, Parquet) missing."""

import fnmatch
import json
import os
import sys

import pytest

from neuronjax import cli
from neuronjax.cli import main
from neuronjax.shipped import shipped_names
from tests import ROOT as REPO

TINY = ["task.split.max_identify=4", "task.split.max_eval=3", "identify.k=5", "identify.z=10",
        "identify.attribution.steps=2", "identify.attribution.groups=1", "evaluate.bootstrap=50"]  # fmt: skip


@pytest.mark.torch
@pytest.mark.real_model
def test_quickstart_by_name_from_another_folder(tiny_dir, tmp_path, monkeypatch, capsys):
    """Run from an empty folder: the config is found by name, its task YAML beside it, and the
    results land under ./runs/quickstart of that folder. Without matplotlib the pictures are
    skipped with one line naming the extra."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_can_draw", lambda: False)
    assert main(["run", "quickstart", "--quiet", f"model.path={tiny_dir}", *TINY]) == 0
    printed = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "quickstart"
    assert "| neuronllm | suppress_bad | 5 |" in printed and "| random | suppress_good | 5 |" in printed
    assert "pip install 'neuronjax[report]'" in printed and not (run_dir / "report").exists()
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert {(r["method"], r["mode"]) for r in evaluation["rows"] if not r["control"]} == {
        ("none", "none"), ("neuronllm", "suppress_good"), ("neuronllm", "suppress_bad"),
        ("random", "suppress_good"), ("random", "suppress_bad")}  # fmt: skip
    assert evaluation["items"] == 3 and sorted(os.listdir(run_dir / "neurons")) == ["neuronllm", "random"]
    assert (run_dir / "predictions.parquet").exists() or (run_dir / "predictions.csv").exists()


def test_a_name_that_is_neither_a_file_nor_shipped_lists_the_shipped_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "show", "quikstart"]) == 2
    err = capsys.readouterr().err
    assert "quikstart: no such file or run directory, and not the name of a shipped config" in err
    assert "'quickstart'" in err and "'default'" in err and "'runs/world_facts'" in err


def test_shipped_names_are_the_run_configs_of_the_configs_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runs = sorted(f[:-5] for f in os.listdir(os.path.join(REPO, "configs", "runs")) if f.endswith(".yaml"))
    top = sorted(f[:-5] for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".yaml"))
    assert shipped_names() == top + [f"runs/{n}" for n in runs]
    assert main(["config", "show", "quickstart.yaml", "identify.k=7"]) == 0  # ".yaml" accepted too
    shown = capsys.readouterr().out
    assert "name: quickstart" in shown and "k: 7" in shown and "world_facts.yaml" in shown


def test_every_config_file_is_package_data():
    """Each file under configs/ sits in a folder pyproject.toml lists as a package and matches one
    of that package's data patterns, so a wheel carries it (`neuronjax run quickstart` outside
    the checkout)."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    assert setuptools["package-dir"]["neuronjax.configs"] == "configs"
    missing = []
    for dirpath, _, files in os.walk(os.path.join(REPO, "configs")):
        rel = os.path.relpath(dirpath, os.path.join(REPO, "configs"))
        package = "neuronjax.configs" + ("" if rel == "." else "." + rel.replace(os.sep, "."))
        patterns = setuptools["package-data"].get(package, []) if package in setuptools["packages"] else []
        missing += [os.path.join(rel, f) for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not missing, f"configs/ files a wheel would leave out: {missing}"


def test_version_and_program_names(capsys):
    from neuronjax import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"neuronjax {__version__}"
    for name in ("load-memory", "attribution", "scaling", "layout", "agreement", "quadrature", "evaluation", "profile"):
        with pytest.raises(SystemExit):
            main(["bench", name, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: neuronjax bench {name} "), name


def test_generate_modes_are_choices_and_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["generate", "--prompt", "x", "--mode", "supress_good"])
    assert done.value.code == 2
    assert "invalid choice: 'supress_good'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: neuronllm)" in text and "(default: 32)" in text and "suppress_bad, enhance_good" in text


def test_report_of_a_missing_directory_says_so(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: no such run directory" in capsys.readouterr().err


def test_parquet_tasks_without_pyarrow_name_the_extra(tmp_path, monkeypatch):
    from neuronjax.errors import DataError
    from neuronjax.tasks.readers import read_rows

    path = tmp_path / "task.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"task.parquet: reading a Parquet file needs pyarrow.*neuronjax\[parquet\]"):
        list(read_rows(str(path)))
