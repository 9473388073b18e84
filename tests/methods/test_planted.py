"""Planted neurons: ACE must find exactly the neurons written into the model by hand, and the
probability-target ablation must miss the bad ones (see `planted`)."""

import numpy as np
import pytest

from neuronjax.identify import AttributionConfig, identify
from neuronjax.methods import KnowledgeNeurons, NeuronLLM, NeuronLLMOneProxy, NeuronLLMProb
from tests.methods import planted


@pytest.fixture(scope="module")
def results():
    lm = planted.model()
    methods = [NeuronLLM(k=2, z=4), NeuronLLMProb(k=2, z=4), NeuronLLMOneProxy(k=2, z=4), KnowledgeNeurons(k=2)]
    return identify(lm, planted.task(), methods, AttributionConfig("ig", steps=8), block_items=5)


def test_ace_finds_the_planted_good_and_bad_neurons(results):
    ns = results["neuronllm"]
    np.testing.assert_array_equal(ns.good, planted.mask(planted.GOOD))
    np.testing.assert_array_equal(ns.bad, planted.mask(planted.BAD))
    # The neurons that only move a non-option token do not favour any option: far from the top.
    fill = [ns.scores[layer, i] for layer, i in planted.FILL]
    assert max(abs(f) for f in fill) < 0.2 * min(abs(ns.scores[layer, i]) for layer, i in planted.BAD)


def test_probability_target_misses_the_bad_neurons(results):
    ns = results["neuronllm_prob"]
    np.testing.assert_array_equal(ns.good, planted.mask(planted.GOOD))
    assert not (ns.bad & planted.mask(planted.BAD)).any()
    np.testing.assert_array_equal(ns.bad, planted.mask(planted.FILL))  # it blames the mass-moving neurons instead


def test_one_proxy_and_knowledge_neurons_find_the_good_ones(results):
    np.testing.assert_array_equal(results["neuronllm_one_proxy"].good, planted.mask(planted.GOOD))
    kn = results["kn_ig"]
    np.testing.assert_array_equal(kn.good, planted.mask(planted.GOOD))
    assert not kn.bad.any()


def test_every_item_was_seen_once(results):
    stats = results["neuronllm"].meta["stats"]
    assert stats["items"] == 12 and stats["proxies"] == 36


def test_ace_finds_the_planted_neurons_of_a_mixture_of_experts():
    """The planted model with a mixture-of-experts FFN: the planted neurons of the experts every
    token is routed to are found; a planted neuron of an expert no token reaches has activation
    and attribution 0 (it is not counted), and is in neither set."""
    lm = planted.model(moe=True)
    ns = identify(lm, planted.task(), [NeuronLLM(k=2, z=4)], AttributionConfig("ig", steps=8), block_items=5)[
        "neuronllm"
    ]
    np.testing.assert_array_equal(ns.good, planted.mask(planted.MOE_GOOD))
    np.testing.assert_array_equal(ns.bad, planted.mask(planted.MOE_BAD))
    ((layer, i),) = planted.MOE_UNROUTED
    assert ns.scores[layer, i] == 0.0
    task = planted.task()
    ids, mask = task.records[0].prompt_ids[None], np.ones((1, len(task.records[0].prompt_ids)), np.int32)
    h = np.asarray(lm.forward(ids, mask, capture=True).activations)[0, layer]
    assert h[i] == 0.0 and abs(h[5]) > 1.0  # unrouted: exactly 0; a routed planted neuron: strongly active
    # The set names its neurons by (layer, expert, index within the expert): 12 neurons per expert.
    assert ns.experts == planted.MOE["experts"] and "4 experts x 12 neurons" in repr(ns)
    rows = ns.to_dataframe()
    assert [(r.layer, r.expert, r.expert_index) for r in rows.itertuples() if r.side == "good"] == [
        (layer, i // 12, i % 12) for layer, i in sorted(planted.MOE_GOOD, key=lambda n: -ns.scores[n])
    ]
    from neuronjax.io.export import neuron_rows

    assert {(r["layer"], r["expert"], r["expert_index"]) for r in neuron_rows("neuronllm", ns) if r["side"] == "bad"} == {
        (1, 0, 7), (1, 1, 7)}  # fmt: skip
