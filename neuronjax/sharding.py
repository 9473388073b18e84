"""Where every array lives: one table from logical axis names to mesh axes.

The mesh has three axes:

- ``data``: independent prompts. Only the batch axis is split over it.
- ``fsdp``: parameters are split along ``embed`` and gathered when used; batches are split too,
  so an fsdp axis acts as extra data parallelism that also divides parameter memory.
- ``tensor``: Megatron-style model parallelism: attention heads, the FFN neuron axis (``mlp``)
  and the vocabulary are split, so each device holds a slice of every layer.

Model code and attribution code name logical axes only (``batch, seq, embed, heads, kv_heads,
head_dim, mlp, vocab, layers``); this module alone turns them into `PartitionSpec`s. A dimension
whose size the mesh axis does not divide is replicated instead (e.g. 3 key/value heads on a
tensor axis of 4), so any mesh loads any model.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from neuronjax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated)
LOGICAL_RULES: dict[str, object] = {
    "batch": ("data", "fsdp"),
    "seq": None,
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
    "vocab": "tensor",
    "layers": None,
    "positions": None,
}


def make_mesh(shape: Optional[dict[str, int]] = None, devices: Optional[Sequence] = None) -> Mesh:
    """A (data, fsdp, tensor) mesh. ``shape`` maps axis -> size; missing axes get 1 and ``data``
    takes what is left of the devices. ``make_mesh()`` puts every device on ``data``."""
    devices = list(devices if devices is not None else jax.devices())
    shape = dict(shape or {})
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ConfigError(f"mesh axes {sorted(unknown)} unknown; expected a subset of {MESH_AXES}")
    fixed = math.prod(v for k, v in shape.items() if k != "data")
    if "data" not in shape:
        if len(devices) % fixed:
            raise ConfigError(f"mesh {shape} does not divide the {len(devices)} devices")
        shape["data"] = len(devices) // fixed
    sizes = tuple(shape.get(a, 1) for a in MESH_AXES)
    if math.prod(sizes) != len(devices):
        raise ConfigError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, have {len(devices)}"
        )
    grid = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def _axis_size(mesh: Mesh, target) -> int:
    names = target if isinstance(target, tuple) else (target,)
    return math.prod(mesh.shape[n] for n in names)


def logical_to_spec(
    axes: Sequence[Optional[str]], shape: Optional[Sequence[int]] = None, mesh: Optional[Mesh] = None
) -> P:
    """PartitionSpec for an array whose dimensions carry these logical names. With ``shape`` and
    ``mesh``, dimensions the mesh axis does not divide (or axes of size 1) are replicated."""
    spec, used = [], set()
    for i, name in enumerate(axes):
        target = LOGICAL_RULES.get(name) if name is not None else None
        if name is not None and name not in LOGICAL_RULES:
            raise KeyError(f"logical axis {name!r} has no rule; known: {sorted(LOGICAL_RULES)}")
        if target is not None and mesh is not None:
            names = target if isinstance(target, tuple) else (target,)
            names = tuple(n for n in names if mesh.shape[n] > 1 and n not in used)
            target = (names if len(names) > 1 else names[0]) if names else None
            if target is not None and shape is not None and shape[i] % _axis_size(mesh, target):
                target = None
        if target is not None:
            used.update(target if isinstance(target, tuple) else (target,))
        spec.append(target)
    return P(*spec)


def named_sharding(mesh: Mesh, axes: Sequence[Optional[str]], shape: Sequence[int]) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(axes, shape, mesh))


def batch_sharding(mesh: Mesh, ndim: int, shape: Optional[Sequence[int]] = None) -> NamedSharding:
    """Sharding of an input whose first axis is the batch and whose other axes are replicated."""
    return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1), shape, mesh))
