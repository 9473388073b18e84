"""Sweeps: one YAML file under configs/sweeps/ expands into many runs (models x tasks x methods x
K x seeds ...), runs the ones not finished yet, and gathers every run's evaluation into one table.

    neuronjax sweep FILE [key=value ...]            every unfinished point, then the table
    neuronjax sweep FILE --dry-run                  the points (numbered), run directories, states
    neuronjax sweep FILE --point I                  point I alone (e.g. --point $SLURM_ARRAY_TASK_ID)
    neuronjax sweep FILE --gather                   the table from what is finished, running nothing
    neuronjax sweep FILE --count                    how many points (a job array's size)

The parts: `schema` (the sweep file, its keys checked against the run config, labels), `plan`
(expansion into points through the one config layer; each point's state), `execute` (running
points, each model loaded once) and `gather` (results.csv and results.md). `launch/slurm.sh
--sweep FILE` runs a sweep as a SLURM job array, one point per array task, then gathers.
"""

from neuronjax.sweep.execute import SweepResult, run_plan, run_sweep
from neuronjax.sweep.gather import Table, gather, gather_sweep
from neuronjax.sweep.plan import (
    ERROR_FILE,
    EVALUATE,
    FINISHED,
    REPLACE,
    RUN,
    Plan,
    Point,
    config_differences,
    expand,
    plan,
    point_state,
)
from neuronjax.sweep.schema import SweepConfig, auto_label, load_sweep

__all__ = [
    "ERROR_FILE", "EVALUATE", "FINISHED", "REPLACE", "RUN", "Plan", "Point", "SweepConfig", "SweepResult", "Table",
    "auto_label", "config_differences", "expand", "gather", "gather_sweep", "load_sweep", "plan", "point_state",
    "run_plan", "run_sweep",
]  # fmt: skip
