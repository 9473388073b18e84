"""Neuron sets and interventions that do not fit the model they are used with."""

import re

import numpy as np
import pytest

from neuronjax.errors import ConfigError
from neuronjax.evaluation import evaluate_sets
from neuronjax.intervention import Intervention, from_masks
from neuronjax.io.neurons import NeuronSet, load_neurons, model_fingerprint, save_neurons
from tests.bad_input.helpers import tiny_lm


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(layers=2, mlp=48, seed=0)


def _result(lm, meta=None) -> NeuronSet:
    c = lm.config
    scores = np.random.default_rng(0).normal(size=(c.num_layers, c.intermediate_size)).astype(np.float32)
    meta = {"model": model_fingerprint(lm)} if meta is None else meta
    return NeuronSet(scores, scores > 1.5, scores < -1.5, meta)


def test_mask_from_another_model(lm, tmp_path):
    save_neurons(str(tmp_path / "run"), _result(lm))
    other = tiny_lm(layers=2, mlp=48, seed=1, source="other-llama")  # same grid, other weights
    sidecar = tmp_path / "run" / "neurons.json"
    message = (f"{sidecar}: field 'model.weight_sha256' = {model_fingerprint(lm)['weight_sha256']} (model "
               f"'tiny-llama') does not match the loaded model other-llama ({model_fingerprint(other)['weight_sha256']}); "
               "these neurons were identified on other weights")  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_neurons(str(tmp_path / "run"), other)


def test_mask_with_another_layer_count(lm, tmp_path):
    save_neurons(str(tmp_path / "run"), _result(lm))
    deeper = tiny_lm(layers=3, mlp=48, source="deeper-llama")
    message = (f"{tmp_path / 'run' / 'neurons.json'}: field 'model' describes a 2 x 48 neuron grid; the loaded model "
               "(deeper-llama) has 3 x 48")  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_neurons(str(tmp_path / "run"), deeper)


def test_mask_without_a_model_fingerprint(lm, tmp_path):
    save_neurons(str(tmp_path / "run"), _result(lm, meta={"method": {"name": "handmade"}}))
    message = (f"{tmp_path / 'run' / 'neurons.json'}: field 'model' is missing; expected the fingerprint of the model "
               "the neurons were identified on, to check them against tiny-llama")  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_neurons(str(tmp_path / "run"), lm)
    assert load_neurons(str(tmp_path / "run")).good.shape == (2, 48)  # without a model: read as it is


def test_set_of_another_grid_given_to_evaluation(lm):
    """A set loaded without its model check (or built by hand) is refused before any scoring."""
    wrong = _result(tiny_lm(layers=3, mlp=48))
    message = ("neuron set 'handmade': field 'good' has shape (3, 48); the model tiny-llama has 2 layers x 48 "
               "neurons (a set identified on another model?)")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate_sets(lm, None, {"handmade": wrong})


def test_intervention_of_the_wrong_shape(lm):
    ids = np.ones((1, 4), np.int32)
    with pytest.raises(ValueError, match=re.escape("intervention: field 'scale' has shape (3, 48); this model needs (layers=2, mlp=48)")):
        lm.logits(ids, intervention=Intervention.identity(3, 48))
    good = Intervention.identity(2, 48)
    shifted = Intervention(good.scale, np.zeros((2, 47), np.float32), good.positions)
    with pytest.raises(ValueError, match=re.escape("intervention: field 'shift' has shape (2, 47); this model needs (layers=2, mlp=48)")):
        lm.logits(ids, intervention=shifted)


def test_masks_of_different_shapes():
    with pytest.raises(ValueError, match=re.escape("good (2, 48) and bad (3, 48) masks must both be [layers, mlp]")):
        from_masks("enhancer", np.zeros((2, 48), bool), np.zeros((3, 48), bool))


def test_neuron_outside_the_grid():
    with pytest.raises(IndexError, match=re.escape("neuron (2, 0) is outside the model's 2 layers x 48 neurons")):
        Intervention.on_neurons(2, 48, [(0, 1), (2, 0)])
