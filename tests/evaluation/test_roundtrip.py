"""identify -> save -> load -> evaluate gives the numbers of the in-memory sets."""

import json

import numpy as np
import pytest

from neuronjax.evaluation import EvaluateConfig, Evaluation, evaluate_sets
from neuronjax.identify import AttributionConfig, identify
from neuronjax.io.neurons import load_neurons, save_neurons
from neuronjax.methods import KnowledgeNeurons, NeuronLLM, Random
from tests.methods import planted


def test_saved_sets_evaluate_like_the_in_memory_ones(tmp_path):
    lm = planted.model()
    methods = [NeuronLLM(k=3, z=4), KnowledgeNeurons(k=3), Random(k=3, seed=5)]
    sets = identify(lm, planted.task(num_items=9), methods, AttributionConfig("grad_x_act"), block_items=4)
    held_out = planted.task(num_items=6, seed=1)
    cfg = EvaluateConfig(random_seeds=2, bootstrap=100, k_values=(1, 4))
    in_memory = evaluate_sets(lm, held_out, sets, cfg)
    loaded = {}
    for name, ns in sets.items():
        save_neurons(str(tmp_path / name), ns)
        loaded[name] = load_neurons(str(tmp_path / name), lm)
        np.testing.assert_array_equal(loaded[name].scores, ns.scores)
        np.testing.assert_array_equal(loaded[name].good, ns.good)
        np.testing.assert_array_equal(loaded[name].bad, ns.bad)
        assert loaded[name].meta["method"] == json.loads(json.dumps(ns.meta["method"]))
    from_disk = evaluate_sets(lm, held_out, loaded, cfg)
    assert json.dumps(from_disk.to_json(), sort_keys=True) == json.dumps(in_memory.to_json(), sort_keys=True)
    assert Evaluation.from_json(json.loads(json.dumps(in_memory.to_json()))) == in_memory  # typed round trip
    # The random set copies NeuronLLM's per-layer counts.
    np.testing.assert_array_equal(sets["random"].good.sum(axis=1), sets["neuronllm"].good.sum(axis=1))


@pytest.mark.parametrize("name", ["data/pre_holm_default_rr16", "learned/evaluation", "world_facts/evaluation",
                                  "arithmetic/evaluation", "default/evaluation", "default_answer/evaluation",
                                  "world_facts_subject/evaluation", "default_rr16/evaluation"])  # fmt: skip
def test_committed_evaluations_read_back_unchanged(name):
    """The evaluation.json files of the results in docs/results/ (with corrected verdicts), and one
    written before the typed results and the corrected verdicts existed (kept under
    tests/evaluation/data/), read into `Evaluation` and write back to the same JSON."""
    import os

    here = os.path.dirname(__file__)
    base = here if name.startswith("data/") else os.path.join(here, "..", "..", "docs", "results")
    path = os.path.join(base, f"{name}.json")
    raw = json.load(open(path))
    back = Evaluation.from_json(raw).to_json()
    raw.setdefault("compare", [])
    assert back == raw
