"""Named intervention modes build the scale/shift grids they promise."""

import numpy as np
import pytest

from neuronjax.intervention import MODES, from_masks

GOOD = np.array([[True, False, False], [False, False, True]])
BAD = np.array([[False, True, False], [False, False, False]])


@pytest.mark.parametrize(
    "mode,scale,shift",
    [
        ("none", [[1, 1, 1], [1, 1, 1]], [[0, 0, 0], [0, 0, 0]]),
        ("suppress_good", [[0, 1, 1], [1, 1, 0]], [[0, 0, 0], [0, 0, 0]]),
        ("enhance_bad", [[1, 2, 1], [1, 1, 1]], [[0, 0, 0], [0, 0, 0]]),
        ("set_good", [[0, 1, 1], [1, 1, 0]], [[0.5, 0, 0], [0, 0, 0.5]]),
        ("enhancer", [[2, 0, 1], [1, 1, 2]], [[0, 0, 0], [0, 0, 0]]),
        ("degrader", [[0, 2, 1], [1, 1, 0]], [[0, 0, 0], [0, 0, 0]]),
    ],
)
def test_modes(mode, scale, shift):
    iv = from_masks(mode, GOOD, BAD, all_positions=True, value=0.5)
    np.testing.assert_array_equal(np.asarray(iv.scale), scale)
    np.testing.assert_array_equal(np.asarray(iv.shift), shift)
    assert bool(iv.all_positions)


def test_unknown_mode_and_shapes():
    assert "enhancer" in MODES
    with pytest.raises(ValueError, match="mode 'boost' unknown"):
        from_masks("boost", GOOD, BAD)
    with pytest.raises(ValueError, match="must both be"):
        from_masks("enhancer", GOOD, BAD[:1])
