"""Accelerator slices by the names the clouds rent them under, and what each chip offers.

TPU names follow Google Cloud's accelerator types: v4-N and v5p-N count TensorCores (two per chip),
v5e-N / v5litepod-N and v6e-N count chips. Each maps to the topology name `libtpu` compiles for
(e.g. v5e-64 -> "v5e:8x8"), so a step can be compiled for the slice on a CPU host
(`jax.experimental.topologies.get_topology_desc`). GPU names (h100-8, a100-8, h200-8) are a count of
cards on one node.

HBM and peak dense bf16 FLOP/s per chip are the vendors' published figures (Cloud TPU system
architecture pages; NVIDIA H100 SXM / A100 SXM / H200 data sheets).
"""

from __future__ import annotations

import dataclasses
import math
import re

from neuronjax.errors import ConfigError

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    platform: str  # "tpu" or "gpu"
    hbm_gib: float  # high-bandwidth memory per chip (GiB)
    peak_bf16_flops: float  # dense bf16 matrix FLOP/s per chip
    cores_per_chip: int = 1  # what the accelerator-type count counts per chip (v4 / v5p: 2 TensorCores)
    topology_prefix: str = ""  # libtpu's topology name prefix
    dims: int = 2  # torus dimensions of the topology name


CHIPS = {
    "v4": Chip("v4", "tpu", 32, 275e12, cores_per_chip=2, topology_prefix="v4", dims=3),
    "v5e": Chip("v5e", "tpu", 16, 197e12, topology_prefix="v5e"),
    "v5p": Chip("v5p", "tpu", 95, 459e12, cores_per_chip=2, topology_prefix="v5p", dims=3),
    "v6e": Chip("v6e", "tpu", 32, 918e12, topology_prefix="v6e"),
    "a100": Chip("a100", "gpu", 80, 312e12),
    "h100": Chip("h100", "gpu", 80, 989e12),
    "h200": Chip("h200", "gpu", 141, 989e12),
}
ALIASES = {"v5litepod": "v5e"}


@dataclasses.dataclass(frozen=True)
class Slice:
    """A named slice: how many chips of which kind, and the topology name to compile for."""

    name: str  # as given, e.g. "v5e-64"
    chip: Chip
    chips: int
    topology: str  # libtpu topology name, e.g. "v5e:8x8" ("" for GPUs)

    @property
    def hbm_bytes(self) -> int:
        return int(self.chip.hbm_gib * GIB)


def _grid(chips: int, dims: int) -> tuple[int, ...]:
    """The most nearly cubic (square) torus of `chips` chips, smallest sides first."""
    if dims == 2:
        a = 2 ** (int(math.log2(chips)) // 2)
        return (a, chips // a)
    side = [1, 1, 1]
    n, k = chips, 0
    while n > 1:
        side[k % 3] *= 2
        n //= 2
        k += 1
    return tuple(sorted(side))


def parse_slice(name: str) -> Slice:
    """A slice from its accelerator-type name (v4-8, v5e-64, v5litepod-16, v5p-128, v6e-8, h100-8)."""
    m = re.fullmatch(r"([a-z0-9]+)-(\d+)", name.strip().lower())
    known = sorted(CHIPS) + sorted(ALIASES)
    if m is None:
        raise ConfigError(f"--topology {name!r}: expected <chip>-<count>, e.g. v5e-64, v5p-128, v6e-8, h100-8 "
                          f"(chips: {', '.join(known)})")  # fmt: skip
    kind, count = ALIASES.get(m.group(1), m.group(1)), int(m.group(2))
    if kind not in CHIPS:
        from neuronjax.configlib import unknown

        raise ConfigError(f"--topology {name!r}: chip {unknown(m.group(1), known, 'chips')}")
    chip = CHIPS[kind]
    if count % chip.cores_per_chip:
        raise ConfigError(f"--topology {name!r}: {kind} counts TensorCores, {chip.cores_per_chip} per chip; "
                          f"expected a multiple of {chip.cores_per_chip}")  # fmt: skip
    chips = count // chip.cores_per_chip
    if chip.platform == "gpu":
        return Slice(name, chip, chips, "")
    if chips & (chips - 1):
        raise ConfigError(f"--topology {name!r}: {chips} chips; TPU slices come in powers of two")
    grid = _grid(chips, chip.dims)
    if chip.dims == 3 and chips < 8:
        grid = tuple(sorted(_grid(chips, 2)) + [1])
    return Slice(name, chip, chips, f"{chip.topology_prefix}:{'x'.join(map(str, grid))}")
