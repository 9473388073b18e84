"""Two local processes joined by `jax.distributed` (CPU, gloo collectives) give the scores,
masks and evaluation of one process holding all the devices."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from neuronjax import distributed
from tests import ROOT, child_env


def _worker(out, mesh, env, checkpoint=None):
    args = [sys.executable, "-m", "tests.distributed.worker", str(out), mesh] + ([str(checkpoint)] if checkpoint else [])
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs):
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=420)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append(out)
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]


@pytest.mark.parametrize("mesh,per_process", [("data", 1), ("data_tensor", 2)])
def test_two_processes_equal_one(tmp_path, mesh, per_process):
    port = distributed.free_local_port()
    one = _worker(tmp_path / "one", mesh, child_env(2 * per_process))
    two = [
        _worker(tmp_path / "two", mesh, child_env(per_process, NEURONJAX_COORDINATOR=f"127.0.0.1:{port}",
                                             NEURONJAX_NUM_PROCESSES="2", NEURONJAX_PROCESS_ID=str(i)),
                tmp_path / "ckpt")  # fmt: skip
        for i in range(2)
    ]
    _finish([one, *two])
    info_one = json.loads((tmp_path / "one" / "info.json").read_text())
    info_two = json.loads((tmp_path / "two" / "info.json").read_text())
    assert (info_one["how"], info_one["processes"]) == ("single", 1)
    assert (info_two["how"], info_two["processes"], info_two["devices"]) == ("explicit", 2, 2 * per_process)
    for key in ("items", "proxies", "batches", "filler_rows", "proxies_correct"):
        assert info_one["stats"][key] == info_two["stats"][key], key
    a, b = np.load(tmp_path / "one" / "result.npz"), np.load(tmp_path / "two" / "result.npz")
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        if a[key].dtype == bool:
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
        else:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert a["neuronllm/good"].sum() == 2 and a["neuronllm/bad"].sum() == 2
    # the multi-process run checkpointed through Orbax from both processes (every batch)
    assert sorted(os.listdir(tmp_path / "ckpt"))


def test_explicit_settings_from_environment():
    env = {"NEURONJAX_COORDINATOR": "10.0.0.1:1234", "NEURONJAX_NUM_PROCESSES": "4", "NEURONJAX_PROCESS_ID": "3"}
    assert distributed.explicit_settings(env) == ("10.0.0.1:1234", 4, 3)
    assert distributed.explicit_settings({}) is None


@pytest.mark.parametrize(
    "env,message",
    [
        ({"NEURONJAX_COORDINATOR": "h:1"}, "NEURONJAX_NUM_PROCESSES"),
        ({"NEURONJAX_COORDINATOR": "nohostport", "NEURONJAX_NUM_PROCESSES": "2", "NEURONJAX_PROCESS_ID": "0"}, "host:port"),
        ({"NEURONJAX_COORDINATOR": "h:1", "NEURONJAX_NUM_PROCESSES": "two", "NEURONJAX_PROCESS_ID": "0"}, "integer"),
        ({"NEURONJAX_COORDINATOR": "h:1", "NEURONJAX_NUM_PROCESSES": "2", "NEURONJAX_PROCESS_ID": "2"}, "0 <= id < count"),
    ],
)
def test_explicit_settings_errors_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        distributed.explicit_settings(env)


def test_cluster_detection():
    assert distributed.detected_cluster({}) is None
    assert distributed.detected_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None  # one task: nothing to join
    assert distributed.detected_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) == "slurm"
    assert distributed.detected_cluster({"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}) == "tpu"
    assert distributed.detected_cluster({"TPU_WORKER_HOSTNAMES": "w0"}) is None  # a single-host TPU VM
    assert distributed.initialize(environ={}) == "single"
