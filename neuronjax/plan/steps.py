"""The real steps of a run, compiled ahead of time for a mesh of devices that need not exist.

Everything is abstract: the model is built with `nnx.eval_shape` from its config (no weights),
every input is a `jax.ShapeDtypeStruct` carrying the sharding it would have, and the functions
compiled are the ones a run calls (`attribution.engine.attribute_compiled`, the methods' updates,
`cached.score_last_position` after `cached.compute_prefix_cache`). The compiler's
`memory_analysis()` then says what each chip would hold, and a step too large for a TPU's HBM fails
to compile (RESOURCE_EXHAUSTED), which is reported as "does not fit" with the compiler's message.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from neuronjax import cached
from neuronjax.attribution.engine import PromptBatch, attribute_compiled
from neuronjax.evaluation.scoring import GROUP
from neuronjax.intervention import Intervention
from neuronjax.loader.place import abstract_model
from neuronjax.methods.base import ItemBlock
from neuronjax.models.config import ModelConfig
from neuronjax.models.decoder import Placement
from neuronjax.sharding import ShardingRules

GIB = 1 << 30
CANDIDATES = 4  # tokenizations per option (letters: "A", " A", ...)


@dataclasses.dataclass
class StepPlan:
    """What one compiled step needs per chip, or why it did not compile."""

    name: str
    batch: int
    fits: bool
    arguments: int = 0  # bytes per chip
    temporaries: int = 0
    outputs: int = 0
    aliased: int = 0
    message: str = ""  # the compiler's reason when it does not fit
    seconds: float = 0.0  # compile time

    @property
    def total(self) -> int:
        return self.arguments + self.temporaries + self.outputs - self.aliased

    def to_json(self) -> dict:
        gib = {k: round(getattr(self, k) / GIB, 3) for k in ("arguments", "temporaries", "outputs")}
        exact = {k: getattr(self, k) for k in ("arguments", "temporaries", "outputs", "aliased", "total")}
        return {"fits": self.fits, "batch": self.batch, "per_chip_gib": {**gib, "total": round(self.total / GIB, 3)},
                "per_chip_bytes": exact,
                "compile_seconds": round(self.seconds, 1), **({"message": self.message} if self.message else {})}  # fmt: skip


def _abstract(shape, dtype, sharding):
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=sharding)


def abstract_params(cfg: ModelConfig, dtype, mesh: Mesh, rules: ShardingRules):
    """(graphdef, state of ShapeDtypeStructs on their shardings, parameter bytes per chip)."""
    graphdef, state = abstract_model(cfg, dtype, Placement(mesh, rules))
    flat, per_chip = [], 0
    for path, var in nnx.to_flat_state(state):
        sharding = rules.sharding(mesh, var.get_metadata()["logical_axes"], var.shape)
        shard = sharding.shard_shape(tuple(var.shape))
        per_chip += int(np.prod(shard)) * jnp.dtype(var.dtype).itemsize
        flat.append((path, var.replace(_abstract(var.shape, var.dtype, sharding))))
    return graphdef, nnx.from_flat_state(flat), per_chip


def _batch_input(mesh, rules, shape, dtype):
    return _abstract(shape, dtype, rules.batch_sharding(mesh, len(shape), shape))


def compile_step(name: str, batch: int, fn: Callable, *args, static: Optional[dict] = None,
                 hbm: Optional[int] = None) -> StepPlan:  # fmt: skip
    """Lower and compile fn(*args, **static) (fn already jitted); its memory per device, or the
    compiler's refusal. With `hbm` (bytes per device), a step whose arguments, temporaries and
    outputs add up to more does not fit either (the compiler does not refuse every such step)."""
    import time

    t0 = time.perf_counter()
    try:
        compiled = fn.lower(*args, **(static or {})).compile()
    except Exception as err:  # XlaRuntimeError (RESOURCE_EXHAUSTED) and friends
        text = str(err)
        if "RESOURCE_EXHAUSTED" not in text and "out of memory" not in text.lower() and "exceeds" not in text:
            raise
        return StepPlan(name, batch, False, message=_first_lines(text), seconds=time.perf_counter() - t0)
    mem = compiled.memory_analysis()
    step = StepPlan(name, batch, True, arguments=int(mem.argument_size_in_bytes),
                    temporaries=int(mem.temp_size_in_bytes), outputs=int(mem.output_size_in_bytes),
                    aliased=int(mem.alias_size_in_bytes), seconds=time.perf_counter() - t0)  # fmt: skip
    if hbm is not None and step.total > hbm:
        step.fits = False
        step.message = f"needs {step.total / GIB:.2f} GiB per device; a device has {hbm / GIB:.2f} GiB of HBM"
    return step


def _first_lines(text: str, n: int = 4) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[:n])


def _replicated(mesh):
    """A whole copy on every device of the mesh."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _shared_input(mesh, shared: int):
    """The [1, P] prefix common to a batch's prompts (`cached.split_prefix`), on every device."""
    return _abstract((1, shared), jnp.int32, _replicated(mesh))


def identify_step(cfg, graphdef, state, mesh, rules, batch: int, seq: int, steps: tuple, groups: int,
                  method: str = "ig", hbm: Optional[int] = None, shared: int = 0,
                  replay: str = "grouped") -> StepPlan:  # fmt: skip
    """The prompt pass and the IG step of `batch` prompts of `seq` tokens (one `attribute` call;
    a run compiles the two as separate programs with the cache passed between them; the plan
    compiles them as one, which holds that cache and the replay's buffers at once as the run's
    second program does).
    shared: the first `shared` tokens of the prompts are common to the batch and run once (the
    rows are then their seq - shared remaining tokens), as `attribute` runs a task's prompts.
    replay: "grouped" or "joined" (`attribution.engine.resolve_replay`)."""
    rows = seq - shared
    pb = PromptBatch(
        input_ids=_batch_input(mesh, rules, (batch, rows), jnp.int32),
        attention_mask=_batch_input(mesh, rules, (batch, rows), jnp.int32),
        option_ids=_batch_input(mesh, rules, (batch, 4, CANDIDATES), jnp.int32),
        gold=_batch_input(mesh, rules, (batch,), jnp.int32),
    )
    prefix = _shared_input(mesh, shared) if shared else None
    return compile_step("identify", batch, attribute_compiled, state, pb, prefix,
                        static=dict(graphdef=graphdef, method=method, steps=steps, groups=groups, target="ce",
                                    replay=replay), hbm=hbm)  # fmt: skip


def method_step(cfg, mesh, rules, methods, items: int, proxies: int, hbm: Optional[int] = None) -> StepPlan:
    """Every streamed method's update over one block of `items` complete items."""
    grid = (cfg.num_layers, cfg.intermediate_size)
    streamed = [m for m in methods if not m.derived]
    needs = {n for m in streamed for n in m.needs}
    states = {m.name: jax.eval_shape(lambda m=m: m.init(*grid)) for m in streamed}
    replicated = _replicated(mesh)
    states = jax.tree.map(lambda x: _abstract(x.shape, x.dtype, replicated), states)
    arrays = {k: _batch_input(mesh, rules, (items, proxies) + grid, jnp.float32) for k in needs}
    block = ItemBlock(valid=_batch_input(mesh, rules, (items,), bool),
                      correct=_batch_input(mesh, rules, (items, proxies), bool), **arrays)  # fmt: skip
    update = jax.jit(lambda states, block: {m.name: m.update(states[m.name], block) for m in streamed})
    return compile_step("methods", items, update, states, block, hbm=hbm)


def evaluate_step(cfg, graphdef, state, mesh, rules, batch: int, seq: int, hbm: Optional[int] = None,
                  shared: int = 0) -> StepPlan:  # fmt: skip
    """One group of last-position interventions scored on a batch: the prompt's prefix cache, then
    the last token once per intervention. shared: as in `identify_step` (the cache is then
    `cached.compute_shared_prefix_cache`'s)."""
    grid = (cfg.num_layers, cfg.intermediate_size)
    replicated = _replicated(mesh)
    ivs = Intervention(_abstract((GROUP,) + grid, jnp.float32, replicated),
                       _abstract((GROUP,) + grid, jnp.float32, replicated), "last")  # fmt: skip

    @jax.jit
    def step(state, ids, mask, options, continuation, ivs, prefix):
        if prefix is None:
            cache = cached.compute_prefix_cache(state, ids, mask, graphdef=graphdef)
        else:
            cache = cached.compute_shared_prefix_cache(state, prefix, ids, mask, graphdef=graphdef)
        return cached.score_last_position(state, cache, ids, options, continuation, ivs, graphdef=graphdef,
                                          kind="first_token", pad_id=0)  # fmt: skip

    rows = seq - shared
    args = (state, _batch_input(mesh, rules, (batch, rows), jnp.int32), _batch_input(mesh, rules, (batch, rows), jnp.int32),
            _batch_input(mesh, rules, (batch, 4, CANDIDATES), jnp.int32), _batch_input(mesh, rules, (batch, 4, 0), jnp.int32),
            ivs, _shared_input(mesh, shared) if shared else None)  # fmt: skip
    return compile_step("evaluate", batch, step, *args, hbm=hbm)
