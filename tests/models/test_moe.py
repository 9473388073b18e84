"""Mixture of experts (Mixtral): a neuron of an expert is a neuron of the layer's grid (expert-major:
expert e's neuron i is e * expert_size + i). Suppressing or enhancing one at the last position equals
editing that expert's down-projection column in the PyTorch model; a neuron of an expert the token
is not routed to has activation 0 and an intervention on it changes nothing."""

import copy

import numpy as np
import pytest

import neuronjax
from neuronjax import Intervention
from tests import tiny_models
from tests.models.test_intervention import _last_only_reference

pytestmark = pytest.mark.torch

LAYER = 1


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixtral")
    ref = tiny_models.save("mixtral", d)
    return ref, neuronjax.load_model(str(d))


def _edited(ref, neuron, size, factor):
    import torch

    edited = copy.deepcopy(ref)
    expert, i = divmod(neuron, size)
    with torch.no_grad():
        # transformers keeps the experts' down projections fused in memory: [experts, embed, expert_size]
        edited.model.layers[LAYER].mlp.experts.down_proj[expert, :, i] *= factor
    return edited


def test_config_lays_experts_on_the_neuron_axis(models):
    ref, lm = models
    c = lm.config
    assert (c.num_experts, c.experts_per_token, c.expert_size) == (4, 2, 12) and c.intermediate_size == 48


@pytest.mark.parametrize("factor", [0.0, 2.0])
def test_routed_expert_neuron_equals_editing_its_down_projection_column(models, factor):
    ref, lm = models
    ids, mask, pos = tiny_models.batch()
    h = np.asarray(lm.forward(ids, mask, capture=True).activations)[:, LAYER]  # [batch, mlp] at the last position
    routed = np.flatnonzero((np.abs(h) > 1e-3).all(axis=0))  # active in both rows
    assert len(routed) >= lm.config.expert_size  # at least one expert reaches both rows' last tokens
    neuron = int(routed[np.argmax(np.abs(h[:, routed]).min(axis=0))])
    c = lm.config
    iv = Intervention.on_neurons(c.num_layers, c.intermediate_size, [(LAYER, neuron)], scale=factor)
    got = np.asarray(lm.logits(ids, mask, iv))[:, -1]
    want = _last_only_reference(ref, _edited(ref, neuron, c.expert_size, factor), ids, mask, pos)
    base = np.asarray(lm.logits(ids, mask))[:, -1]
    assert np.abs(want - base).max() > 1e-3, "the edit must matter for the test to mean anything"
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_unrouted_expert_neuron_is_zero_and_untouched(models):
    ref, lm = models
    ids, mask, _ = tiny_models.batch()
    h = np.asarray(lm.forward(ids, mask, capture=True).activations)[0, LAYER]
    off = np.flatnonzero(h == 0.0)
    assert len(off) == (lm.config.num_experts - lm.config.experts_per_token) * lm.config.expert_size
    c = lm.config
    iv = Intervention.on_neurons(
        c.num_layers, c.intermediate_size, [(LAYER, int(i)) for i in off], scale=5.0, shift=0.0
    )
    np.testing.assert_array_equal(
        np.asarray(lm.logits(ids[:1], mask[:1], iv))[0, -1], np.asarray(lm.logits(ids[:1], mask[:1]))[0, -1]
    )


def test_a_missing_expert_is_named_by_its_checkpoint_tensor(tmp_path):
    from safetensors.numpy import save_file

    from neuronjax.errors import CheckpointError
    from neuronjax.loader import safetensors_io

    tiny_models.save("mixtral", tmp_path)
    f = str(tmp_path / "model.safetensors")
    tensors = {n: r() for n, r in safetensors_io.tensors(f)}
    tensors.pop("model.layers.1.block_sparse_moe.experts.2.w3.weight")
    save_file(tensors, f)
    with pytest.raises(CheckpointError) as e:
        neuronjax.load_model(str(tmp_path))
    assert f in str(e.value) and "'model.layers.1.block_sparse_moe.experts.2.w3.weight'" in str(e.value)
