"""identify -> save -> load -> evaluate gives the numbers of the in-memory sets."""

import json

import numpy as np

from neuronjax.evaluate import EvaluateConfig, evaluate_sets
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
    assert json.dumps(from_disk, sort_keys=True) == json.dumps(in_memory, sort_keys=True)
    # The random set copies NeuronLLM's per-layer counts.
    np.testing.assert_array_equal(sets["random"].good.sum(axis=1), sets["neuronllm"].good.sum(axis=1))
