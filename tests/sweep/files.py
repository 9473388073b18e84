"""Sweep files for the tests: a small base run config, a 2 tasks x 2 methods x 2 K sweep over it
(task paths relative to the sweep file), and an evaluation to stand in for a finished point."""

import os

import yaml

from neuronjax.evaluation.results import ConditionResult, Evaluation, Metrics
from tests import ROOT as REPO

TASKS = os.path.join(REPO, "configs", "tasks")


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def base_config(directory, model_path=None) -> str:
    cfg = {
        "name": "base",
        "task": os.path.join(TASKS, "world_facts.yaml"),
        "model": {"path": model_path},
        "identify": {"methods": ["neuronllm"], "k": 5, "z": 10, "attribution": {"method": "ig", "steps": 2, "groups": 1}},
        "evaluate": {"modes": ["suppress_good", "enhancer"], "random_seeds": 1, "bootstrap": 20, "k_values": []},
    }  # fmt: skip
    return write_yaml(directory / "base.yaml", cfg)


def sweep_file(directory, **changes) -> str:
    """A sweep file in `directory` (task paths relative to it) over a base config beside it."""
    rel = os.path.relpath(TASKS, directory)
    raw = {
        "name": "tiny_sweep",
        "base": "base.yaml",
        "output": str(directory / "out"),
        "overrides": {"task.split.max_identify": 3, "task.split.max_eval": 3},
        "grid": {
            "task": [f"{rel}/world_facts.yaml", f"{rel}/arithmetic.yaml"],
            "identify.methods": [["neuronllm"], ["mean_activation", "random"]],
            "identify.k": [3, 5],
        },
    }
    raw.update(changes)
    raw = {k: v for k, v in raw.items() if v is not None}
    return write_yaml(directory / "sweep.yaml", raw)


NAMES = [
    "world_facts-neuronllm-k3", "world_facts-neuronllm-k5",
    "world_facts-mean_activation+random-k3", "world_facts-mean_activation+random-k5",
    "arithmetic-neuronllm-k3", "arithmetic-neuronllm-k5",
    "arithmetic-mean_activation+random-k3", "arithmetic-mean_activation+random-k5",
]  # fmt: skip


def evaluation_of(iv, items=1) -> Evaluation:
    """An evaluation of the unedited model alone, every interval `iv`."""
    none = ConditionResult("none", "none", 0, False, 0, 0, Metrics(iv, iv), Metrics(iv, iv), None, ())
    return Evaluation("t", items, 3 * items, False, (0,), 20, (none,))
