"""Identification on a mesh (items on the data axis, neurons like the MLP weights) gives the
scores and sets of one device."""

import numpy as np
import pytest

import neuronjax
from neuronjax import sharding as sh
from neuronjax.evaluation import EvaluateConfig, evaluate_sets
from neuronjax.identify import AttributionConfig, identify
from neuronjax.methods import KnowledgeNeurons, LAPE, NeuronLLM
from tests import tiny_models
from tests.methods import planted

pytestmark = [pytest.mark.torch, pytest.mark.multidevice]


@pytest.mark.parametrize("mesh_shape", [{"data": 8}, {"data": 2, "tensor": 4}, {"data": 2, "fsdp": 2, "tensor": 2}])
def test_identify_and_evaluate_on_a_mesh_equal_one_device(tmp_path, mesh_shape):
    tiny_models.save("llama3_rope", tmp_path)
    one = neuronjax.load_model(str(tmp_path))
    many = neuronjax.load_model(str(tmp_path), mesh=sh.make_mesh(mesh_shape))
    methods = [NeuronLLM(k=6, z=10), KnowledgeNeurons(k=6), LAPE(k=6)]
    task = planted.task(num_items=10, batch_size=8)
    a = identify(one, task, methods, AttributionConfig("ig", steps=3), block_items=8)
    b = identify(many, task, methods, AttributionConfig("ig", steps=3), block_items=8)
    for name in a:
        scale = np.abs(a[name].scores).max()
        np.testing.assert_allclose(b[name].scores, a[name].scores, rtol=1e-4, atol=1e-5 * scale + 1e-7)
        np.testing.assert_array_equal(b[name].good, a[name].good)
        np.testing.assert_array_equal(b[name].bad, a[name].bad)
    assert a["neuronllm"].good.sum() == 6
    cfg = EvaluateConfig(random_seeds=1, bootstrap=50)
    ea, eb = evaluate_sets(one, task, a, cfg).to_json(), evaluate_sets(many, task, a, cfg).to_json()
    assert [r["accuracy"] for r in ea["rows"]] == [r["accuracy"] for r in eb["rows"]]
