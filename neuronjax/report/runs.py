"""What the report reads from a run directory: its evaluation (evaluation.json), its cross-task
evaluation (cross.json), its neuron cards (cards.json) and its saved neuron sets
(neurons/<method>/), with errors that name the missing file and the command that writes it."""

from __future__ import annotations

import os
from typing import Optional, Sequence

from neuronjax.evaluation.results import CrossEvaluation, Evaluation

EVALUATION = "evaluation.json"
CROSS = "cross.json"
CARDS = "cards.json"


def _read(cls, run_dir: str, name: str):
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such run directory; `neuronjax run CONFIG` creates and evaluates one")
    path = os.path.join(run_dir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: not evaluated yet; run `neuronjax evaluate {run_dir}`")
    try:
        return cls.load(path)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not in the format neuronjax writes ({type(err).__name__}: {err}); "
                         f"run `neuronjax evaluate {run_dir}` again") from err  # fmt: skip


def load_evaluation(run_dir: str) -> Evaluation:
    """The run's evaluation.json; FileNotFoundError naming the directory or the file when missing."""
    return _read(Evaluation, run_dir, EVALUATION)


def load_cross(run_dir: str) -> Optional[CrossEvaluation]:
    """The run's cross.json, or None when the run has no cross-task evaluation."""
    if not os.path.exists(os.path.join(run_dir, CROSS)):
        return None
    return _read(CrossEvaluation, run_dir, CROSS)


def load_cards(run_dir: str):
    """The run's neuron cards (`neuronjax.cards.NeuronCards`), or None when it has none."""
    from neuronjax.cards import NeuronCards

    if not os.path.exists(os.path.join(run_dir, CARDS)):
        return None
    return _read(NeuronCards, run_dir, CARDS)


def identify_stats(evaluation: Evaluation) -> dict:
    """Identification statistics (items, proxies, prompts_per_second) of the run's first method."""
    return next(iter(evaluation.identify.values()), {})


def run_name(evaluation: Evaluation, run_dir: str) -> str:
    return evaluation.run or os.path.basename(run_dir)


def run_methods(run_dir: str) -> list[str]:
    """The run's methods in their configured order (those with saved neurons, then the rest)."""
    order: list[str] = []
    if os.path.exists(os.path.join(run_dir, EVALUATION)):
        order += list(load_evaluation(run_dir).methods)
    cfg = os.path.join(run_dir, "config.yaml")
    if os.path.exists(cfg):
        import yaml

        with open(cfg) as f:
            order += list(((yaml.safe_load(f) or {}).get("identify") or {}).get("methods") or [])
    neurons = os.path.join(run_dir, "neurons")
    saved = sorted(os.listdir(neurons)) if os.path.isdir(neurons) else []
    saved = [m for m in saved if os.path.exists(os.path.join(neurons, m, "neurons.json"))]
    return [m for m in dict.fromkeys(order + saved) if m in saved]


def load_run_sets(run_dir: str, methods: Sequence[str] = ()) -> dict:
    """{method: NeuronSet} of the run's saved neurons (all, or these methods)."""
    from neuronjax.io.neurons import load_neurons

    names = [m for m in run_methods(run_dir) if not methods or m in methods]
    return {m: load_neurons(os.path.join(run_dir, "neurons", m)) for m in names}


def set_label(ns, run_dir: str) -> str:
    """A neuron set's task, with its run's name when that differs."""
    task = ns.meta.get("task", {}).get("name", "?")
    run = os.path.basename(os.path.normpath(run_dir))
    return task if run == task else f"{task} ({run})"
