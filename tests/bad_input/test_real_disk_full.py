"""A real full disk (a small tmpfs, mounted where the machine allows it: root on Linux): saving a
neuron set, and the resumable identification state, on a disk with no space left fail with the
named SaveError; once space is freed, saving again and resuming give what an undisturbed run
gives. The simulated cases (a write that raises ENOSPC part-way) are in test_disk_full.py."""

import errno
import os
import subprocess

import numpy as np
import pytest

import neuronjax.identify.state as identify_module
from neuronjax.errors import SaveError
from neuronjax.identify import Checkpointing
from neuronjax.io.neurons import load_neurons, save_neurons
from tests.bad_input.test_disk_full import _identify, _result, _unfinished

SIZE = 4 * 1024 * 1024  # bytes of the tmpfs


@pytest.fixture
def disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk (skipped where mounting is not allowed)."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)],
                                 check=False, capture_output=True, text=True)  # fmt: skip
    except OSError as err:  # no mount command
        pytest.skip(f"cannot mount a tmpfs here ({err}); needs root on Linux")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}); needs root on Linux")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def _fill(disk, leave: int = 0) -> str:
    """Take every free byte of the disk but `leave` with one file; return its path."""
    path = os.path.join(disk, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    if leave:
        os.truncate(path, os.path.getsize(path) - leave)
    return path


@pytest.mark.parametrize("leave", [0, 8192])
def test_saving_a_set_on_a_full_disk(disk, leave):
    """Nothing left, or 8 KiB: enough for some of the files but not all of them."""
    directory = disk / "run"
    filler = _fill(disk, leave)
    with pytest.raises(SaveError, match=r"No space left on device") as err:
        save_neurons(str(directory), _result())
    assert str(directory) in str(err.value) and "not taken for a result" in str(err.value)
    if directory.exists():
        _unfinished(directory)
    os.remove(filler)
    result = _result()
    save_neurons(str(directory), result)
    back = load_neurons(str(directory))
    np.testing.assert_array_equal(back.scores, result.scores)
    np.testing.assert_array_equal(back.bad, result.bad)


def test_resumable_state_on_a_disk_that_fills(disk, monkeypatch):
    """The disk fills just before the second checkpoint (batch 4): the run stops with the named
    error, the newest complete checkpoint stays batch 2, and after space is freed the same call
    resumes from it to the undisturbed result."""
    directory = disk / "state"
    checkpoint = Checkpointing(str(directory), every=2, keep=3)
    real_save = identify_module.RunState.save
    filled = []

    def save(self, step, *args):
        if step == 4:
            filled.append(_fill(disk))
        return real_save(self, step, *args)

    monkeypatch.setattr(identify_module.RunState, "save", save)
    with pytest.raises(SaveError, match=r"saving the resumable state at batch 4 failed: .*No space left on device"):
        _identify(checkpoint)
    monkeypatch.undo()
    os.remove(filled[0])
    import orbax.checkpoint as ocp

    assert ocp.CheckpointManager(str(directory)).latest_step() == 2
    resumed = _identify(checkpoint)
    undisturbed = _identify()
    for name in undisturbed:
        np.testing.assert_array_equal(resumed[name].scores, undisturbed[name].scores)
        np.testing.assert_array_equal(resumed[name].good, undisturbed[name].good)
        np.testing.assert_array_equal(resumed[name].bad, undisturbed[name].bad)
