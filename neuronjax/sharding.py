"""Where every array lives: sharding rules as a value, mapping logical axis names to mesh axes.

The mesh has three axes:

- ``data``: independent prompts. Only the batch axis is split over it.
- ``fsdp``: parameters are split along ``embed`` and gathered when used (inside the layer scan,
  one layer's weights at a time); batches are split too, so an fsdp axis acts as extra data
  parallelism that also divides parameter memory.
- ``tensor``: Megatron-style model parallelism: attention heads, the FFN neuron axis (``mlp``)
  and the vocabulary are split, so each device holds a slice of every layer.

Model, attribution and evaluation code name logical axes only (``batch, seq, embed, heads,
kv_heads, head_dim, mlp, vocab, layers``, plus ``variant`` for the IG variants of a prompt); a
`ShardingRules` value turns them into `PartitionSpec`s. The rules are data: the run config's
``model.sharding`` changes them (e.g. ``{mlp: null}`` to keep neurons whole on every device), and
they travel with the model (`LanguageModel.rules`), never as a module global. A dimension whose
size its mesh axes do not divide is replicated instead (e.g. 3 key/value heads on a tensor axis of
4), so any mesh loads any model; each such dimension is logged once. Two logical axes of one array
mapped to the same mesh axis is an error (an array cannot be split twice over one axis).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional, Sequence, Union

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from neuronjax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
Target = Union[None, str, tuple[str, ...]]

log = logging.getLogger("neuronjax.sharding")


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """Logical axis -> mesh axis (a name, a tuple of names split over together, or None for
    replicated). Defaults: batch over data and fsdp, parameters' embed over fsdp, heads, mlp and
    vocab over tensor, everything else replicated."""

    batch: Target = ("data", "fsdp")  # prompts (and items in method updates)
    variant: Target = None  # IG variants of one prompt (layer x alpha); they share the prompt's cache
    seq: Target = None  # query positions
    keys: Target = None  # cached key positions
    embed: Target = "fsdp"  # residual stream width (parameters); activations keep it whole
    act_embed: Target = None  # residual stream width of activations
    heads: Target = "tensor"  # attention heads
    kv_heads: Target = "tensor"  # key/value heads (grouped-query attention)
    head_dim: Target = None
    mlp: Target = "tensor"  # FFN neurons: attribution tensors [variant, batch, mlp] split like the weights
    experts: Target = None  # the router's experts (a mixture of experts' neurons live on mlp)
    vocab: Target = "tensor"
    layers: Target = None  # the stacked-layer axis of block parameters (scanned over, never split)
    positions: Target = None  # learned position embeddings

    def __post_init__(self):
        for f in dataclasses.fields(self):
            for name in _names(getattr(self, f.name)):
                if name not in MESH_AXES:
                    raise ConfigError(f"model.sharding.{f.name}: mesh axis {name!r} unknown; expected one of {MESH_AXES}")

    @classmethod
    def from_config(cls, overrides: Optional[dict] = None) -> "ShardingRules":
        """The default rules with the run config's `model.sharding` entries on top."""
        overrides = dict(overrides or {})
        known = {f.name for f in dataclasses.fields(cls)}
        for key in overrides:
            if key not in known:
                from neuronjax.configlib import unknown

                raise ConfigError(f"model.sharding: {unknown(key, sorted(known), 'logical axes')}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})

    def spec(self, axes: Sequence[Optional[str]], shape: Optional[Sequence[int]] = None,
             mesh: Optional[Mesh] = None) -> P:  # fmt: skip
        """PartitionSpec of an array whose dimensions carry these logical names. With `mesh`,
        mesh axes of size 1 are dropped and, with `shape`, a dimension its mesh axes do not
        divide is replicated (logged once)."""
        spec, used = [], {}
        for i, name in enumerate(axes):
            if name is None:
                spec.append(None)
                continue
            if not hasattr(self, name) or name.startswith("_"):
                raise KeyError(f"logical axis {name!r} has no rule; known: {[f.name for f in dataclasses.fields(self)]}")
            names = _names(getattr(self, name))
            if mesh is not None:
                names = tuple(n for n in names if mesh.shape[n] > 1)
            for n in names:
                if n in used:
                    raise ConfigError(
                        f"sharding rules: logical axes {used[n]!r} and {name!r} of one array {tuple(axes)} both map "
                        f"to mesh axis {n!r}; map one of them elsewhere (model.sharding)"
                    )
            if names and mesh is not None and shape is not None:
                size = math.prod(mesh.shape[n] for n in names)
                if shape[i] % size:
                    _log_replicated(name, int(shape[i]), names, size)
                    names = ()
            for n in names:
                used[n] = name
            spec.append(None if not names else names[0] if len(names) == 1 else names)
        return P(*spec)

    def sharding(self, mesh: Mesh, axes: Sequence[Optional[str]], shape: Sequence[int]) -> NamedSharding:
        return NamedSharding(mesh, self.spec(axes, shape, mesh))

    def devices(self, axis: str, mesh: Optional[Mesh]) -> int:
        """How many devices of ``mesh`` the logical ``axis`` is split over (1 without a mesh)."""
        if mesh is None:
            return 1
        return math.prod(mesh.shape[n] for n in _names(getattr(self, axis)))

    def batch_sharding(self, mesh: Mesh, ndim: int, shape: Optional[Sequence[int]] = None) -> NamedSharding:
        """An input whose first axis is the batch and whose other axes are replicated."""
        return NamedSharding(mesh, self.spec(("batch",) + (None,) * (ndim - 1), shape, mesh))

    def constrain(self, x: jax.Array, mesh: Optional[Mesh], axes: Sequence[Optional[str]]) -> jax.Array:
        """x with a sharding constraint by logical axes (inside a compiled function); unchanged
        without a mesh."""
        if mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, self.spec(axes, x.shape, mesh)))


_REPLICATED: set = set()


def _log_replicated(name: str, size: int, mesh_axes: tuple, mesh_size: int) -> None:
    key = (name, size, mesh_axes)
    if key not in _REPLICATED:
        _REPLICATED.add(key)
        log.info("sharding: logical axis %r of size %d is replicated: mesh axes %s (%d devices) do not divide it",
                 name, size, "x".join(mesh_axes), mesh_size)  # fmt: skip


def _names(target: Target) -> tuple[str, ...]:
    if target is None:
        return ()
    return (target,) if isinstance(target, str) else tuple(target)


DEFAULT_RULES = ShardingRules()


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


# Functions of the default rules, for code that has no model at hand.
def logical_to_spec(axes, shape=None, mesh=None) -> P:
    return DEFAULT_RULES.spec(axes, shape, mesh)


def named_sharding(mesh: Mesh, axes, shape) -> NamedSharding:
    return DEFAULT_RULES.sharding(mesh, axes, shape)


def batch_sharding(mesh: Mesh, ndim: int, shape=None) -> NamedSharding:
    return DEFAULT_RULES.batch_sharding(mesh, ndim, shape)
