"""A disk that fills while a checkpoint is written (simulated: a low-level write raises
OSError(ENOSPC) part-way). The save fails with an error that says what it was writing; what it
leaves behind is never taken for a complete result or checkpoint; saving or resuming again gives
what an undisturbed run gives."""

import errno
import os
import re
import types

import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore

import neuronjax.identify.state as identify_module
import neuronjax.io.neurons as neurons_module
from neuronjax.errors import SaveError
from neuronjax.identify import AttributionConfig, Checkpointing, identify
from neuronjax.io.neurons import NeuronSet, load_neurons, save_neurons
from neuronjax.methods import KnowledgeNeurons, NeuronLLM
from tests.methods import planted

FULL = "OSError: [Errno 28] No space left on device"


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _result() -> NeuronSet:
    scores = np.random.default_rng(0).normal(size=(2, 48)).astype(np.float32)
    return NeuronSet(scores, scores > 1.5, scores < -1.5, {"method": {"name": "handmade"}})


def _unfinished(directory):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{directory}: an unfinished save: it holds [")
                       + r".*" + re.escape("] but no neurons.json, which is written last")):  # fmt: skip
        load_neurons(str(directory))


def _saves_again(directory):
    result = _result()
    save_neurons(str(directory), result)
    back = load_neurons(str(directory))
    np.testing.assert_array_equal(back.scores, result.scores)
    np.testing.assert_array_equal(back.good, result.good)
    assert not [n for n in os.listdir(directory) if "tmp" in n]


# ------------------------------------------------------------------------------ save_neurons


def test_disk_full_while_the_arrays_are_written(tmp_path, monkeypatch):
    directory = tmp_path / "run"
    monkeypatch.setattr(tensorstore, "open", _full)  # Orbax writes every array through tensorstore
    message = (f"{directory}: saving the neuron set failed while writing the arrays (arrays/): {FULL}. The "
               "directory has no neurons.json, so it is not taken for a result; save again once the cause is fixed")  # fmt: skip
    with pytest.raises(SaveError, match=re.escape(message)) as err:
        save_neurons(str(directory), _result())
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert not (directory / "arrays").exists()  # Orbax only renames a finished checkpoint into place
    _unfinished(directory)
    monkeypatch.undo()
    _saves_again(directory)


def test_disk_full_while_the_sidecar_is_written(tmp_path, monkeypatch):
    directory = tmp_path / "run"

    def half_then_full(obj, f, **kwargs):
        f.write('{"bad_neurons": [')
        f.flush()
        _full()

    monkeypatch.setattr(neurons_module, "json", types.SimpleNamespace(dump=half_then_full, load=neurons_module.json.load))
    message = (f"{directory}: saving the neuron set failed while writing the sidecar (neurons.json): {FULL}. The "
               "directory has no neurons.json, so it is not taken for a result")  # fmt: skip
    with pytest.raises(SaveError, match=re.escape(message)):
        save_neurons(str(directory), _result())
    assert sorted(os.listdir(directory)) == ["arrays"]  # the half-written sidecar is removed
    _unfinished(directory)
    monkeypatch.undo()
    _saves_again(directory)


def test_disk_full_when_the_sidecar_is_renamed_into_place(tmp_path, monkeypatch):
    directory = tmp_path / "run"
    real_replace = os.replace

    def replace(src, dst):
        if os.fspath(dst).endswith("neurons.json"):
            _full()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(SaveError, match=re.escape("failed while writing the sidecar (neurons.json): " + FULL)):
        save_neurons(str(directory), _result())
    assert sorted(os.listdir(directory)) == ["arrays"]
    _unfinished(directory)
    monkeypatch.undo()
    _saves_again(directory)


def test_process_killed_while_writing_the_sidecar(tmp_path):
    """What a kill leaves (no cleanup ran): arrays and a partial neurons.json.tmp."""
    directory = tmp_path / "run"
    save_neurons(str(directory), _result())
    os.replace(directory / "neurons.json", directory / "neurons.json.tmp")
    _unfinished(directory)


# --------------------------------------------------------------- resumable identification state

METHODS = [NeuronLLM(k=2, z=6), KnowledgeNeurons(k=2)]


def _identify(checkpoint=None):
    lm, task = planted.model(), planted.task(num_items=6, batch_size=3)  # 18 proxies: 6 batches
    return identify(lm, task, METHODS, AttributionConfig("grad_x_act"), block_items=2, checkpoint=checkpoint)


@pytest.fixture(scope="module")
def uninterrupted():
    return _identify()


def _steps(directory) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("part", ["arrays", "meta"])
def test_disk_full_while_the_run_state_is_saved(tmp_path, monkeypatch, uninterrupted, part):
    """The second checkpoint (batch 4) fails part-way: through tensorstore for the method states,
    or while the JSON part (step, statistics, run key) is written."""
    directory = tmp_path / "state"
    checkpoint = Checkpointing(str(directory), every=2, keep=3)
    real_save = identify_module.RunState.save

    def save(self, step, *args):
        if step != 4:
            return real_save(self, step, *args)
        with pytest.MonkeyPatch.context() as mp:
            if part == "arrays":
                mp.setattr(tensorstore, "open", _full)
            else:
                from orbax.checkpoint._src.handlers import json_checkpoint_handler

                mp.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", lambda *a, **k: _full())
            return real_save(self, step, *args)

    monkeypatch.setattr(identify_module.RunState, "save", save)
    message = (f"{directory}: saving the resumable state at batch 4 failed: {FULL}. The newest complete checkpoint "
               "is batch 2; a restart continues from it")  # fmt: skip
    with pytest.raises(SaveError, match=re.escape(message)):
        _identify(checkpoint)
    assert ocp.CheckpointManager(str(directory)).latest_step() == 2  # the half-written step is not taken
    assert "2" in _steps(directory) and "4" not in _steps(directory)
    monkeypatch.undo()
    resumed = _identify(checkpoint)
    for name in uninterrupted:
        np.testing.assert_array_equal(resumed[name].scores, uninterrupted[name].scores)
        np.testing.assert_array_equal(resumed[name].good, uninterrupted[name].good)
        np.testing.assert_array_equal(resumed[name].bad, uninterrupted[name].bad)
    assert resumed["neuronllm"].meta["stats"]["proxies"] == 18


def test_waiting_for_orbax_threads_tolerates_one_not_yet_started(monkeypatch):
    """threading.enumerate() lists a thread from the moment its start() is called, before join()
    accepts it; the wait after a failed save must not fail on such a thread (it waits for it)."""
    import threading
    import time

    worker = threading.Thread(target=time.sleep, args=(0.2,))
    monkeypatch.setattr(threading, "enumerate", lambda: [worker])
    starter = threading.Timer(0.05, worker.start)
    starter.start()
    try:
        identify_module._join_new_threads(set(), timeout=10.0)
        assert not worker.is_alive() and worker.ident is not None
    finally:
        starter.join()
        worker.join()
