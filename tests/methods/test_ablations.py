"""NeuronLLM's ablations run as methods on a planted attribution array where each must differ
from the full method, with every score computed by hand.

One layer of six neurons, four items of three AQUA proxies, z = 6 (every neuron of the right sign
enters G_j / B_j):

    n0  a task neuron:      +1 on every proxy              ES_j = +3 on every item
    n1  a letter neuron:    +5 on proxy 0, -2.5 on 1 and 2 ES_j =  0 (AQUA cancels it)
    n2  an ambiguous one:   +4 per proxy on items 0, 1;    ES_j = +12, +12, -3, -3
                            -1 per proxy on items 2, 3
    n3  a task "bad" one:   -1 on every proxy              ES_j = -3
    n4, n5  silent
"""

import numpy as np
import pytest

from neuronjax.methods import NeuronLLM
from neuronjax.methods.base import ItemBlock, run_method
from neuronjax.methods.neuronllm import NeuronLLMNoMask, NeuronLLMOneProxy


def _planted() -> ItemBlock:
    attr = np.zeros((4, 3, 1, 6), np.float32)
    attr[:, :, 0, 0] = 1.0
    attr[:, 0, 0, 1], attr[:, 1:, 0, 1] = 5.0, -2.5
    attr[:2, :, 0, 2], attr[2:, :, 0, 2] = 4.0, -1.0
    attr[:, :, 0, 3] = -1.0
    return ItemBlock(valid=np.ones(4, bool), correct=np.ones((4, 3), bool), attr=attr)


@pytest.mark.parametrize(
    "method, scores, good, bad",
    [
        # n2 is in G_j (items 0, 1) and in B_j (items 2, 3): ambiguous, 0; n1 cancels to 0
        (NeuronLLM(k=1, z=6), [3, 0, 0, -3, 0, 0], 0, 3),
        # proxy 0 only: n1 scores its +5 and wins the good slot; n2 (4, 4, -1, -1) is still ambiguous
        (NeuronLLMOneProxy(k=1, z=6), [1, 5, 0, -1, 0, 0], 1, 3),
        # no mask: n2 keeps (12 + 12 - 3 - 3) / 4 = 4.5 and wins the good slot
        (NeuronLLMNoMask(k=1, z=6), [3, 0, 4.5, -3, 0, 0], 2, 3),
    ],
)
def test_each_ablation_differs_where_it_must(method, scores, good, bad):
    ns = run_method(method, [_planted()], 1, 6)
    np.testing.assert_allclose(ns.scores[0], scores, rtol=0, atol=1e-6)
    assert np.flatnonzero(ns.good[0]).tolist() == [good] and np.flatnonzero(ns.bad[0]).tolist() == [bad]
    assert ns.meta["method"]["name"] == method.name
