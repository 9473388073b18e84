"""Put checkpoint tensors straight onto their shardings, one tensor at a time.

The target is an abstract model (`nnx.eval_shape`: shapes and logical axes, no memory). Each
checkpoint tensor is read, matched against the family's name table, transformed to our layout,
checked against the target shape, cast, and placed with `jax.make_array_from_callback`, so each
process only materialises the shards its own devices hold. Peak host memory is the finished
model plus about one tensor.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Callable, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from neuronjax import sharding as sh
from neuronjax.errors import CheckpointError
from neuronjax.models.config import ModelConfig
from neuronjax.models.decoder import Decoder

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
        pattern = re.compile("^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")
        rows.append((pattern, template, targets))
    return rows


def _expected_source(target: str, rows: list, prefix: str) -> str:
    """The checkpoint name that would have filled `target` (for error messages)."""
    for _, template, targets in rows:
        for target_template, _ in targets:
            pat = "^" + re.escape(target_template).replace(r"\{i\}", r"(?P<i>\d+)") + "$"
            m = re.match(pat, target)
            if m:
                return prefix + template.format(**m.groupdict())
    return "?"


def abstract_model(cfg: ModelConfig, dtype) -> tuple:
    model = nnx.eval_shape(lambda: Decoder(cfg, dtype, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    return graphdef, state


def target_sharding(mesh: Optional[Mesh], axes, shape):
    if mesh is None:
        return SingleDeviceSharding(jax.local_devices()[0])
    return sh.named_sharding(mesh, axes, shape)


def place(
    cfg: ModelConfig,
    dtype,
    mesh: Optional[Mesh],
    tensors: Iterable[tuple[str, Callable[[], np.ndarray]]],
    table: dict,
    prefixes: tuple[str, ...],
    source: str,
    ignore: tuple[str, ...] = (),
) -> tuple:
    """Build (graphdef, state, LoadReport) from an iterable of (checkpoint name, reader)."""
    dtype = jnp.dtype(dtype)
    graphdef, abstract = abstract_model(cfg, dtype)
    flat = {".".join(str(k) for k in path): var for path, var in nnx.to_flat_state(abstract)}
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
        live = [(t.format(**match.groupdict()), fn) for t, fn in targets]
        live = [(t, fn) for t, fn in live if t in flat]
        if not live:
            if cfg.tie_embeddings and short == "lm_head.weight":
                report.ignored.append((name, "output head tied to the embedding"))
            else:
                report.unexpected.append(name)
            continue
        array = read()
        for target, fn in live:
            var = flat[target]
            try:
                out = np.asarray(fn(array, cfg))
            except ValueError as e:
                raise CheckpointError(
                    f"{source}: tensor '{name}' has shape {tuple(array.shape)}, which does not fit "
                    f"'{target}' of shape {tuple(var.shape)} (the shape the model's config sets) ({e})"
                ) from None
            if out.shape != tuple(var.shape):
                raise CheckpointError(
                    f"{source}: tensor '{name}' has shape {tuple(array.shape)}; expected a tensor that "
                    f"gives '{target}' of shape {tuple(var.shape)} (the shape the model's config sets)"
                )
            out = out.astype(dtype, copy=False)
            sharding = target_sharding(mesh, var.get_metadata()["logical_axes"], out.shape)
            values[target] = jax.make_array_from_callback(out.shape, sharding, lambda idx, o=out: o[idx])
            del out
        del array
        report.loaded += 1

    missing = [t for t in flat if t not in values]
    if missing:
        names = [_expected_source(t, rows, used_prefix or prefixes[0]) for t in missing]
        raise CheckpointError(
            f"{source}: {len(missing)} tensor(s) missing from the checkpoint, e.g. "
            + ", ".join(f"'{n}' (for {t})" for n, t in list(zip(names, missing))[:5])
        )
    if report.unexpected:
        log.warning("%s", report.summary())
    state = nnx.from_flat_state(
        [(path, var.replace(values[".".join(str(k) for k in path)])) for path, var in nnx.to_flat_state(abstract)]
    )
    return graphdef, state, report
