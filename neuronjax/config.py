"""Run configuration: one YAML file under configs/ says which model, which task, which methods
and what to evaluate.

    name: world_facts_default
    task: tasks/world_facts.yaml        # a task YAML, relative to this file
    model: {path: null, dtype: float32}  # null: the embedded SmolLM2-135M-Instruct
    identify:
      methods: [neuronllm, random]
      k: 100
      z: 500
      attribution: {method: ig, steps: 16}
      params: {qrnca: {threshold: 0.3}}  # per-method hyper-parameters
    evaluate: {modes: [suppress_good, suppress_bad, enhancer, degrader], random_seeds: 3}
    task_overrides: {split.max_identify: 120}  # dotted keys applied to the task YAML
    output: runs                         # results go to <output>/<name>/ (relative to the working directory)

Every key is checked: an unknown key or a value of the wrong type is an error naming the file
and the dotted key. Command-line overrides are dotted `key=value` pairs (values parsed as YAML);
`task.<key>=...` overrides go to the task's own YAML.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Literal, Optional

import yaml

from neuronjax.evaluate import EvaluateConfig
from neuronjax.identify import AttributionConfig
from neuronjax.tasks.config import _check_type


@dataclasses.dataclass(frozen=True)
class ModelSection:
    path: Optional[str] = None  # checkpoint directory or .gguf; null = the embedded default model
    dtype: Literal["float32", "bfloat16"] = "float32"
    # device mesh {data, fsdp, tensor: size}; data takes the devices the others leave. Empty: one
    # device when there is one, else every device (of every process) on the data axis.
    mesh: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class IdentifySection:
    methods: tuple[str, ...] = ("neuronllm", "random")  # see neuronjax.methods.METHODS
    k: int = 100  # good and bad set size (every method)
    z: int = 500  # per-item set size of NeuronLLM and its ablations
    block_items: int = 16  # items per compiled scoring update
    checkpoint_every: int = 20  # global batches between resumable-state checkpoints (0: none)
    attribution: AttributionConfig = AttributionConfig()
    params: dict = dataclasses.field(default_factory=dict)  # {method: {hyper-parameter: value}}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    name: str  # the run's name: results go to <output>/<name>
    task: str  # task YAML (relative paths resolve against this file's folder)
    model: ModelSection = ModelSection()
    identify: IdentifySection = IdentifySection()
    evaluate: EvaluateConfig = EvaluateConfig()
    cross_tasks: tuple[str, ...] = ()  # other task YAMLs the run's neurons are also evaluated on
    output: str = "runs"  # relative paths resolve against the current directory
    source: str = ""  # the YAML file this config came from (filled in by load_run_config)
    task_overrides: dict = dataclasses.field(default_factory=dict)  # dotted task keys on top of the task YAML
    # (also given on the command line as task.<key>=value)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.output, self.name)


def build(cls, raw: Any, where: str):
    """A dataclass instance from plain data, every key and type checked (nested dataclasses
    recurse; errors name `where` and the dotted key)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {names}")
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = build(hint, value if value is not None else {}, f"{where}.{key}")
        elif hint is dict:
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key}: expected a mapping, got {value!r}")
            values[key] = value
        else:
            values[key] = _check_type(value, hint, f"{where}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def parse_overrides(pairs: list[str]) -> dict:
    """['identify.k=50', 'task.split.seed=1'] -> {'identify.k': 50, 'task.split.seed': 1}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"override {pair!r}: expected dotted.key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _set_dotted(raw: dict, dotted: str, value: Any, where: str) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"{where}: override {dotted!r}: {key!r} is not a section")
        node = child
    node[leaf] = value


def apply_overrides(raw: dict, overrides: Optional[dict], where: str) -> dict:
    """Set the dotted overrides in `raw`; returns the `task.`-prefixed ones (keys without the
    prefix), which belong to the task YAML."""
    task_overrides = {}
    for dotted, value in (overrides or {}).items():
        if dotted.startswith("task."):
            task_overrides[dotted[len("task.") :]] = value
        else:
            _set_dotted(raw, dotted, value, where)
    return task_overrides


def load_run_config(path: str, overrides: Optional[dict] = None) -> RunConfig:
    """Read a run YAML and apply dotted overrides."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such run config")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    task_overrides = apply_overrides(raw, overrides, path)
    for key in ("name", "task"):
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r}")
    here = os.path.dirname(os.path.abspath(path))

    def resolve(p):
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(here, p))

    if isinstance(raw.get("task"), str):
        raw["task"] = resolve(raw["task"])
    if isinstance(raw.get("cross_tasks"), list):
        raw["cross_tasks"] = [resolve(p) if isinstance(p, str) else p for p in raw["cross_tasks"]]
    model = raw.get("model") or {}
    if isinstance(model, dict) and isinstance(model.get("path"), str):
        model["path"] = resolve(model["path"])
    raw["source"] = os.path.abspath(path)
    from_file = raw.get("task_overrides") or {}
    if not isinstance(from_file, dict):
        raise ValueError(f"{path}: task_overrides: expected a mapping of dotted task keys, got {from_file!r}")
    raw["task_overrides"] = {**from_file, **task_overrides}
    config = build(RunConfig, raw, path)
    from neuronjax.methods import make_methods

    make_methods(config.identify, path)  # method names and hyper-parameters checked now, not after loading
    from neuronjax.tasks.config import load_task_config

    # The task YAMLs and the task.* overrides are checked now too (misspelled keys included).
    load_task_config(config.task, config.task_overrides)
    for cross in config.cross_tasks:
        load_task_config(cross)
    return config


def to_dict(config: RunConfig) -> dict:
    return dataclasses.asdict(config)
