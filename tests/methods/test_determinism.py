"""Same config and seeds -> bit-identical scores and masks on CPU, across separate processes; a
different seed changes only what it should.

Two fresh processes (one device each) run the same identification of the planted model:
NeuronLLM, knowledge neurons, LAPE, mean activation and the seeded random control, with IG
attributions and a seeded shuffled pipeline. Then:

- same pipeline seed and random seed: every score and mask is equal bit for bit;
- another random seed: the random control draws other neurons (same per-layer counts); every
  other method is bit-identical (the random seed feeds nothing else);
- another pipeline seed: the proxies reach the methods in another order, so sums are taken in
  another order: scores agree to float rounding (~1e-6 relative), not bitwise, and the masks,
  whose planted neurons are far from any tie, are equal.
"""

import subprocess
import sys

import numpy as np
import pytest

from neuronjax.tasks.pipeline import plan_batches
from tests import ROOT, child_env
from tests.methods import determinism_worker as worker

BASE, OTHER_RANDOM, OTHER_SHUFFLE = "0:0", "0:1", "7:0"
METHODS = ("neuronllm", "kn_ig", "lape", "mean_activation", "random")


def _process(out, *runs) -> subprocess.Popen:
    env = child_env(1)
    cmd = [sys.executable, "-m", "tests.methods.determinism_worker", str(out), *runs]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("determinism")
    first = _process(folder / "first.npz", BASE, OTHER_RANDOM, OTHER_SHUFFLE)
    second = _process(folder / "second.npz", BASE)
    for p in (first, second):
        log, _ = p.communicate(timeout=500)
        assert p.returncode == 0, log[-3000:]
    return np.load(folder / "first.npz"), np.load(folder / "second.npz")


def _bits(x: np.ndarray) -> np.ndarray:
    """The raw bytes of an array, so that NaN payloads and signed zeros compare too."""
    return np.ascontiguousarray(x).view(np.uint8)


def test_same_seeds_in_two_processes_are_bit_identical(outputs):
    first, second = outputs
    keys = [k for k in second.files if k.startswith(BASE + "/")]
    assert len(keys) == 3 * len(METHODS)
    for key in keys:
        assert first[key].dtype == second[key].dtype and first[key].shape == second[key].shape, key
        np.testing.assert_array_equal(_bits(first[key]), _bits(second[key]), err_msg=key)
    assert first[f"{BASE}/neuronllm/good"].sum() == 2  # a real result, not an empty one


def test_random_seed_changes_the_random_control_only(outputs):
    first, _ = outputs
    base, other = BASE + "/", OTHER_RANDOM + "/"
    for name in METHODS[:-1]:
        for part in ("scores", "good", "bad"):
            np.testing.assert_array_equal(_bits(first[base + f"{name}/{part}"]), _bits(first[other + f"{name}/{part}"]))
    for part in ("good", "bad"):
        a, b = first[base + f"random/{part}"], first[other + f"random/{part}"]
        assert not np.array_equal(a, b)
        np.testing.assert_array_equal(a.sum(axis=1), b.sum(axis=1))  # the same per-layer counts
        np.testing.assert_array_equal(a.sum(axis=1), first[base + f"neuronllm/{part}"].sum(axis=1))


def test_shuffle_seed_changes_the_order_not_the_result(outputs):
    first, _ = outputs
    orders = [np.concatenate(plan_batches(worker.encoded_task(int(s.split(":")[0])).records,
                                          worker.encoded_task(int(s.split(":")[0])).config.pipeline))
              for s in (BASE, OTHER_SHUFFLE)]  # fmt: skip
    assert not np.array_equal(*orders)  # the seed did reorder the proxies
    for name in METHODS:
        a, b = (first[f"{s}/{name}/scores"] for s in (BASE, OTHER_SHUFFLE))
        scale = float(np.abs(a).max())
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * scale, err_msg=name)
        for part in ("good", "bad"):
            np.testing.assert_array_equal(first[f"{BASE}/{name}/{part}"], first[f"{OTHER_SHUFFLE}/{name}/{part}"],
                                          err_msg=f"{name} {part}")  # fmt: skip
