"""Held-out evaluation of neuron sets (NeuronLLM step 7).

    evaluation = evaluate_sets(lm, encoded_heldout, sets, EvaluateConfig())
    evaluation.find("neuronllm", "suppress_good").accuracy     # Interval
    evaluation.save("evaluation.json"); Evaluation.load(...)   # typed round trip
    measured = measure_sets(...)     # the same, with the option scores: measured.predictions()

- `scoring`: option scores of every proxy under many interventions (shared prompt caches).
- `stats`: accuracy, permutation-consistent accuracy, paired bootstrap intervals.
- `conditions`: which conditions are measured (sets, random controls, K curve, comparisons).
- `results`: the typed results (`Evaluation`, `ConditionResult`, `Interval`, ...).
"""

from neuronjax.config import EvaluateConfig
from neuronjax.evaluation.conditions import Condition, Measured, evaluate_sets, measure_sets, set_k
from neuronjax.evaluation.results import (
    METRICS,
    Comparison,
    ConditionResult,
    CrossEvaluation,
    Evaluation,
    Interval,
    Metrics,
)
from neuronjax.evaluation.scoring import Scored, score_interventions
from neuronjax.evaluation.stats import accuracy_stats, bootstrap_indices, difference_stats, per_item

__all__ = [
    "METRICS", "Comparison", "Condition", "ConditionResult", "CrossEvaluation", "EvaluateConfig", "Evaluation",
    "Interval", "Measured", "Metrics", "Scored", "accuracy_stats", "bootstrap_indices", "difference_stats",
    "evaluate_sets", "measure_sets", "per_item", "score_interventions", "set_k",
]  # fmt: skip
