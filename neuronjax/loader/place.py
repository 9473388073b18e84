"""Put checkpoint tensors straight onto their shardings, one tensor at a time.

The target is an abstract model (`nnx.eval_shape`: shapes and logical axes, no memory). Each
checkpoint tensor is read, matched against the family's name table, transformed to our layout,
checked against the target shape, cast, and placed with `jax.make_array_from_callback`, so each
process only materialises the shards its own devices hold. Peak host memory is about one tensor.

Block parameters are stacked over layers (``blocks.mlp.up`` is [layers, embed, mlp]); the tables
name one layer's tensor (``layers.{i}.mlp.up``), which is written into slice i of the stacked
array where it lives (an in-place update of the device array, its buffer donated), so no copy of
a whole stacked parameter is ever made on the host.

On one CPU device (no mesh, or a mesh of one device) the device's memory is the host's, and the
stacked arrays are filled in numpy instead and handed to the device once each: `jax.device_put`
takes a 64-byte-aligned host buffer as it is, so nothing is copied, and the per-layer device calls
(one per checkpoint tensor, 270 for SmolLM2, with a compile per shape) are saved. The parameters
are the same to the bit either way (tests/loader/test_place.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from typing import Callable, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from neuronjax.errors import CheckpointError
from neuronjax.models.config import ModelConfig
from neuronjax.models.decoder import Decoder, Placement
from neuronjax.sharding import DEFAULT_RULES, ShardingRules

log = logging.getLogger("neuronjax.loader")


@dataclasses.dataclass
class LoadReport:
    """What happened to every tensor of the checkpoint."""

    source: str
    loaded: int = 0  # checkpoint tensors used
    ignored: list = dataclasses.field(default_factory=list)  # (name, reason): known non-parameters
    unexpected: list = dataclasses.field(default_factory=list)  # names no table row uses

    def summary(self) -> str:
        s = f"{self.source}: {self.loaded} tensors loaded"
        if self.ignored:
            s += f", {len(self.ignored)} ignored ({self.ignored[0][1]}, ...)"
        if self.unexpected:
            s += f", {len(self.unexpected)} UNEXPECTED and not loaded: {self.unexpected[:5]}"
        return s


def _compile(table: dict) -> list:
    rows = []
    for template, targets in table.items():
        pattern = re.compile(
            "^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)") + "$"
        )
        rows.append((pattern, template, targets))
    return rows


def _expected_source(target: str, rows: list, prefix: str) -> str:
    """The checkpoint name that would have filled `target` (for error messages)."""
    block = re.match(r"^(.*) \(block (\d+)\)$", target)
    if block:
        target = block.group(1)
    for _, template, targets in rows:
        for target_template, _fn, *block_axis in targets:
            if bool(block_axis) != bool(block):
                continue
            pat = "^" + re.escape(target_template).replace(r"\{i\}", r"(?P<i>\d+)") + "$"
            m = re.match(pat, target)
            if m:
                return prefix + template.format(**m.groupdict(), **({"j": block.group(2)} if block else {}))
    return "?"


def abstract_model(cfg: ModelConfig, dtype, placement: Optional[Placement] = None) -> tuple:
    model = nnx.eval_shape(lambda: Decoder(cfg, dtype, rngs=nnx.Rngs(0), placement=placement))
    graphdef, state = nnx.split(model)
    return graphdef, state


def target_sharding(mesh: Optional[Mesh], axes, shape, rules: ShardingRules = DEFAULT_RULES):
    if mesh is None:
        return SingleDeviceSharding(jax.local_devices()[0])
    return rules.sharding(mesh, axes, shape)


_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
STACKED = "blocks."  # where the per-layer targets "layers.{i}.<name>" live, stacked: "blocks.<name>"


@functools.lru_cache(maxsize=None)
def _writer(sharding):
    """Write one layer (or one block of one layer) into a stacked array in place, at the start
    indices given (the stacked buffer is donated)."""
    return jax.jit(lambda stack, x, starts: jax.lax.dynamic_update_slice(stack, x[None].astype(stack.dtype), starts),
                   donate_argnums=0, out_shardings=sharding)  # fmt: skip


def _one_cpu_device(mesh: Optional[Mesh]) -> bool:
    """Whether the model sits on one CPU device, whose memory is the host's: the stacked arrays are
    then filled in numpy and moved once each."""
    devices = jax.local_devices()[:1] if mesh is None else list(mesh.devices.flat)
    return len(devices) == 1 and devices[0].platform == "cpu"


def _host_zeros(shape: tuple, dtype) -> np.ndarray:
    """Zeros on the host, 64-byte aligned: jax.device_put then hands the buffer to a CPU device as
    it is, without a copy."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(nbytes + 64, np.uint8)
    at = -raw.ctypes.data % 64
    return raw[at : at + nbytes].view(dtype).reshape(shape)


def _adoptable(x: np.ndarray) -> bool:
    """A fresh host array a CPU device can use as its buffer: contiguous, 64-byte aligned, and
    writeable (so neither a view of the checkpoint file's read-only map nor of a library's buffer)."""
    return x.flags.c_contiguous and x.flags.writeable and x.ctypes.data % 64 == 0


class _Stacks:
    """The stacked block parameters being filled, layer by layer (and, for the experts of a
    mixture of experts, block by block along one axis)."""

    def __init__(self, flat: dict, dtype, mesh, rules):
        self.flat, self.dtype, self.mesh, self.rules = flat, dtype, mesh, rules
        self.arrays: dict[str, jax.Array] = {}
        self.host: dict[str, np.ndarray] = {}  # key -> the stacked array being filled on the host
        self.on_host = _one_cpu_device(mesh)
        self.filled: dict[str, set] = {}  # key -> {(layer, block)}; block None for a whole layer

    def target(self, name: str, block_axis: Optional[str] = None, blocks: int = 1):
        """(stacked key, layer, per-layer shape of the piece, its logical axes, the axis position
        of its block or None) of a per-layer target, or None. With `block_axis`, the piece is one
        of `blocks` equal blocks of that logical axis (an expert's slice of the neurons)."""
        m = _LAYER.match(name)
        if m is None or STACKED + m.group(2) not in self.flat:
            return None
        key = STACKED + m.group(2)
        var = self.flat[key]
        layer = int(m.group(1))
        if layer >= var.shape[0]:
            return None
        axes = var.get_metadata()["logical_axes"][1:]
        shape, at = list(var.shape[1:]), None
        if block_axis is not None:
            at = axes.index(block_axis)
            shape[at] //= blocks
        return key, layer, tuple(shape), axes, at

    def write(self, key: str, layer: int, out: np.ndarray, at: Optional[int] = None, block: int = 0) -> None:
        var = self.flat[key]
        if self.on_host:
            if key not in self.host:
                self.host[key] = _host_zeros(var.shape, self.dtype)
                self.filled[key] = set()
            index = [layer] + [slice(None)] * out.ndim
            if at is not None:
                index[1 + at] = slice(block * out.shape[at], (block + 1) * out.shape[at])
            self.host[key][tuple(index)] = out
            self.filled[key].add((layer, None if at is None else block))
            return
        axes = var.get_metadata()["logical_axes"]
        sharding = target_sharding(self.mesh, axes, var.shape, self.rules)
        if key not in self.arrays:
            self.arrays[key] = jax.jit(lambda: jnp.zeros(var.shape, self.dtype), out_shardings=sharding)()
            self.filled[key] = set()
        one = target_sharding(self.mesh, axes[1:], out.shape, self.rules)
        x = jax.make_array_from_callback(out.shape, one, lambda idx: out[idx])
        starts = [layer] + [0] * out.ndim
        if at is not None:
            starts[1 + at] = block * out.shape[at]
        self.arrays[key] = _writer(sharding)(self.arrays[key], x, tuple(np.int32(v) for v in starts))
        self.filled[key].add((layer, None if at is None else block))

    def placed(self) -> dict[str, jax.Array]:
        """The stacked arrays on their devices (those filled on the host: one transfer each)."""
        for key in list(self.host):
            sharding = target_sharding(self.mesh, self.flat[key].get_metadata()["logical_axes"], self.flat[key].shape,
                                       self.rules)  # fmt: skip
            self.arrays[key] = jax.device_put(self.host.pop(key), sharding)
        return self.arrays

    def missing(self, blocks: int = 1) -> list[str]:
        """Per-layer target names (and their missing blocks) never written."""
        out = []
        for key, var in self.flat.items():
            if key.startswith(STACKED):
                done = self.filled.get(key, set())
                for i in range(var.shape[0]):
                    if (i, None) in done:
                        continue
                    have = {b for layer, b in done if layer == i and b is not None}
                    name = f"layers.{i}.{key[len(STACKED) :]}"
                    if have:
                        out += [f"{name} (block {b})" for b in range(blocks) if b not in have]
                    else:
                        out.append(name)
        return out


def place(
    cfg: ModelConfig,
    dtype,
    mesh: Optional[Mesh],
    tensors: Iterable[tuple[str, Callable[[], np.ndarray]]],
    table: dict,
    prefixes: tuple[str, ...],
    source: str,
    ignore: tuple[str, ...] = (),
    rules: ShardingRules = DEFAULT_RULES,
) -> tuple:
    """Build (graphdef, state, LoadReport) from an iterable of (checkpoint name, reader)."""
    dtype = jnp.dtype(dtype)
    placement = Placement(mesh, rules) if mesh is not None else None
    graphdef, abstract = abstract_model(cfg, dtype, placement)
    flat = {".".join(str(k) for k in path): var for path, var in nnx.to_flat_state(abstract)}
    stacks = _Stacks(flat, dtype, mesh, rules)
    rows = _compile(table)
    ignore_re = [re.compile("^" + p + "$") for p in ignore]
    values: dict[str, jax.Array] = {}
    report = LoadReport(source)
    used_prefix = ""

    for name, read in tensors:
        short = name
        for p in prefixes:
            if name.startswith(p):
                short, used_prefix = name[len(p) :], p
                break
        row = next(((m, targets) for pat, _, targets in rows if (m := pat.match(short))), None)
        if row is None:
            if any(r.match(short) for r in ignore_re):
                report.ignored.append((name, "buffer recomputed from the config"))
            else:
                report.unexpected.append(name)
            continue
        match, targets = row
        live = []
        for t, fn, *block_axis in targets:  # a third entry: the piece is expert {j}'s block of that axis
            target = t.format(**match.groupdict())
            if target in flat:
                live.append((target, fn, tuple(flat[target].shape), None))
            elif (stacked := stacks.target(target, *block_axis, blocks=cfg.num_experts or 1)) is not None:
                block = int(match.group("j")) if block_axis else 0
                if block_axis and block >= cfg.num_experts:
                    report.unexpected.append(name)
                    continue
                live.append((target if not block_axis else f"{target} (block {block})", fn, stacked[2],
                             (*stacked, block)))  # fmt: skip
        if not live:
            if cfg.tie_embeddings and short == "lm_head.weight":
                report.ignored.append((name, "output head tied to the embedding"))
            else:
                report.unexpected.append(name)
            continue
        array = read()
        for target, fn, shape, stacked in live:
            try:
                out = np.asarray(fn(array, cfg))
            except ValueError as e:
                raise CheckpointError(
                    f"{source}: tensor '{name}' has shape {tuple(array.shape)}, which does not fit "
                    f"'{target}' of shape {shape} (the shape the model's config sets) ({e})"
                ) from None
            if out.shape != shape:
                raise CheckpointError(
                    f"{source}: tensor '{name}' has shape {tuple(array.shape)}; expected a tensor that "
                    f"gives '{target}' of shape {shape} (the shape the model's config sets)"
                )
            out = out.astype(dtype, copy=False)
            if stacked is not None:
                key, layer, _, _, at, block = stacked
                stacks.write(key, layer, out, at, block)
            else:
                sharding = target_sharding(mesh, flat[target].get_metadata()["logical_axes"], out.shape, rules)
                if stacks.on_host and _adoptable(out):  # the device takes the buffer itself
                    values[target] = jax.device_put(out, sharding)
                else:
                    values[target] = jax.make_array_from_callback(out.shape, sharding, lambda idx, o=out: o[idx])
            del out
        del array
        report.loaded += 1

    missing = [t for t in flat if t not in values and not t.startswith(STACKED)] + stacks.missing(cfg.num_experts or 1)
    if missing:
        names = [_expected_source(t, rows, used_prefix or prefixes[0]) for t in missing]
        raise CheckpointError(
            f"{source}: {len(missing)} tensor(s) missing from the checkpoint, e.g. "
            + ", ".join(f"'{n}' (for {t})" for n, t in list(zip(names, missing))[:5])
        )
    if report.unexpected:
        log.warning("%s", report.summary())
    values.update(stacks.placed())
    state = nnx.from_flat_state(
        [(path, var.replace(values[".".join(str(k) for k in path)])) for path, var in nnx.to_flat_state(abstract)]
    )
    return graphdef, state, report
