"""The command line end to end on a tiny model with the embedded tokenizer: run, report,
evaluate again from the run directory, generate under an intervention, and config errors."""

import json
import os

import pytest

from neuronjax.cli import main
from tests import ROOT as REPO

pytestmark = [pytest.mark.torch, pytest.mark.real_model]


@pytest.fixture(scope="module")
def run_config(tiny_dir, tmp_path_factory):
    from tests.tiny_models import world_facts_run_config

    out = tmp_path_factory.mktemp("runs")
    path = world_facts_run_config(
        tmp_path_factory.mktemp("cfg"), tiny_dir,
        identify={"methods": ["neuronllm", "random", "kn_ig", "mean_activation"], "k": 5, "z": 10,
                  "attribution": {"method": "ig", "steps": 2, "groups": 1}},
        evaluate={"random_seeds": 2, "bootstrap": 50, "k_values": [3]},
        cross_tasks=[os.path.join(REPO, "configs", "tasks", "arithmetic.yaml")], output=str(out),
    )  # fmt: skip
    return path, out


SMALL = ["task.split.max_identify=4", "task.split.max_eval=3"]


def test_run_report_evaluate_generate(run_config, capsys):
    path, out = run_config
    assert main(["run", str(path), "--quiet", *SMALL]) == 0
    printed = capsys.readouterr().out
    run_dir = out / "tiny"
    assert "| neuronllm | suppress_good | 5 |" in printed and str(run_dir) in printed
    for name in ("neuronllm", "random", "kn_ig", "mean_activation"):
        side = json.loads((run_dir / "neurons" / name / "neurons.json").read_text())
        assert side["method"]["name"] == name and side["task"]["name"] == "world_facts"
        assert side["model"]["weight_sha256"] and side["neuronjax_version"]
        assert side["stats"]["items"] == 4 and side["stats"]["proxies"] == 12
    first = json.loads((run_dir / "evaluation.json").read_text())
    assert first["items"] == 3 and {r["mode"] for r in first["rows"]} >= {"none", "suppress_good", "degrader"}
    cross = json.loads((run_dir / "cross.json").read_text())
    assert [t["task"] for t in cross["targets"]] == ["arithmetic"]
    # Evaluating again from the run directory (loading the saved sets) gives the same numbers.
    assert main(["evaluate", str(run_dir), "--quiet"]) == 0
    again = json.loads((run_dir / "evaluation.json").read_text())
    assert again["rows"] == first["rows"] and again["curve"] == first["curve"]
    assert main(["report", str(run_dir)]) == 0
    assert "Cross-task" in capsys.readouterr().out
    assert main(["report", "--summary", str(run_dir), "--methods", "neuronllm", "kn_ig"]) == 0
    summary = capsys.readouterr().out
    assert "| world_facts | neuronllm | 5 |" in summary and "| world_facts | random |" not in summary
    assert "Permutation-consistent accuracy" in summary
    assert main(["generate", str(run_dir), "--prompt", "The capital of France is", "--mode", "enhancer",
                 "--max-new-tokens", "3"]) == 0  # fmt: skip
    assert "[enhancer]" in capsys.readouterr().out
    # A second identify into the same run refuses to overwrite.
    assert main(["identify", str(path), "--quiet", *SMALL]) == 2
    assert "already has identified neurons" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override,message",
    [
        ("identify.kk=3", "command-line override identify.kk=3 (on "),
        ("identify.k=ten", "identify.k: expected int"),
        ("identify.methods=[neuronllm,bogus]", "'bogus' unknown"),
        ("identify.params={qrnca: {threshold: 0.3}}", "not in identify.methods"),
        ("evaluate.modes=[suppress_everything]", "suppress_everything"),
        ("model.dtype=float8", "model.dtype: expected one of"),
    ],
)
def test_config_errors_name_the_key(run_config, capsys, override, message):
    path, _ = run_config
    assert main(["identify", str(path), "--quiet", override]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def test_identify_cut_short_resumes_from_its_checkpoint(run_config, tmp_path, monkeypatch, capsys):
    """An identification interrupted part-way (after checkpoints, with a half-written neurons/
    folder) continues with the same command and saves the sets of an uninterrupted run."""
    import numpy as np

    import neuronjax.run
    from neuronjax.io.neurons import load_neurons

    path, _ = run_config
    args = ["identify", str(path), "--quiet", f"output={tmp_path}", "identify.checkpoint_every=1",
            "task.split.max_identify=6", "task.pipeline.batch_size=4", "identify.methods=[neuronllm,kn_ig]"]  # fmt: skip
    assert main(args + ["name=whole"]) == 0
    calls = []

    class Stop(Exception):
        pass

    def progress(self, n):
        calls.append(n)
        if len(calls) == 4:
            raise Stop

    monkeypatch.setattr(neuronjax.run.Progress, "__call__", progress)
    with pytest.raises(Stop):
        main(args + ["name=cut"])
    state = tmp_path / "cut" / "identify_state"
    assert sorted(int(d) for d in os.listdir(state) if d.isdigit())[-1] == 3
    (tmp_path / "cut" / "neurons" / "neuronllm").mkdir(parents=True)  # as if killed while saving
    monkeypatch.undo()
    capsys.readouterr()
    assert main(args + ["name=cut"]) == 0
    assert "resuming from" in capsys.readouterr().err
    assert not state.exists()
    for name in ("neuronllm", "kn_ig"):
        a = load_neurons(str(tmp_path / "whole" / "neurons" / name))
        b = load_neurons(str(tmp_path / "cut" / "neurons" / name))
        np.testing.assert_array_equal(b.scores, a.scores)
        np.testing.assert_array_equal(b.good, a.good)
        assert b.meta["stats"]["proxies"] == a.meta["stats"]["proxies"] == 18  # 6 items x 3 proxies
    assert main(args + ["name=cut"]) == 2  # complete now: refused without --force
