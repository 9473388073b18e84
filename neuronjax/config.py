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

Every key is checked by `neuronjax.configlib` when the file is read, the task YAML and the
methods' hyper-parameters included, before any model loads. Command-line overrides are dotted
`key=value` pairs (values parsed as YAML); `task.<key>=...` overrides go to the task's own YAML.
`neuronjax config show CONFIG [overrides]` prints the resolved config with every key.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional, Sequence, Union

from neuronjax import configlib as cl
from neuronjax.confighelp import show as show_config
from neuronjax.confighelp import to_plain
from neuronjax.configlib import Override
from neuronjax.errors import ConfigError
from neuronjax.intervention import MODES as ALL_MODES

DEFAULT_MODES = ("suppress_good", "suppress_bad", "enhancer", "degrader")


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """Which checkpoint, in which dtype, on which device mesh."""

    # checkpoint directory, .gguf, or Hugging Face repo id (org/name, from the local Hugging Face
    # cache); null = the embedded SmolLM2-135M-Instruct
    path: Optional[str] = dataclasses.field(default=None, metadata=cl.PATH_FILE_OR_NAME)
    # branch, tag or commit hash of a repo id in `path` (null: main); the sets record the commit
    revision: Optional[str] = None
    dtype: Literal["float32", "bfloat16"] = "float32"  # parameter and activation dtype
    # device mesh {data, fsdp, tensor: size}; data takes the devices the others leave. Empty: one
    # device when there is one, else every device (of every process) on the data axis.
    mesh: dict[str, int] = dataclasses.field(default_factory=dict)
    # sharding rules on top of the defaults: logical axis -> mesh axis, a list of them, or null
    # (e.g. {mlp: null} keeps the neurons whole on every device; see neuronjax.sharding)
    sharding: dict[str, Union[None, str, list[str]]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.revision is None:
            return
        if not self.revision.strip():
            raise ConfigError("revision = '': expected a branch, tag or commit hash, or null")
        if self.path is None or os.path.exists(self.path):
            what = "null (the embedded model)" if self.path is None else f"the local path {self.path}"
            raise ConfigError(f"revision = {self.revision!r} applies to a Hugging Face repo id; path is {what}")


@dataclasses.dataclass(frozen=True)
class AttributionConfig:
    """How neurons are attributed (NeuronLLM step 4)."""

    method: Literal["ig", "grad_x_act"] = "ig"  # integrated gradients, or the one-step gradient x activation
    steps: int = 16  # IG nodes m (gradients of F per layer, the cost); ignored by grad_x_act
    # IG quadrature over alpha in [0, 1]: gauss_legendre, right_riemann (alpha = k/m, the rule of the
    # runs in docs/results) or trapezoid (both ends, m >= 2). At m = 16 Gauss-Legendre was 5x closer to
    # the converged IG than right Riemann at the same cost (docs/attribution.md, Quadrature)
    rule: Literal["right_riemann", "trapezoid", "gauss_legendre"] = "gauss_legendre"
    # layer groups of the IG staircase (speed / compile-time trade-off); null: 8 when the replay is
    # joined, 4 when grouped (`attribution.engine.resolve_groups`)
    groups: Optional[int] = None
    # auto (joined on CPU, grouped on accelerators), grouped (one forward and backward pass per
    # layer group, holding one group's values) or joined (one for all groups, each group's
    # variants joining at its first layer: fewer passes over the weights, more memory at once);
    # the same scores either way (docs/attribution.md)
    replay: Literal["auto", "grouped", "joined"] = "auto"
    # nodes for single layers instead of `steps`, {layer: m} (negative: from the last layer), e.g.
    # {0: 32}: the embedded model's first layer needs many nodes, the others few (docs/attribution.md)
    layer_steps: dict[str, int] = dataclasses.field(default_factory=dict)
    # the token prefix every prompt of a batch starts with (role block, demonstration) runs once per
    # batch instead of once per prompt; false: every prompt runs whole (the same scores up to
    # rounding: 1.1e-5 of the largest on SmolLM2, docs/performance.md, Shared prefixes)
    share_prefix: bool = True

    def __post_init__(self):
        for key in ("steps", "groups"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"attribution.{key} = {getattr(self, key)}: expected >= 1"
                                  + (" (or null for the replay's default)" if key == "groups" else ""))  # fmt: skip
        if self.rule == "trapezoid" and self.steps < 2:
            raise ConfigError(f"attribution.steps = {self.steps}: the trapezoid rule needs >= 2 nodes (both ends)")
        from neuronjax.attribution.quadrature import min_nodes

        low = min_nodes(self.rule)
        for key, m in self.layer_steps.items():
            try:
                int(key)
            except ValueError:
                raise ConfigError(f"attribution.layer_steps: key {key!r} is not a layer index "
                                  "(an integer; negative counts from the last layer)") from None  # fmt: skip
            if m < low:
                raise ConfigError(f"attribution.layer_steps.{key} = {m}: expected >= {low} nodes for rule {self.rule}")

    def schedule(self, num_layers: int) -> tuple:
        """IG nodes per layer for a model of num_layers layers (`quadrature.layer_schedule`)."""
        from neuronjax.attribution.quadrature import layer_schedule

        try:
            return layer_schedule(num_layers, self.steps, self.layer_steps)
        except ValueError as e:
            raise ConfigError(f"attribution.{e}") from None


@dataclasses.dataclass(frozen=True)
class IdentifySection:
    """Which methods find the neurons, with which set sizes."""

    methods: tuple[str, ...] = ("neuronllm", "random")  # see neuronjax.methods.METHODS
    k: int = 100  # good and bad set size (every method)
    z: int = 500  # per-item set size of NeuronLLM and its ablations
    block_items: int = 16  # items per compiled scoring update
    checkpoint_every: int = 20  # global batches between resumable-state checkpoints (0: none)
    attribution: AttributionConfig = AttributionConfig()  # how neurons are attributed
    params: dict[str, dict] = dataclasses.field(default_factory=dict)  # {method: {hyper-parameter: value}}

    def __post_init__(self):
        if not self.methods:
            raise ConfigError("methods: the list is empty; name at least one method")
        if self.block_items < 1:
            raise ConfigError(f"block_items = {self.block_items}: expected >= 1")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every = {self.checkpoint_every}: expected >= 0 (0: no checkpoints)")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """What the held-out evaluation measures."""

    modes: tuple[str, ...] = DEFAULT_MODES  # intervention modes applied to every set ("none" is always measured)
    all_positions: bool = False  # edit every prompt position instead of the last one
    set_value: float = 0.0  # the constant of the set_good / set_bad modes
    random_seeds: int = 3  # random controls per (set, mode), pooled
    bootstrap: int = 1000  # item resamples for the 95% intervals
    seed: int = 0  # seeds the resamples and the random controls
    k_values: tuple[int, ...] = ()  # accuracy against K: re-select every set at these K
    curve_modes: tuple[str, ...] = ("suppress_good", "suppress_bad")  # modes of the K curve
    methods: tuple[str, ...] = ()  # sets to evaluate (empty: all)
    # pairs [a, b] of methods: a's accuracy minus b's in every mode, paired over the same items
    # and resamples (e.g. [[learned, neuronllm]]: two ways of choosing K neurons head to head)
    compare: tuple[tuple[str, str], ...] = ()
    # neuron cards (cards.json, the report's "Neuron cards"): the main method's strongest good and
    # bad neurons given one each, per side; costs one unedited pass over the held-out prompts; 0: none
    cards: int = 8
    # last-position interventions: the token prefix common to a batch's prompts runs once per batch
    # (false: every prompt's cache from its whole prompt; the same scores up to rounding)
    share_prefix: bool = True

    def __post_init__(self):
        allowed = [m for m in ALL_MODES if m != "none"]
        for key in ("modes", "curve_modes"):
            for mode in getattr(self, key):
                if mode not in allowed:
                    raise ConfigError(f"{key}: {mode!r} unknown{cl.suggest(mode, allowed)}; expected some of {allowed}")
        for key in ("random_seeds", "bootstrap"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} = {getattr(self, key)}: expected >= 1")
        if self.cards < 0:
            raise ConfigError(f"cards = {self.cards}: expected >= 0 (0: no neuron cards)")
        for k in self.k_values:
            if k < 1:
                raise ConfigError(f"k_values: {k} is not a positive neuron count")
        for j, pair in enumerate(self.compare):
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ConfigError(f"compare[{j}] = {list(pair)}: expected two different method names [a, b]")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run: a model, a task, the methods that find neurons and what to evaluate."""

    name: str  # the run's name: results go to <output>/<name>
    task: str = dataclasses.field(metadata=cl.PATH_FILE)  # task YAML (relative to the file that names it)
    model: ModelSection = ModelSection()  # which checkpoint, dtype and mesh
    identify: IdentifySection = IdentifySection()  # methods and set sizes
    evaluate: EvaluateConfig = EvaluateConfig()  # what the held-out evaluation measures
    # other task YAMLs the run's neurons are also evaluated on
    cross_tasks: tuple[str, ...] = dataclasses.field(default=(), metadata=cl.PATH_FILE)
    output: str = "runs"  # results folder (relative paths resolve against the working directory)
    # the YAML file this config came from (filled in when it is read)
    source: str = dataclasses.field(default="", metadata={"internal": True})
    # dotted task keys on top of the task YAML (also given on the command line as task.<key>=value)
    task_overrides: dict = dataclasses.field(default_factory=dict)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.output, self.name)


Overrides = Union[None, dict, Sequence[Override]]


def load_run_config(path: str, overrides: Overrides = None) -> RunConfig:
    """Read a run YAML, apply dotted overrides (`task.<key>` ones go to the task YAML) and check
    everything: the run config, its methods' hyper-parameters, its task YAMLs."""
    raw, source = cl.read_yaml(path, "run config")
    return _finish(raw, source, cl.as_overrides(overrides), os.path.abspath(path))


def config_of_run(run_dir: str, overrides: Overrides = None) -> RunConfig:
    """The config a run directory was made with (its config.yaml), with overrides applied; the
    name and output are the directory's own."""
    from neuronjax.run import CONFIG

    path = os.path.join(run_dir, CONFIG)
    if not os.path.exists(path):
        raise ConfigError(f"{run_dir}: no {CONFIG}; not a neuronjax run directory")
    raw, source = cl.read_yaml(path, "run config")
    raw["output"] = os.path.dirname(os.path.abspath(run_dir))
    raw["name"] = os.path.basename(os.path.abspath(run_dir))
    return _finish(raw, source, cl.as_overrides(overrides), raw.get("source") or os.path.abspath(path))


def _finish(raw: dict, source: cl.Source, overrides: list[Override], origin_file: str) -> RunConfig:
    task_cli = []
    for ov in overrides:
        if ov.key.startswith("task."):
            task_cli.append(dataclasses.replace(ov, key=ov.key[len("task.") :]))
        else:
            cl.set_dotted(raw, ov, source)
    from_file = raw.pop("task_overrides", None) or {}
    if not isinstance(from_file, dict):
        raise source.error(("task_overrides",), f"expected a mapping of dotted task keys, got {from_file!r}")
    here = os.path.dirname(os.path.abspath(source.file)) if source.file else os.getcwd()
    task_overrides = [Override(k, v, f"{source.file}: task_overrides", here) for k, v in from_file.items()] + task_cli
    raw.pop("source", None)
    config = cl.parse(RunConfig, raw, source, fixed={"source": origin_file})
    task_overrides = resolved_task_overrides(task_overrides)
    config = dataclasses.replace(config, task_overrides={ov.key: ov.value for ov in task_overrides})
    check_run_config(config, source, task_overrides)
    return config


def resolved_task_overrides(overrides: list[Override]) -> list[Override]:
    """Task overrides with the values of path fields made absolute (against each override's own
    folder), so that a saved config.yaml reads the same from anywhere."""
    from neuronjax.tasks.config import TaskConfig

    out = []
    fields = {f.name: f for f in dataclasses.fields(TaskConfig)}
    for ov in overrides:
        field = fields.get(ov.key)  # a misspelled key is reported when the task config is read
        value = ov.value
        if field is not None and field.metadata.get("path") and isinstance(value, str):
            if not os.path.isabs(value) and not value.startswith("builtin:"):
                value = os.path.normpath(os.path.join(ov.base_dir or os.getcwd(), value))
        out.append(dataclasses.replace(ov, value=value))
    return out


def check_run_config(config: RunConfig, source: cl.Source, task_overrides: Sequence[Override] = ()) -> None:
    """What can be checked before a model loads: method names and hyper-parameters, the mesh axes,
    the evaluated methods, the task YAML with its overrides, the cross-task YAMLs."""
    from neuronjax.methods import make_methods
    from neuronjax.sharding import MESH_AXES, ShardingRules
    from neuronjax.tasks.config import load_task_config

    make_methods(config.identify, source)
    try:
        ShardingRules.from_config(config.model.sharding)
    except ConfigError as err:
        raise source.error(("model", "sharding"), str(err).removeprefix("model.sharding: ").removeprefix("model.sharding."))
    bad = {k: v for k, v in config.model.mesh.items() if k not in MESH_AXES or v < 1}
    if bad:
        name = next(iter(bad))
        raise source.error(("model", "mesh", name), f"expected sizes >= 1 for axes among {list(MESH_AXES)}"
                           f"{cl.suggest(name, MESH_AXES) if name not in MESH_AXES else ''}")  # fmt: skip
    identified = list(config.identify.methods)
    for n in config.evaluate.methods:
        if n not in identified:
            raise source.error(("evaluate", "methods"), f"{n!r} is not among identify.methods {identified}"
                               f"{cl.suggest(n, identified)}")  # fmt: skip
    evaluated = list(config.evaluate.methods) or identified
    for j, pair in enumerate(config.evaluate.compare):
        for n in pair:
            if n not in evaluated:
                raise source.error(("evaluate", "compare", str(j)), f"{n!r} is not among the evaluated methods "
                                   f"{evaluated}{cl.suggest(n, evaluated)}")  # fmt: skip
    load_task_config(config.task, list(task_overrides) or config.task_overrides)
    for cross in config.cross_tasks:
        load_task_config(cross)


def to_dict(config: RunConfig) -> dict:
    """Plain data of a run config (what config.yaml holds)."""
    return to_plain(config)


def show(config: RunConfig) -> str:
    """The resolved run config with every key, its help and its default where it differs, then
    the resolved task config."""
    from neuronjax.tasks.config import load_task_config

    task = load_task_config(config.task, config.task_overrides)
    return (
        f"# run config (from {config.source})\n" + show_config(config)
        + f"\n# task config (from {config.task}" + (", with task_overrides" if config.task_overrides else "") + ")\n"
        + show_config(task)
    )  # fmt: skip
