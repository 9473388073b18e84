"""A sweep's points and the state of each.

Points are expanded in grid order, the last key varying fastest. Each point's run config is
`load_run_config(base, overrides)` with, in order, the sweep's `overrides`, the command line's
overrides and the point's grid values, all `configlib.Override`s: the same checks as
`neuronjax run`, relative paths resolved against the folder of whoever wrote them (the sweep
file's, or the working directory for the command line), and an error names the sweep file's
line and grid key that set the value.

A point is finished when its run directory holds a config.yaml equal to the point's config and an
evaluation.json written after it (and cross.json when the point has cross_tasks). A run directory
made with a different config is an error naming the directory and the keys that differ, unless
`force` (then it is replaced). A point whose neurons were all saved but whose evaluation is
missing is only evaluated.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
from typing import Any, Optional, Sequence, Union

import yaml

from neuronjax import configlib as cl
from neuronjax.config import RunConfig, load_run_config, to_dict
from neuronjax.configlib import Override
from neuronjax.errors import ConfigError, NeuronJaxError
from neuronjax.sweep.schema import SweepConfig, check_override_key, load_sweep, overlapping

FINISHED, RUN, EVALUATE, REPLACE = "finished", "to run", "to evaluate", "to replace"
ERROR_FILE = "sweep_error.txt"  # a failed point's error: one line, then the traceback

Overrides = Union[None, dict, Sequence[Override]]


@dataclasses.dataclass(frozen=True)
class Point:
    index: int  # position in expansion order (0-based; `number` is what --dry-run and --point show)
    name: str  # the run name: the value labels joined with "-"
    values: dict  # grid key -> value, as written in the sweep file
    labels: dict  # grid key -> value label
    config: RunConfig

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def run_dir(self) -> str:
        return self.config.run_dir


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def expand(sweep: SweepConfig, overrides: Overrides = None) -> list[Point]:
    """Every point of the grid, in order (the last grid key varies fastest), each a checked
    RunConfig: the base config, the sweep's overrides, `overrides` (e.g. from the command line:
    a list of Override, or a {dotted key: value} mapping) and the point's values."""
    extra = cl.as_overrides(overrides)
    for ov in extra:
        check_override_key(ov.key, ov.describe())
        for key in sweep.grid:
            if overlapping(ov.key, key):
                raise ConfigError(f"{sweep.file}: grid.{key}: a grid key cannot be overridden for every point "
                                  f"({ov.describe()}); edit the grid")  # fmt: skip
    keys = list(sweep.grid)
    here = os.getcwd()
    points, seen = [], {}
    combos = itertools.product(*(range(len(sweep.grid[k])) for k in keys))
    for index, combo in enumerate(combos):
        chosen = [sweep.grid[k][i] for k, i in zip(keys, combo)]
        values = {ov.key: ov.value for ov in chosen}
        labels = {k: sweep.labels[k][i] for k, i in zip(keys, combo)}
        name = "-".join(labels.values())
        if name in seen:
            raise ConfigError(f"{sweep.file}: points {seen[name]} and {labels} share the run name {name!r}; "
                              "set labels for their grid keys")  # fmt: skip
        seen[name] = labels
        placed = [Override("name", name, f"{sweep.file}: the point's labels", here),
                  Override("output", sweep.sweep_dir, f"{sweep.file}: output", here)]  # fmt: skip
        try:
            config = load_run_config(sweep.base, [*sweep.overrides, *extra, *chosen, *placed])
        except (NeuronJaxError, ValueError, FileNotFoundError) as err:
            raise ConfigError(f"{sweep.file}: point {name} ({_describe(values)}): {err}") from None
        points.append(Point(index, name, values, labels, config))
    return points


# ----------------------------------------------------------------------------- state of a point


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
    from neuronjax.run import CONFIG

    with open(os.path.join(run_dir, CONFIG)) as f:
        saved = yaml.safe_load(f) or {}
    want = to_dict(config)
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
    missing) or REPLACE (made with another config; only with force). Raises ConfigError for a run
    directory made with another config when not forced."""
    from neuronjax.run import CONFIG, CROSS, EVALUATION

    run_dir, config = point.run_dir, point.config
    config_path = os.path.join(run_dir, CONFIG)
    if not os.path.exists(config_path):
        # A failed attempt may have left only its error file: that is still this point's directory.
        if os.path.isdir(run_dir) and set(os.listdir(run_dir)) - {ERROR_FILE}:
            if force:
                return REPLACE, "not a run directory"
            raise ConfigError(f"{run_dir}: exists but holds no {CONFIG}; not this point's run (use --force to replace it)")
        return RUN, ""
    diffs = config_differences(run_dir, config)
    if diffs:
        if force:
            return REPLACE, "; ".join(diffs)
        raise ConfigError(f"{run_dir}: made with a different config: " + "; ".join(diffs) + " (use --force to replace it)")
    evaluation = os.path.join(run_dir, EVALUATION)
    done = os.path.exists(evaluation) and os.path.getmtime(evaluation) >= os.path.getmtime(config_path)
    if done and config.cross_tasks and not os.path.exists(os.path.join(run_dir, CROSS)):
        done = False
    if done:
        return FINISHED, ""
    if _neurons_saved(config):
        return EVALUATE, "neurons saved"
    return RUN, ""


def prepare(run_dir: str, state: str) -> None:
    """Remove what a point's earlier attempt left before it runs again: everything when its
    directory is replaced; otherwise its evaluation files, and its partial neurons unless an
    identification checkpoint (run.STATE) lets identify_run resume."""
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


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Plan:
    """A sweep's points and, for the ones looked at (all, or the one of --point), their state."""

    sweep: SweepConfig
    points: list[Point]  # every point, in expansion order
    states: dict  # point name -> (state, detail), for the points looked at

    @property
    def selected(self) -> list[Point]:
        return [p for p in self.points if p.name in self.states]

    def state(self, point: Point) -> str:
        return self.states[point.name][0]

    def describe(self) -> str:
        """The points, their run directories and what a sweep would do with each."""
        sweep = self.sweep
        lines = [f"sweep {sweep.name}: {len(self.points)} points = {sweep.shape()}; base {sweep.base}"]
        width = max(len(p.name) for p in self.selected)
        for p in self.selected:
            state, detail = self.states[p.name]
            extra = f" ({detail})" if detail and state == REPLACE else ""
            lines.append(f"  {p.number:3d}  {p.name:<{width}s}  {state:<11s}  {p.run_dir}{extra}")
        counts = {s: sum(1 for st, _ in self.states.values() if st == s) for s in (FINISHED, RUN, EVALUATE, REPLACE)}
        todo = counts[RUN] + counts[EVALUATE] + counts[REPLACE]
        lines.append(f"{points_phrase(len(self.selected), len(self.points))}: {counts[FINISHED]} finished, {todo} to run")
        return "\n".join(lines)


def points_phrase(looked_at: int, total: int) -> str:
    """"12 points", or "1 of 12 points" when only some were looked at."""
    return f"{total} points" if looked_at == total else f"{looked_at} of {total} points"


def select(sweep: SweepConfig, points: list[Point], number: int) -> Point:
    """Point `number` (1-based, as --dry-run lists them)."""
    if not 1 <= number <= len(points):
        raise ConfigError(f"{sweep.file}: no point {number}: the sweep has {len(points)} points "
                          f"(1 to {len(points)}, as --dry-run lists them)")  # fmt: skip
    return points[number - 1]


def plan(sweep_path: str, overrides: Overrides = None, force: bool = False, point: Optional[int] = None) -> Plan:
    """Load and expand a sweep and find the state of every point (or only of point `point`,
    1-based); every conflict is reported at once, before anything runs."""
    sweep = load_sweep(sweep_path)
    points = expand(sweep, overrides)
    looked_at = points if point is None else [select(sweep, points, point)]
    states, problems = {}, []
    for p in looked_at:
        try:
            states[p.name] = point_state(p, force)
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError(f"{sweep_path}: {len(problems)} run director{'y' if len(problems) == 1 else 'ies'} "
                          "made otherwise:\n  " + "\n  ".join(problems))  # fmt: skip
    return Plan(sweep, points, states)
