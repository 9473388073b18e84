"""The sweep file: one YAML under configs/sweeps/ that expands into many runs.

    name: smollm2_tasks
    base: ../default.yaml                # the run config every point starts from (relative to this file)
    output: runs/sweeps                  # points go to <output>/<name>/<point>/ (relative to the working directory)
    overrides:                           # dotted run-config keys set on every point
      task.split.max_identify: 40        # task.<key>: a key of the task YAML (as on the command line)
      identify.attribution.steps: 8
    grid:                                # dotted run-config key -> list of values; the points are their product
      task: [../tasks/world_facts.yaml, ../tasks/arithmetic.yaml]
      identify.methods: [[neuronllm, random], [kn_ig, random]]
      identify.k: [50, 100]
    labels:                              # optional: names of the values in run names and tables
      identify.methods: [nllm, kn]       # one per value, in order (null: the automatic label)

`load_sweep` checks the file before any point is expanded: its own keys through
`configlib.parse`, and every dotted key of `overrides` and `grid` through `configlib.check_key`
against the run config (`task.<key>` against the task config), with the nearest valid key when
one is misspelled. Every value becomes a `configlib.Override` that says where it was written
(`sweep.yaml:9: grid.identify.k[1]`) and resolves relative paths against the sweep file's folder;
the values themselves are checked by the run config's own loader when the points are expanded
(`neuronjax.sweep.plan`).

A point's run name joins the labels of its values with "-", e.g. `world_facts-neuronllm+random-k50`.
Automatic labels: a path's file name without extension (path fields such as `task`, `model.path`,
`cross_tasks`; null model: `embedded`), list items joined with "+", numbers prefixed with the
key's last part (`k50`, `seed1`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from typing import Any

from neuronjax import configlib as cl
from neuronjax.config import RunConfig
from neuronjax.configlib import Override
from neuronjax.errors import ConfigError

RESERVED = {  # run-config keys a sweep sets itself, or that have another spelling
    "name": "the run name is derived from the point's labels",
    "output": "set the sweep's own `output`",
    "source": "filled in when the config is loaded",
    "task_overrides": "use task.<key> (a key of the task YAML) instead",
}
_LABEL_OK = re.compile(r"^[A-Za-z0-9_.+=-]+$")


@dataclasses.dataclass(frozen=True)
class SweepFile:
    """A sweep file as written (the keys `configlib.parse` checks)."""

    name: str  # the sweep's folder under `output` (letters, digits, _ . + = -)
    base: str = dataclasses.field(metadata=cl.PATH_FILE)  # the run config every point starts from
    grid: dict  # dotted key -> list of values; the points are their product
    output: str = "runs/sweeps"  # points go to <output>/<name>/<point>/ (relative to the working directory)
    overrides: dict = dataclasses.field(default_factory=dict)  # dotted key -> value, on every point
    labels: dict = dataclasses.field(default_factory=dict)  # grid key -> one label per value (null: automatic)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A checked sweep: every value as the override that sets it, with its origin."""

    name: str  # the sweep's folder under `output`
    base: str  # the base run config (absolute)
    grid: dict  # dotted key -> tuple of Overrides, one per value, in file order
    labels: dict  # dotted key -> tuple of value labels (one per value)
    overrides: tuple = ()  # Overrides on every point
    output: str = "runs/sweeps"
    source: str = ""  # the sweep YAML (absolute)
    file: str = ""  # the sweep YAML as it was named (how messages name it)

    @property
    def sweep_dir(self) -> str:
        return os.path.join(self.output, self.name)

    def shape(self) -> str:
        return " x ".join(f"{k} ({len(v)})" for k, v in self.grid.items())


# ----------------------------------------------------------------------------- keys


@functools.lru_cache(maxsize=None)
def _override_keys():
    """The keys an override may name: the run config's, with `task` a section holding the task
    config's keys (`task.split.seed`), as `neuronjax.config` routes them."""
    from neuronjax.tasks.config import TaskConfig

    hints = typing.get_type_hints(RunConfig)
    fields = [(f.name, TaskConfig if f.name == "task" else hints[f.name]) for f in dataclasses.fields(RunConfig)]
    return dataclasses.make_dataclass("RunConfigKeys", fields)


def check_override_key(key: Any, where: str) -> None:
    """A dotted key a sweep may set on its points; errors start with `where` and suggest the
    nearest valid key."""
    if not isinstance(key, str):
        raise ConfigError(f"{where}: {key!r} is not a dotted key")
    top = key.split(".")[0]
    if top in RESERVED:
        raise ConfigError(f"{where}: {key}: not allowed in a sweep ({RESERVED[top]})")
    cl.check_key(_override_keys(), key, where)


def key_field(key: str):
    """The config field a dotted override key names (run config, or task config for task.<key>)."""
    from neuronjax.tasks.config import TaskConfig

    if key.startswith("task."):
        return cl.field_at(TaskConfig, key[len("task.") :])
    return cl.field_at(RunConfig, key)


def overlapping(a: str, b: str) -> bool:
    """Whether setting one key also sets (part of) the other: equal, or one a section of the other
    (`task` is the task YAML's path, not the section of the task.<key> keys)."""
    short, long = sorted((a, b), key=len)
    return a == b or (short != "task" and long.startswith(short + "."))


# ----------------------------------------------------------------------------- labels


def _leaf(key: str) -> str:
    return key.split(".")[-1]


def _stem(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    for ext in (".yaml", ".yml", ".gguf"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("_") or "_"


def auto_label(key: str, value: Any) -> str:
    """The default label of a grid value (see the module docstring)."""
    if key == "model.path" and value is None:
        return "embedded"
    if value is None:
        return f"no_{_leaf(key)}"
    field = key_field(key)
    if field is not None and field.metadata.get("path"):
        if isinstance(value, str):
            return _sanitize(_stem(value))
        if isinstance(value, list):
            return "+".join(_sanitize(_stem(str(p))) for p in value) or f"no_{_leaf(key)}"
    if isinstance(value, bool):
        return f"{_leaf(key)}_{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"{_leaf(key)}{value}"
    if isinstance(value, str):
        return _sanitize(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return f"no_{_leaf(key)}"
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return _leaf(key) + "+".join(str(v) for v in value)
        return "+".join(auto_label(key, v) if isinstance(v, (list, tuple, dict)) else _sanitize(str(v)) for v in value)
    if isinstance(value, dict):
        return "_".join(f"{_sanitize(str(k))}{auto_label(str(k), v)}" for k, v in value.items()) or f"no_{_leaf(key)}"
    return _sanitize(str(value))


def _labels(key: str, values: list, given: Any, source: cl.Source) -> tuple[str, ...]:
    """One label per grid value: the given ones, automatic ones for null; distinct."""
    if given is None:
        given = [None] * len(values)
    if not isinstance(given, list) or len(given) != len(values):
        raise source.error(("labels", key), f"expected a list of {len(values)} labels (one per grid value, "
                           f"null: automatic), got {given!r}")  # fmt: skip
    out = []
    for i, (value, label) in enumerate(zip(values, given)):
        if label is None:
            label = auto_label(key, value)
        elif not isinstance(label, (str, int, float)) or isinstance(label, bool) or not _LABEL_OK.match(str(label)):
            raise ConfigError(f"{source.where(('labels', key))}[{i}]: expected a name of letters, digits, "
                              f"_ . + = -, got {label!r}")  # fmt: skip
        label = str(label)
        if label in out:
            other = values[out.index(label)]
            raise source.error(("grid", key), f"values {other!r} and {value!r} both get the label {label!r}; "
                               f"give them distinct names under labels.{key}")  # fmt: skip
        out.append(label)
    return tuple(out)


# ----------------------------------------------------------------------------- loading


def _key_where(source: cl.Source, section: str, key: str) -> str:
    """'sweep.yaml:12: grid': the line of `key` in `section`, for check_key (which names the key)."""
    line = source.lines.get((section, key))
    return f"{source.file}:{line}: {section}" if line else f"{source.file}: {section}"


def load_sweep(path: str) -> SweepConfig:
    """Read and check a sweep YAML: every key, every grid and override key, every label; errors
    name the file, the line and the dotted key."""
    raw, source = cl.read_yaml(path, "sweep")
    here = os.path.dirname(os.path.abspath(path))
    spec = cl.parse(SweepFile, raw, source)
    if not _LABEL_OK.match(spec.name):
        raise source.error(("name",), f"expected a folder name (letters, digits, _ . + = -), got {spec.name!r}")
    if not os.path.exists(spec.base):
        raise source.error(("base",), f"{spec.base} does not exist")
    if not spec.output:
        raise source.error(("output",), "expected a directory, got an empty name")

    overrides = []
    for key, value in spec.overrides.items():
        check_override_key(key, _key_where(source, "overrides", key))
        overrides.append(Override(key, value, source.where(("overrides", key)), here))
    if not spec.grid:
        raise source.error(("grid",), "expected a mapping of dotted run-config keys to lists of values, got {}")
    grid = {}
    for key, values in spec.grid.items():
        check_override_key(key, _key_where(source, "grid", key))
        both = [ov.key for ov in overrides if overlapping(ov.key, key)]
        if both:
            raise source.error(("grid", key), f"also set in overrides ({both[0]}); set it in one place")
        if not isinstance(values, list) or not values:
            raise source.error(("grid", key), f"expected a non-empty list of values, got {values!r}")
        for i, v in enumerate(values):
            if v in values[:i]:
                raise source.error(("grid", key), f"value {v!r} appears twice")
        where = source.where(("grid", key))
        grid[key] = tuple(Override(key, v, f"{where}[{i}]", here) for i, v in enumerate(values))
    for a in grid:
        for b in grid:
            if a < b and overlapping(a, b):
                raise source.error(("grid", b), f"overlaps the grid key {a}; keep one of them")

    for key in spec.labels:
        if key not in grid:
            raise source.error(("labels", key), f"not a grid key{cl.suggest(key, grid)}; grid keys are {list(grid)}")
    labels = {key: _labels(key, [ov.value for ov in ovs], spec.labels.get(key), source) for key, ovs in grid.items()}
    return SweepConfig(name=spec.name, base=spec.base, grid=grid, labels=labels, overrides=tuple(overrides),
                       output=spec.output, source=os.path.abspath(path), file=path)  # fmt: skip
