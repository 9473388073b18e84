"""The pipeline behind the CLI: identify -> save -> evaluate -> report, for one run config.

A run directory (`<output>/<name>/`) holds:

    config.yaml          the resolved run config (with the overrides applied)
    identify_state/      while identification runs: its resumable state (Orbax CheckpointManager)
    neurons/<method>/    one saved NeuronSet per method (Orbax arrays + neurons.json)
    evaluation.json      every evaluated condition with intervals (see neuronjax.evaluation)
    predictions.parquet  per held-out proxy and condition: gold, chosen option, option scores
                         (predictions.csv where pyarrow is not installed; see `write_predictions`)
    cards.json           what the main method's top neurons do (neuronjax.cards): tokens they
                         promote, held-out items they fire on
    cross.json           the run's neurons applied to other tasks (when cross_tasks is set)
    report.md            the tables
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Optional

import yaml

from neuronjax.config import RunConfig, to_dict
from neuronjax.errors import ConfigError
from neuronjax.evaluation.results import CrossEvaluation, Evaluation
from neuronjax.io.neurons import NeuronSet, load_neurons, save_neurons

NEURONS = "neurons"
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions"  # .parquet (with pyarrow) or .csv
CROSS = "cross.json"
REPORT = "report.md"
CARDS = "cards.json"
CONFIG = "config.yaml"
STATE = "identify_state"  # Orbax checkpoints of an identification in progress (removed when it ends)


class Progress:
    """A tqdm bar counting prompts (prompts/s shown as the rate); silent when disabled."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="prompt", dynamic_ncols=True, leave=True)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def mesh_for(config: RunConfig):
    """The run's device mesh (None: a single device)."""
    import jax

    from neuronjax.sharding import MESH_AXES, make_mesh

    shape = dict(config.model.mesh)
    bad = {k: v for k, v in shape.items() if k not in MESH_AXES or not isinstance(v, int) or v < 1}
    if bad:
        raise ConfigError(
            f"{config.source or 'config'}: model.mesh = {shape}: expected sizes >= 1 for axes among {list(MESH_AXES)}"
        )
    if not shape and jax.device_count() == 1:
        return None
    try:
        return make_mesh(shape)
    except ValueError as e:
        raise ConfigError(f"{config.source or 'config'}: model.mesh = {shape}: {e}") from None


def load_model_for(config: RunConfig):
    import neuronjax
    from neuronjax.sharding import ShardingRules

    return neuronjax.load_model(config.model.path, dtype=config.model.dtype, mesh=mesh_for(config),
                                rules=ShardingRules.from_config(config.model.sharding),
                                revision=config.model.revision)  # fmt: skip


def encode(config: RunConfig, lm, part: str, task_path: Optional[str] = None):
    """The tokenized proxies of one part ('identify' / 'evaluate') of the run's task (or of
    another task YAML, for the cross-task matrix)."""
    from neuronjax.tasks.build import encode_task
    from neuronjax.tasks.config import load_task_config

    overrides = config.task_overrides if task_path is None else {}
    task_config = load_task_config(task_path or config.task, overrides)
    return encode_task(task_config, lm.tokenizer, part)


def identify_run(config: RunConfig, lm=None, progress: bool = True, force: bool = False) -> dict[str, NeuronSet]:
    """Identify with every configured method and save the sets under <run_dir>/neurons/."""
    from neuronjax.distributed import barrier, is_primary
    from neuronjax.identify import Checkpointing, IdentifyStats, identify
    from neuronjax.methods import make_methods

    out = os.path.join(config.run_dir, NEURONS)
    state_dir = os.path.join(config.run_dir, STATE)
    unfinished = os.path.exists(state_dir)  # a run cut short: neurons/ then holds at most a partial save
    if os.path.exists(out) and not unfinished and not force:
        raise FileExistsError(
            f"{out}: this run already has identified neurons; use another name= or --force to replace them"
        )
    barrier("identify-start")
    if is_primary():
        shutil.rmtree(out, ignore_errors=True)
        if force:
            shutil.rmtree(state_dir, ignore_errors=True)
    barrier("identify-cleared")
    methods = make_methods(config.identify, config.source or "config")
    lm = lm or load_model_for(config)
    check_set_sizes(config, methods, lm)
    encoded = encode(config, lm, "identify")
    if is_primary():
        write_config(config)
    checkpoint = None
    if config.identify.checkpoint_every:
        checkpoint = Checkpointing(state_dir, every=config.identify.checkpoint_every)
    bar = Progress(len(encoded.records), f"identify {encoded.config.name}", progress and is_primary())
    stats = IdentifyStats()
    try:
        sets = identify(lm, encoded, methods, config.identify.attribution, config.identify.block_items, bar, stats,
                        checkpoint=checkpoint)  # fmt: skip
    finally:
        bar.close()
    for name, ns in sets.items():  # every process: Orbax saves collectively, process 0 writes
        ns.meta["run"] = {"name": config.name, "config": to_dict(config)}
        save_neurons(os.path.join(out, name), ns)
    if is_primary():
        shutil.rmtree(state_dir, ignore_errors=True)  # the sets are saved: the resumable state is spent
    barrier("identify-saved")
    return sets


def check_set_sizes(config: RunConfig, methods, lm) -> None:
    """Every method's k (and z) against the model's neuron count, naming the run config."""
    from neuronjax.masks import check_k

    c = lm.config
    for m in methods:
        for key in ("k", "z"):
            if hasattr(m, key):
                where = f"{config.source or 'config'}: identify.{key} (method {m.name})"
                check_k(getattr(m, key), c.num_layers, c.intermediate_size, where)


def load_sets(config: RunConfig, lm=None) -> dict[str, NeuronSet]:
    """The saved sets of a run, in the configured method order (checked against `lm`)."""
    out = os.path.join(config.run_dir, NEURONS)
    sets = {}
    for name in config.identify.methods:
        path = os.path.join(out, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no neurons for method {name!r}; run `neuronjax identify` first")
        sets[name] = load_neurons(path, lm)
    return sets


def evaluate_run(config: RunConfig, lm=None, sets=None, progress: bool = True) -> Evaluation:
    """Evaluate the run's sets on its held-out split (and on cross_tasks); write evaluation.json,
    the per-proxy predictions, cards.json, (cross.json) and report.md."""
    from neuronjax.distributed import barrier, is_primary
    from neuronjax.evaluation import measure_sets

    lm = lm or load_model_for(config)
    sets = sets if sets is not None else load_sets(config, lm)
    encoded = encode(config, lm, "evaluate")
    progress = progress and is_primary()
    bar = Progress(len(encoded.records), f"evaluate {encoded.config.name}", progress)
    capture = card_capture(sets, config.evaluate.cards)
    start = time.perf_counter()
    try:
        measured = measure_sets(lm, encoded, sets, config.evaluate, bar, capture=capture)
    finally:
        bar.close()
    result = dataclasses.replace(
        measured.evaluation,
        seconds=round(time.perf_counter() - start, 1),
        run=config.name,
        model=next(iter(sets.values())).meta.get("model", {}) if sets else {},
        identify={name: ns.meta.get("stats", {}) for name, ns in sets.items()},
        methods={name: ns.meta.get("method", {}) for name, ns in sets.items()},
    )
    activations = None
    if capture is not None:
        from neuronjax.cards import Activations

        scored = measured.scored
        activations = Activations(scored.activations, scored.item_index, scored.proxy_index)
    cards = run_cards(lm, encoded, sets, progress, config.evaluate.cards, activations)
    cross = cross_run(config, lm, sets, progress) if config.cross_tasks else None
    if is_primary():
        result.save(os.path.join(config.run_dir, EVALUATION))
        write_predictions(config.run_dir, measured.predictions())
        if cards is not None:
            cards.save(os.path.join(config.run_dir, CARDS))
        elif os.path.exists(os.path.join(config.run_dir, CARDS)):  # an earlier evaluation's: not of these sets
            os.remove(os.path.join(config.run_dir, CARDS))
        if cross is not None:
            cross.save(os.path.join(config.run_dir, CROSS))
        write_report(config.run_dir)
    barrier("evaluate-saved")
    return result


def _card_method(sets, per_side: int):
    """The method whose neurons get cards (`cards.main_method`), or None when there are none to make
    (no sets, or per_side 0: `evaluate.cards`)."""
    from neuronjax.cards import main_method

    method = main_method(list(sets))
    return None if method is None or per_side == 0 else method


def card_capture(sets, per_side: int = 8):
    """The neurons [(layer, index)] `run_cards` will make cards of (None when it makes none): the
    evaluation captures their activations from its own prompt caches."""
    from neuronjax.cards import card_neurons

    method = _card_method(sets, per_side)
    return None if method is None else card_neurons(sets[method], per_side)


def run_cards(lm, encoded, sets, progress: bool = True, per_side: int = 8, activations=None):
    """The cards of the main method's `per_side` top good and bad neurons on the held-out split
    (`neuronjax.cards`); None without sets or with per_side 0 (`evaluate.cards`). activations:
    those neurons' activations on the split (`card_capture`), when the evaluation captured them;
    else one unedited pass per batch computes them."""
    from neuronjax.cards import build_cards

    method = _card_method(sets, per_side)
    if method is None:
        return None
    bar = Progress(len(encoded.records), "neuron cards", progress and activations is None)
    try:
        return build_cards(lm, encoded, sets[method], method, per_side=per_side, progress=bar, activations=activations)
    finally:
        bar.close()


def cross_run(config: RunConfig, lm, sets, progress: bool = True) -> CrossEvaluation:
    """The run's sets (each method, each mode) on the held-out items of other tasks."""
    from neuronjax.evaluation import evaluate_sets

    targets = []
    cfg = dataclasses.replace(config.evaluate, k_values=())
    for path in config.cross_tasks:
        encoded = encode(config, lm, "evaluate", path)
        bar = Progress(len(encoded.records), f"cross -> {encoded.config.name}", progress)
        try:
            targets.append(evaluate_sets(lm, encoded, sets, cfg, bar))
        finally:
            bar.close()
    return CrossEvaluation(tuple(targets))


def write_predictions(run_dir: str, columns: dict) -> str:
    """Write the per-proxy predictions (`Measured.predictions` columns) to predictions.parquet
    where pyarrow is installed (the [parquet] extra), else to predictions.csv; returns the path.
    The other format's file of an earlier evaluation is removed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pa = None
    paths = {ext: os.path.join(run_dir, f"{PREDICTIONS}.{ext}") for ext in ("parquet", "csv")}
    path = paths["parquet" if pa is not None else "csv"]
    tmp = path + ".tmp"
    if pa is not None:
        pq.write_table(pa.table({k: pa.array(list(v) if v.dtype == object else v) for k, v in columns.items()}), tmp)
    else:
        import csv

        names = list(columns)
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(names)
            # a float32 score as the repr of its float64 value: read back, it is the same number
            cells = [[float(x) for x in v] if v.dtype.kind == "f" else v.tolist() for v in columns.values()]
            out.writerows(zip(*cells))
    os.replace(tmp, path)
    for other in paths.values():
        if other != path and os.path.exists(other):
            os.remove(other)
    return path


def predictions_path(run_dir: str) -> Optional[str]:
    """The run's predictions file (.parquet or .csv), None when it has none."""
    for ext in ("parquet", "csv"):
        path = os.path.join(run_dir, f"{PREDICTIONS}.{ext}")
        if os.path.exists(path):
            return path
    return None


def write_config(config: RunConfig) -> None:
    os.makedirs(config.run_dir, exist_ok=True)
    with open(os.path.join(config.run_dir, CONFIG), "w") as f:
        yaml.safe_dump(_plain(to_dict(config)), f, sort_keys=False)


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def write_report(run_dir: str) -> str:
    """Render report.md from the run's JSON files; returns the markdown."""
    from neuronjax.report import markdown_report

    text = markdown_report([run_dir])
    with open(os.path.join(run_dir, REPORT), "w") as f:
        f.write(text)
    return text
