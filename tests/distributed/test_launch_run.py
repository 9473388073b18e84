"""The user's multi-process path end to end: `launch/local.sh -n 2 -- neuronjax run CONFIG`
writes the same neurons and evaluation as one process holding both devices."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from neuronjax.distributed import free_local_port
from neuronjax.io.neurons import load_neurons
from tests import ROOT as REPO
from tests import child_env

pytestmark = [pytest.mark.torch, pytest.mark.real_model]


def test_local_launch_of_two_processes_equals_one(tmp_path, tiny_dir):
    cfg = {
        "name": "run",
        "task": os.path.join(REPO, "configs", "tasks", "world_facts.yaml"),
        "model": {"path": str(tiny_dir)},
        "identify": {"methods": ["neuronllm", "kn_ig"], "k": 5, "z": 10, "checkpoint_every": 1,
                     "attribution": {"method": "ig", "steps": 2, "groups": 1}},
        "evaluate": {"random_seeds": 1, "bootstrap": 20, "k_values": []},
        "task_overrides": {"split.max_identify": 6, "split.max_eval": 4},
    }  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    neuronjax = [sys.executable, "-m", "neuronjax.cli", "run", str(tmp_path / "run.yaml"), "--quiet"]
    one = subprocess.Popen(
        neuronjax + [f"output={tmp_path / 'one'}", "task.pipeline.batch_size=8"],
        env=child_env(2),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    launch = [os.path.join(REPO, "launch", "local.sh"), "-n", "2", "--port", str(free_local_port()), "--devices-per-process", "1", "--"]
    two = subprocess.Popen(
        ["bash", *launch, *neuronjax, f"output={tmp_path / 'two'}", "task.pipeline.batch_size=4"],
        env=child_env(None), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out_one, out_two = one.communicate(timeout=600)[0], two.communicate(timeout=600)[0]
    assert one.returncode == 0, out_one[-3000:]
    assert two.returncode == 0, out_two[-3000:]
    assert "on 2 device(s)" in out_one and "2 process(es)" in out_two and "[0] " in out_two
    assert "pictures: run `neuronjax report" in out_two  # drawn later by one process
    a_dir, b_dir = tmp_path / "one" / "run", tmp_path / "two" / "run"
    for name in ("neuronllm", "kn_ig"):
        a, b = load_neurons(str(a_dir / "neurons" / name)), load_neurons(str(b_dir / "neurons" / name))
        np.testing.assert_array_equal(b.good, a.good)
        np.testing.assert_array_equal(b.bad, a.bad)
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-5, atol=1e-6)
        assert (a.meta["stats"]["processes"], b.meta["stats"]["processes"]) == (1, 2)
    ea, eb = (json.loads((d / "evaluation.json").read_text()) for d in (a_dir, b_dir))
    assert [r["accuracy"] for r in ea["rows"]] == [r["accuracy"] for r in eb["rows"]]
    assert not (b_dir / "identify_state").exists()  # spent once the neurons were saved
    assert (a_dir / "report" / "index.html").exists() and not (b_dir / "report").exists()
