"""Slice names as the clouds write them -> chips, topology names, HBM."""

import pytest

from neuronjax.errors import ConfigError
from neuronjax.plan.slices import parse_slice


@pytest.mark.parametrize(
    "name,chips,topology,hbm",
    [
        ("v5e-1", 1, "v5e:1x1", 16), ("v5e-8", 8, "v5e:2x4", 16), ("v5e-16", 16, "v5e:4x4", 16),
        ("v5litepod-64", 64, "v5e:8x8", 16), ("v5e-256", 256, "v5e:16x16", 16),
        ("v4-8", 4, "v4:2x2x1", 32), ("v4-32", 16, "v4:2x2x4", 32),
        ("v5p-8", 4, "v5p:2x2x1", 95), ("v5p-128", 64, "v5p:4x4x4", 95),
        ("v6e-8", 8, "v6e:2x4", 32),
    ],
)  # fmt: skip
def test_accelerator_types(name, chips, topology, hbm):
    s = parse_slice(name)
    assert (s.chips, s.topology, s.chip.hbm_gib) == (chips, topology, hbm)


@pytest.mark.parametrize(
    "name,message",
    [("v5e", "expected <chip>-<count>"), ("v7x-8", "chip 'v7x' unknown"), ("v5p-7", "expected a multiple of 2"),
     ("v5e-12", "powers of two"), ("v5 e-8", "expected <chip>-<count>")],
)
def test_bad_names_say_what_is_expected(name, message):
    with pytest.raises(ConfigError, match=message):
        parse_slice(name)


def test_gpu_nodes_count_cards():
    s = parse_slice("h100-8")
    assert (s.chips, s.chip.platform, s.topology) == (8, "gpu", "")
