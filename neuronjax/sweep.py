"""Sweeps: one YAML file under configs/sweeps/ expands into many runs (models x tasks x methods x
K x seeds ...), runs the ones not finished yet, and gathers every run's evaluation into one table.

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

Points are expanded in grid order, the last key varying fastest. Each point is the base config
with `overrides`, then the command line's overrides, then the point's grid values applied through
the same override machinery as `neuronjax run` (so the same checks apply). Its run name joins the
labels of its values with "-", e.g. `world_facts-neuronllm+random-k50`; automatic labels are a
path's file name without extension (`task`, `model.path`; null model: `embedded`), list items
joined with "+", and numbers prefixed with the key's last part (`k50`, `seed1`). Relative paths in
`task`, `model.path` and `cross_tasks` values resolve against the sweep file.

A point is finished when its run directory holds a config.yaml equal to the point's config and an
evaluation.json written after it (and cross.json when the point has cross_tasks); finished points
are skipped. A run directory made with a different config is an error naming the directory and
the keys that differ, unless `force` (then the directory is deleted and the point runs again). A
point whose neurons were all saved but whose evaluation is missing is only evaluated. Points run in-process through
`neuronjax.run` (identify -> evaluate -> report), grouped by model so that each model is loaded
once; a point that fails is recorded (its traceback in <run dir>/sweep_error.txt) and the sweep
goes on. At the end every point's evaluation is gathered into <output>/<name>/results.csv and
results.md: one row per point x method x intervention mode, failed points listed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import os
import re
import shutil
import time
import traceback
import typing
from typing import Any, Callable, Optional

import yaml

from neuronjax.config import RunConfig, load_run_config, to_dict

SWEEP_KEYS = ("name", "base", "output", "overrides", "grid", "labels")
PATH_KEYS = ("task", "model.path")  # values that are one path (resolved against the sweep file)
PATH_LIST_KEYS = ("cross_tasks",)  # values that are lists of paths
RESERVED = {  # run-config keys a sweep sets itself, or that have another spelling
    "name": "the run name is derived from the point's labels",
    "output": "set the sweep's own `output`",
    "source": "filled in when the config is loaded",
    "task_overrides": "use task.<key> (a key of the task YAML) instead",
}
ERROR_FILE = "sweep_error.txt"
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
_LABEL_OK = re.compile(r"^[A-Za-z0-9_.+=-]+$")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    name: str  # the sweep's folder under `output`
    base: str  # the base run config (absolute)
    grid: dict  # dotted key -> tuple of values (paths resolved), in file order
    labels: dict  # dotted key -> tuple of value labels (one per value)
    overrides: dict = dataclasses.field(default_factory=dict)  # dotted key -> value, on every point
    output: str = "runs/sweeps"
    source: str = ""  # the sweep YAML (absolute)

    @property
    def sweep_dir(self) -> str:
        return os.path.join(self.output, self.name)


@dataclasses.dataclass(frozen=True)
class Point:
    index: int  # position in expansion order (0-based)
    name: str  # the run name: the value labels joined with "-"
    values: dict  # grid key -> value
    labels: dict  # grid key -> value label
    config: RunConfig

    @property
    def run_dir(self) -> str:
        return self.config.run_dir


# ----------------------------------------------------------------------------- loading


def _run_config_key(dotted: str, where: str) -> None:
    """Check that `dotted` names a run-config key an override may set (errors start with
    `where` + the key, e.g. "sweep.yaml: grid." + "identify.k")."""
    if not isinstance(dotted, str) or not dotted or any(not part for part in dotted.split(".")):
        raise ValueError(f"{where}{dotted!r}: not a dotted run-config key")
    top = dotted.split(".")[0]
    if top in RESERVED:
        raise ValueError(f"{where}{dotted}: not allowed in a sweep ({RESERVED[top]})")
    if dotted.startswith("task."):
        return  # a key of the task YAML, checked when the points' task configs are loaded
    cls, path = RunConfig, []
    for part in dotted.split("."):
        if cls is dict:
            return  # free-form mapping (identify.params)
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"{where}{dotted}: {'.'.join(path)} is a value, not a section")
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            section = ".".join(path) or "the run config"
            raise ValueError(f"{where}{dotted}: {section} has no key {part!r}; expected some of {names}")
        cls = typing.get_type_hints(cls)[part]
        path.append(part)


def _resolve_paths(key: str, value: Any, here: str) -> Any:
    def resolve(p):
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(here, p))

    if key in PATH_KEYS and isinstance(value, str):
        return resolve(value)
    if key in PATH_LIST_KEYS and isinstance(value, list):
        return [resolve(p) if isinstance(p, str) else p for p in value]
    return value


def _leaf(key: str) -> str:
    return key.split(".")[-1]


def _stem(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    for ext in (".yaml", ".yml", ".gguf"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def auto_label(key: str, value: Any) -> str:
    """The default label of a grid value (see the module docstring)."""
    if key == "model.path" and value is None:
        return "embedded"
    if value is None:
        return f"no_{_leaf(key)}"
    if key in PATH_KEYS and isinstance(value, str):
        return _sanitize(_stem(value))
    if key in PATH_LIST_KEYS and isinstance(value, list):
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


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("_") or "_"


def load_sweep(path: str) -> SweepConfig:
    """Read and check a sweep YAML: every key, every grid key and label; errors name the file
    and the dotted key."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such sweep file")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(raw) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; expected some of {list(SWEEP_KEYS)}")
    for key in ("name", "base", "grid"):
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r}")
    here = os.path.dirname(os.path.abspath(path))
    name = raw["name"]
    if not isinstance(name, str) or not _LABEL_OK.match(name):
        raise ValueError(f"{path}: name: expected a folder name (letters, digits, _ . + = -), got {name!r}")
    base = raw["base"]
    if not isinstance(base, str):
        raise ValueError(f"{path}: base: expected the path of a run config, got {base!r}")
    base = base if os.path.isabs(base) else os.path.normpath(os.path.join(here, base))
    if not os.path.exists(base):
        raise ValueError(f"{path}: base: {base} does not exist")
    output = raw.get("output", SweepConfig.output)
    if not isinstance(output, str) or not output:
        raise ValueError(f"{path}: output: expected a directory, got {output!r}")

    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"{path}: overrides: expected a mapping of dotted run-config keys, got {overrides!r}")
    for key in overrides:
        _run_config_key(key, f"{path}: overrides.")
    overrides = {key: _resolve_paths(key, value, here) for key, value in overrides.items()}

    grid_raw = raw["grid"]
    if not isinstance(grid_raw, dict) or not grid_raw:
        raise ValueError(f"{path}: grid: expected a mapping of dotted run-config keys to lists of values, got {grid_raw!r}")
    grid = {}
    for key, values in grid_raw.items():
        _run_config_key(key, f"{path}: grid.")
        if key in overrides:
            raise ValueError(f"{path}: grid.{key}: also set in overrides; set it in one place")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: grid.{key}: expected a non-empty list of values, got {values!r}")
        values = [_resolve_paths(key, v, here) for v in values]
        for i, v in enumerate(values):
            if v in values[:i]:
                raise ValueError(f"{path}: grid.{key}: value {v!r} appears twice")
        grid[key] = tuple(values)

    labels_raw = raw.get("labels") or {}
    if not isinstance(labels_raw, dict):
        raise ValueError(f"{path}: labels: expected a mapping of grid keys to lists of labels, got {labels_raw!r}")
    for key in labels_raw:
        if key not in grid:
            raise ValueError(f"{path}: labels.{key}: not a grid key; grid keys are {list(grid)}")
    labels = {}
    for key, values in grid.items():
        given = labels_raw.get(key)
        if given is None:
            given = [None] * len(values)
        if not isinstance(given, list) or len(given) != len(values):
            raise ValueError(
                f"{path}: labels.{key}: expected a list of {len(values)} labels (one per grid value, null: automatic), got {given!r}"
            )
        out = []
        for i, (value, label) in enumerate(zip(values, given)):
            if label is None:
                label = auto_label(key, value)
            elif not isinstance(label, (str, int, float)) or isinstance(label, bool) or not _LABEL_OK.match(str(label)):
                raise ValueError(f"{path}: labels.{key}[{i}]: expected a name of letters, digits, _ . + = -, got {label!r}")
            label = str(label)
            if label in out:
                other = values[out.index(label)]
                raise ValueError(
                    f"{path}: grid.{key}: values {other!r} and {value!r} both get the label {label!r}; "
                    f"give them distinct names under labels.{key}"
                )
            out.append(label)
        labels[key] = tuple(out)
    return SweepConfig(name=name, base=base, grid=grid, labels=labels, overrides=overrides, output=output,
                       source=os.path.abspath(path))  # fmt: skip


def expand(sweep: SweepConfig, overrides: Optional[dict] = None) -> list[Point]:
    """Every point of the grid, in order (the last grid key varies fastest), each a checked
    RunConfig: the base config, the sweep's overrides, `overrides` (e.g. from the command line)
    and the point's values."""
    from neuronjax.tasks.config import load_task_config

    where = sweep.source or sweep.name
    overrides = dict(overrides or {})
    for key in overrides:
        _run_config_key(key, "command-line override ")
        if key in sweep.grid:
            raise ValueError(f"{where}: grid.{key}: a grid key cannot be overridden for every point; edit the grid")
    keys = list(sweep.grid)
    points, seen = [], {}
    combos = itertools.product(*(range(len(sweep.grid[k])) for k in keys))
    for index, combo in enumerate(combos):
        values = {k: sweep.grid[k][i] for k, i in zip(keys, combo)}
        labels = {k: sweep.labels[k][i] for k, i in zip(keys, combo)}
        name = "-".join(labels.values())
        if name in seen:
            raise ValueError(
                f"{where}: points {seen[name]} and {labels} share the run name {name!r}; set labels for their grid keys"
            )
        seen[name] = labels
        point_overrides = {**sweep.overrides, **overrides, **values, "name": name, "output": sweep.sweep_dir}
        try:
            config = load_run_config(sweep.base, point_overrides)
            load_task_config(config.task, config.task_overrides)
            for path in config.cross_tasks:
                load_task_config(path)
        except (ValueError, FileNotFoundError, TypeError, KeyError) as err:
            raise ValueError(f"{where}: point {name} ({_describe(values)}): {err}") from None
        points.append(Point(index, name, values, labels, config))
    return points


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


# ----------------------------------------------------------------------------- state of a point

FINISHED, RUN, EVALUATE, REPLACE = "finished", "to run", "to evaluate", "to replace"


def _flat(d: Any, prefix: str = "") -> dict:
    if isinstance(d, dict) and d:
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def config_differences(run_dir: str, config: RunConfig) -> list[str]:
    """How the config saved in `run_dir` differs from `config` (dotted keys; the name, output and
    source, which only say where the files are, are not compared)."""
    from neuronjax.run import CONFIG, _plain

    with open(os.path.join(run_dir, CONFIG)) as f:
        saved = yaml.safe_load(f) or {}
    want = _plain(to_dict(config))
    for key in ("name", "output", "source"):
        saved.pop(key, None)
        want.pop(key, None)
    a, b = _flat(saved), _flat(want)
    return [f"{k}: {a.get(k, '(absent)')!r} in the run directory, {b.get(k, '(absent)')!r} in the sweep"
            for k in sorted(set(a) | set(b)) if a.get(k, "(absent)") != b.get(k, "(absent)")]  # fmt: skip


def _neurons_saved(config: RunConfig) -> bool:
    from neuronjax.io.neurons import SIDECAR
    from neuronjax.run import NEURONS

    return all(os.path.exists(os.path.join(config.run_dir, NEURONS, m, SIDECAR)) for m in config.identify.methods)


def point_state(point: Point, force: bool = False) -> tuple[str, str]:
    """(state, detail): FINISHED, RUN (nothing usable yet), EVALUATE (neurons saved, evaluation
    missing) or REPLACE (made with another config; only with force). Raises ValueError for a run
    directory made with another config when not forced."""
    from neuronjax.run import CONFIG, CROSS, EVALUATION

    run_dir, config = point.run_dir, point.config
    config_path = os.path.join(run_dir, CONFIG)
    if not os.path.exists(config_path):
        if os.path.isdir(run_dir) and os.listdir(run_dir):
            if force:
                return REPLACE, "not a run directory"
            raise ValueError(f"{run_dir}: exists but holds no {CONFIG}; not this point's run (use --force to replace it)")
        return RUN, ""
    diffs = config_differences(run_dir, config)
    if diffs:
        if force:
            return REPLACE, "; ".join(diffs)
        raise ValueError(f"{run_dir}: made with a different config: " + "; ".join(diffs) + " (use --force to replace it)")
    evaluation = os.path.join(run_dir, EVALUATION)
    done = os.path.exists(evaluation) and os.path.getmtime(evaluation) >= os.path.getmtime(config_path)
    if done and config.cross_tasks and not os.path.exists(os.path.join(run_dir, CROSS)):
        done = False
    if done:
        return FINISHED, ""
    if _neurons_saved(config):
        return EVALUATE, "neurons saved"
    return RUN, ""


def _prepare(run_dir: str, state: str) -> None:
    """Remove what a point's earlier attempt left before it runs again: everything when its
    directory is replaced; otherwise its evaluation files, and its partial neurons unless an
    identification checkpoint (run.STATE, where the pipeline has one) lets identify_run resume."""
    from neuronjax import run as runs

    if state == REPLACE:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    names = [runs.EVALUATION, runs.CROSS, runs.REPORT, ERROR_FILE]
    checkpoint = getattr(runs, "STATE", None)
    if state == RUN and not (checkpoint and os.path.exists(os.path.join(run_dir, checkpoint))):
        names.append(runs.NEURONS)
    for name in names:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


# ----------------------------------------------------------------------------- running


@dataclasses.dataclass
class SweepResult:
    points: list[Point]
    states: dict  # point name -> state before running
    ran: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)  # point name -> one-line error
    csv_path: str = ""
    md_path: str = ""

    def summary(self) -> str:
        return (
            f"{len(self.points)} points: {len(self.ran)} run, {len(self.skipped)} skipped (finished), "
            f"{len(self.failed)} failed; table in {self.md_path}"
        )


def _model_key(config: RunConfig) -> tuple:
    return (config.model.path, config.model.dtype)


def plan(sweep_path: str, overrides: Optional[dict] = None, force: bool = False) -> tuple[SweepConfig, list[Point], dict]:
    """Load and expand a sweep and find each point's state; every conflict is reported at once,
    before anything runs."""
    sweep = load_sweep(sweep_path)
    points = expand(sweep, overrides)
    states, problems = {}, []
    for p in points:
        try:
            states[p.name] = point_state(p, force)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ValueError(f"{sweep_path}: {len(problems)} run director{'y' if len(problems) == 1 else 'ies'} "
                         "made otherwise:\n  " + "\n  ".join(problems))  # fmt: skip
    return sweep, points, states


def describe_plan(sweep: SweepConfig, points: list[Point], states: dict) -> str:
    """The points, their run directories and what a sweep would do with each."""
    shape = " x ".join(f"{k} ({len(v)})" for k, v in sweep.grid.items())
    lines = [f"sweep {sweep.name}: {len(points)} points = {shape}; base {sweep.base}"]
    width = max(len(p.name) for p in points)
    for p in points:
        state, detail = states[p.name]
        extra = f" ({detail})" if detail and state == REPLACE else ""
        lines.append(f"  {p.index + 1:3d}  {p.name:<{width}s}  {state:<11s}  {p.run_dir}{extra}")
    counts = {s: sum(1 for st, _ in states.values() if st == s) for s in (FINISHED, RUN, EVALUATE, REPLACE)}
    todo = counts[RUN] + counts[EVALUATE] + counts[REPLACE]
    lines.append(f"{len(points)} points: {counts[FINISHED]} finished, {todo} to run")
    return "\n".join(lines)


def run_sweep(sweep_path: str, overrides: Optional[dict] = None, force: bool = False, progress: bool = True,
              log: Callable[[str], None] = print) -> SweepResult:  # fmt: skip
    """Run every unfinished point (grouped by model, each model loaded once), then gather."""
    import gc

    from neuronjax import run as runs

    sweep, points, states = plan(sweep_path, overrides, force)
    result = SweepResult(points, states)
    todo = [p for p in points if states[p.name][0] != FINISHED]
    result.skipped = [p.name for p in points if states[p.name][0] == FINISHED]
    order = {}
    for p in todo:
        order.setdefault(_model_key(p.config), len(order))
    todo.sort(key=lambda p: (order[_model_key(p.config)], p.index))
    log(f"sweep {sweep.name}: {len(points)} points, {len(result.skipped)} finished, {len(todo)} to run")
    lm, lm_key, lm_error = None, None, None
    for i, p in enumerate(todo, 1):
        key = _model_key(p.config)
        if key != lm_key:
            lm = None
            gc.collect()
            lm_key, lm_error = key, None
            try:
                lm = runs.load_model_for(p.config)
            except Exception as err:  # every point of this model fails with the same error
                lm_error = err
        state = states[p.name][0]
        t0 = time.perf_counter()
        log(f"[{i}/{len(todo)}] {p.name}: {'evaluate' if state == EVALUATE else 'identify + evaluate'}")
        try:
            if lm_error is not None:
                raise lm_error
            _prepare(p.run_dir, state)
            if state == EVALUATE:
                sets = runs.load_sets(p.config, lm)
            else:
                sets = runs.identify_run(p.config, lm, progress=progress)
            runs.evaluate_run(p.config, lm, sets, progress=progress)
        except Exception as err:
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            result.failed[p.name] = message
            os.makedirs(p.run_dir, exist_ok=True)
            with open(os.path.join(p.run_dir, ERROR_FILE), "w") as f:
                f.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
            log(f"[{i}/{len(todo)}] {p.name}: FAILED: {message}")
            continue
        result.ran.append(p.name)
        log(f"[{i}/{len(todo)}] {p.name}: done in {time.perf_counter() - t0:.0f} s")
    result.csv_path, result.md_path = gather(sweep, points, result.failed)
    return result


# ----------------------------------------------------------------------------- gathering

CSV_NUMBERS = ("accuracy", "change", "random_change", "vs_random")


def _interval(d: Optional[dict]) -> list:
    return [d["value"], d["low"], d["high"]] if d else ["", "", ""]


def point_rows(evaluation: dict) -> list[dict]:
    """One dict per (method, mode) of an evaluation (the 'none' row first): accuracy, change
    against no intervention, the random control's change and the difference to it (each a
    {value, low, high} interval or None)."""
    rows = evaluation["rows"]
    controls = {(r["method"], r["mode"], r["k"]): r for r in rows if r["control"]}
    out = []
    for r in rows:
        if r["control"]:
            continue
        c = controls.get((r["method"], r["mode"], r["k"]))
        out.append({
            "method": r["method"], "mode": r["mode"], "k": r["k"] if r["method"] != "none" else "",
            "good": r["good"], "bad": r["bad"],
            "accuracy": r["accuracy"], "change": r["vs_none"]["accuracy"],
            "random_change": c["vs_none"]["accuracy"] if c else None,
            "vs_random": r.get("vs_random", {}).get("accuracy"),
        })  # fmt: skip
    return out


def gather(sweep: SweepConfig, points: list[Point], failed: Optional[dict] = None) -> tuple[str, str]:
    """Write <output>/<name>/results.csv and results.md from every point's evaluation.json;
    points without one (failed or not run) get a row saying so. Returns the two paths."""
    from neuronjax.report import _fmt, _load, _verdict
    from neuronjax.run import EVALUATION

    failed = failed or {}
    keys = list(sweep.grid)
    header = ["point", *keys, "method", "mode", "k", "good", "bad"]
    for name in CSV_NUMBERS:
        header += [name, f"{name}_low", f"{name}_high"]
    header += ["items", "status", "run_dir"]
    csv_rows, md_rows, missing = [], [], []
    for p in points:
        grid_cells = [p.labels[k] for k in keys]
        path = os.path.join(p.run_dir, EVALUATION)
        if p.name in failed or not os.path.exists(path):
            status = f"failed: {failed[p.name]}" if p.name in failed else "not evaluated"
            missing.append((p, status))
            csv_rows.append([p.name, *grid_cells] + [""] * (len(header) - len(keys) - 3) + [status, p.run_dir])
            continue
        ev = _load(p.run_dir, EVALUATION)
        for r in point_rows(ev):
            numbers = []
            for name in CSV_NUMBERS:
                numbers += _interval(r[name])
            csv_rows.append([p.name, *grid_cells, r["method"], r["mode"], r["k"], r["good"], r["bad"], *numbers,
                             ev["items"], "ok", p.run_dir])  # fmt: skip
            head = [*grid_cells, r["method"], r["mode"], str(r["k"]) or "-"]
            if (r["mode"] == "suppress_bad" and r["bad"] == 0) or (r["mode"] == "suppress_good" and r["good"] == 0):
                md_rows.append(head + ["(empty set)", "-", "-", "-", "-"])  # nothing edited (as in report --summary)
                continue
            md_rows.append(
                head + [_fmt(r["accuracy"]),
                        _fmt(r["change"], True) if r["method"] != "none" else "-",
                        _fmt(r["random_change"], True) if r["random_change"] else "-",
                        _fmt(r["vs_random"], True) if r["vs_random"] else "-",
                        _verdict(r["vs_random"]) if r["vs_random"] else "-"]
            )  # fmt: skip
    os.makedirs(sweep.sweep_dir, exist_ok=True)
    csv_path = os.path.join(sweep.sweep_dir, RESULTS_CSV)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(csv_rows)
    _write_text(csv_path, buf.getvalue())

    done = len(points) - len(missing)
    md = [f"# Sweep {sweep.name}", "",
          f"{len(points)} points ({done} evaluated) from `{sweep.source}`: base `{sweep.base}`, grid "
          + " x ".join(f"`{k}` ({len(v)})" for k, v in sweep.grid.items()) + ".",
          "",
          ("Held-out accuracy under each intervention [95% bootstrap CI]; change: against no intervention "
           "(paired); random change: the same mode on random sets of the same per-layer counts; "
           "vs random: accuracy minus the random control's, lower / higher where its interval excludes zero. "
           "(empty set): the method found no neurons of that kind, so the mode edits nothing."),
          ""]  # fmt: skip
    cols = [*keys, "method", "mode", "K", "accuracy [95% CI]", "change [95% CI]", "random change [95% CI]",
            "accuracy - random [95% CI]", "vs random"]  # fmt: skip
    md.append("| " + " | ".join(cols) + " |")
    md.append("|" + "---|" * len(keys) + "---|---|---:|---|---|---|---|---|")
    md += ["| " + " | ".join(row) + " |" for row in md_rows]
    if missing:
        md += ["", f"Points without results ({len(missing)}):", ""]
        md += [f"- {p.name} (`{p.run_dir}`): {status}" for p, status in missing]
    md_path = os.path.join(sweep.sweep_dir, RESULTS_MD)
    _write_text(md_path, "\n".join(md) + "\n")
    return csv_path, md_path


def _write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
