"""Running a sweep's points: every unfinished one, or one alone (`--point`, a job array's task).

Points run in-process through `neuronjax.run` (identify -> evaluate -> report), grouped by model
so that each model is loaded once. A point that fails is recorded (its one-line error, then its
traceback, in <run dir>/sweep_error.txt) and the sweep goes on. A whole sweep ends by gathering
the table (`neuronjax.sweep.gather`); a single point does not, since the other points of a job
array may still be running: `neuronjax sweep FILE --gather` writes it afterwards.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
import traceback
from typing import Callable, Optional

from neuronjax.config import RunConfig
from neuronjax.sweep.gather import gather
from neuronjax.sweep.plan import ERROR_FILE, EVALUATE, FINISHED, Overrides, Plan, Point, plan, points_phrase, prepare


@dataclasses.dataclass
class SweepResult:
    points: list[Point]  # every point of the sweep
    states: dict  # point name -> (state, detail) before running, for the points looked at
    ran: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)  # point name -> one-line error
    csv_path: str = ""  # the gathered table ("" when not gathered: a single point)
    md_path: str = ""
    sweep_file: str = ""

    def summary(self) -> str:
        head = points_phrase(len(self.states), len(self.points))
        table = f"table in {self.md_path}" if self.md_path else f"table: neuronjax sweep {self.sweep_file} --gather"
        counts = f"{len(self.ran)} run, {len(self.skipped)} skipped (finished), {len(self.failed)} failed"
        return f"{head}: {counts}; {table}"


def _model_key(config: RunConfig) -> str:
    """Points with equal model sections share one loaded model (path, dtype, mesh, sharding)."""
    import json

    return json.dumps(dataclasses.asdict(config.model), sort_keys=True)


def _record_failure(point: Point, err: BaseException) -> str:
    message = f"{type(err).__name__}: {err}".splitlines()[0]
    os.makedirs(point.run_dir, exist_ok=True)
    with open(os.path.join(point.run_dir, ERROR_FILE), "w") as f:
        f.write(message + "\n\n" + "".join(traceback.format_exception(type(err), err, err.__traceback__)))
    return message


def run_plan(the_plan: Plan, progress: bool = True, log: Callable[[str], None] = print) -> SweepResult:
    """Run the plan's unfinished points (grouped by model, each model loaded once). Under several
    processes (a point on several hosts) every process runs every point; process 0 alone removes
    an earlier attempt's files and records failures."""
    from neuronjax import run as runs
    from neuronjax.distributed import barrier, is_primary

    log = log if is_primary() else (lambda line: None)
    barrier("sweep-planned")  # every process has read the states before any directory changes
    result = SweepResult(the_plan.points, the_plan.states, sweep_file=the_plan.sweep.file)
    selected = the_plan.selected
    todo = [p for p in selected if the_plan.state(p) != FINISHED]
    result.skipped = [p.name for p in selected if the_plan.state(p) == FINISHED]
    order = {}
    for p in todo:
        order.setdefault(_model_key(p.config), len(order))
    todo.sort(key=lambda p: (order[_model_key(p.config)], p.index))
    log(f"sweep {the_plan.sweep.name}: {len(selected)} points, {len(result.skipped)} finished, {len(todo)} to run")
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
        state = the_plan.state(p)
        t0 = time.perf_counter()
        tag = f"[{i}/{len(todo)}] point {p.number} {p.name}"
        log(f"{tag}: {'evaluate' if state == EVALUATE else 'identify + evaluate'}")
        try:
            if lm_error is not None:
                raise lm_error
            if is_primary():
                prepare(p.run_dir, state)
            barrier(f"sweep-prepared-{p.index}")
            if state == EVALUATE:
                sets = runs.load_sets(p.config, lm)
            else:
                sets = runs.identify_run(p.config, lm, progress=progress)
            runs.evaluate_run(p.config, lm, sets, progress=progress)
        except Exception as err:
            result.failed[p.name] = _record_failure(p, err) if is_primary() else str(err)
            log(f"{tag}: FAILED: {result.failed[p.name]}")
            continue
        result.ran.append(p.name)
        log(f"{tag}: done in {time.perf_counter() - t0:.0f} s")
    return result


def run_sweep(sweep_path: str, overrides: Overrides = None, force: bool = False, progress: bool = True,
              log: Callable[[str], None] = print, point: Optional[int] = None) -> SweepResult:  # fmt: skip
    """Run every unfinished point (grouped by model, each model loaded once), then gather the
    table; with `point` (1-based), run only that point and gather nothing."""
    the_plan = plan(sweep_path, overrides, force, point)
    result = run_plan(the_plan, progress, log)
    from neuronjax.distributed import is_primary

    if point is None and is_primary():
        table = gather(the_plan.sweep, the_plan.points)
        result.csv_path, result.md_path = table.csv_path, table.md_path
    return result
