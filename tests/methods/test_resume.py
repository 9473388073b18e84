"""A checkpointed identification killed with SIGKILL part-way and started again with the same
command ends with exactly the masks and scores of an uninterrupted run."""

import os
import signal
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from neuronjax.identify import AttributionConfig, Checkpointing, identify
from neuronjax.methods import NeuronLLM
from tests import ROOT, child_env
from tests.methods import planted


def _run(out, ckpt, kill_at) -> subprocess.CompletedProcess:
    env = child_env(1)
    cmd = [sys.executable, "-m", "tests.methods.resume_worker", str(out), str(ckpt), str(kill_at)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)


def _steps(ckpt) -> list[int]:
    return sorted(int(d) for d in os.listdir(ckpt) if d.isdigit())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "whole.npz"
    whole = _run(out, "-", 0)
    assert whole.returncode == 0, whole.stderr[-3000:]
    return np.load(out)


@pytest.mark.parametrize("kill_at", [5, 8])
def test_killed_and_resumed_equals_uninterrupted(tmp_path, uninterrupted, kill_at):
    ckpt = tmp_path / "state"
    killed = _run(tmp_path / "never.npz", ckpt, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "never.npz").exists()
    steps = _steps(ckpt)
    assert steps and steps[-1] == (kill_at - 1) // 2 * 2  # the last checkpoint before the kill
    resumed = _run(tmp_path / "resumed.npz", ckpt, 0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = uninterrupted, np.load(tmp_path / "resumed.npz")
    assert sorted(a.files) == sorted(b.files) and int(b["items"]) == 14
    for key in a.files:
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)  # bit-identical
    assert a["neuronllm/good"].sum() == 2


def test_checkpoint_of_another_run_is_refused(tmp_path):
    lm, task = planted.model(), planted.task(num_items=6, batch_size=4)
    ckpt = Checkpointing(str(tmp_path / "state"), every=1)
    identify(lm, task, [NeuronLLM(k=2, z=6)], AttributionConfig("grad_x_act"), block_items=2, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"state.*another identification \(different methods\)"):
        identify(lm, task, [NeuronLLM(k=3, z=6)], AttributionConfig("grad_x_act"), block_items=2, checkpoint=ckpt)


def test_resume_from_the_final_checkpoint_does_no_work(tmp_path):
    """A run killed after its last checkpoint restarts without attributing a batch again."""
    lm, task = planted.model(), planted.task(num_items=6, batch_size=3)  # 18 proxies: 6 batches
    ckpt = Checkpointing(str(tmp_path / "state"), every=1, keep=1)
    first = identify(lm, task, [NeuronLLM(k=2, z=6)], AttributionConfig("grad_x_act"), block_items=4, checkpoint=ckpt)
    assert _steps(tmp_path / "state") == [6]
    calls = []
    again = identify(lm, task, [NeuronLLM(k=2, z=6)], AttributionConfig("grad_x_act"), block_items=4,
                     progress=calls.append, checkpoint=ckpt)  # fmt: skip
    assert calls == [18]  # only the restored count, no batch
    np.testing.assert_array_equal(again["neuronllm"].scores, first["neuronllm"].scores)
    assert again["neuronllm"].meta["stats"]["items"] == 6
    meta = ocp.CheckpointManager(str(tmp_path / "state")).restore(6, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    assert meta["meta"]["stats"]["proxies"] == 18
