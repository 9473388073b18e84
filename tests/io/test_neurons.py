"""Saved neuron sets round-trip, carry their metadata, and refuse a different model."""

import json
import os

import numpy as np
import pytest

import neuronjax
from neuronjax.errors import ConfigError
from neuronjax.io import NeuronSet, load_neurons, model_fingerprint, save_neurons
from tests import tiny_models

pytestmark = pytest.mark.torch


@pytest.fixture
def lm(tmp_path):
    tiny_models.save("llama2", tmp_path / "m")
    return neuronjax.load_model(str(tmp_path / "m"))


def _result(lm, seed=0):
    rng = np.random.default_rng(seed)
    c = lm.config
    scores = rng.normal(size=(c.num_layers, c.intermediate_size)).astype(np.float32)
    good = scores > 1.5
    bad = scores < -1.5
    return NeuronSet(scores, good, bad, {"model": model_fingerprint(lm), "method": "ace", "z": 5, "k": 3})


def test_round_trip(lm, tmp_path):
    res = _result(lm)
    save_neurons(str(tmp_path / "run"), res)
    back = load_neurons(str(tmp_path / "run"), lm)
    np.testing.assert_array_equal(back.scores, res.scores)
    np.testing.assert_array_equal(back.good, res.good)
    np.testing.assert_array_equal(back.bad, res.bad)
    side = json.load(open(tmp_path / "run" / "neurons.json"))
    assert side["z"] == 5 and side["neuronjax_version"] == neuronjax.__version__
    assert [tuple(x) for x in side["good_neurons"]] == res.good_neurons
    assert side["model"]["weight_sha256"] == model_fingerprint(lm)["weight_sha256"]


def test_refuses_another_model(lm, tmp_path):
    save_neurons(str(tmp_path / "run"), _result(lm))
    tiny_models.save("llama2", tmp_path / "other", seed=1)  # same shapes, other weights
    other = neuronjax.load_model(str(tmp_path / "other"))
    with pytest.raises(ConfigError, match="identified on other weights") as e:
        load_neurons(str(tmp_path / "run"), other)
    assert "neurons.json" in str(e.value) and "model.weight_sha256" in str(e.value)


def test_refuses_another_grid(lm, tmp_path):
    save_neurons(str(tmp_path / "run"), _result(lm))
    tiny_models.save("gpt2", tmp_path / "gpt2")
    with pytest.raises(ConfigError, match="neuron grid"):
        load_neurons(str(tmp_path / "run"), neuronjax.load_model(str(tmp_path / "gpt2")))


def test_unfinished_or_existing_results(lm, tmp_path):
    with pytest.raises(FileNotFoundError, match="no neurons.json"):
        load_neurons(str(tmp_path))
    save_neurons(str(tmp_path / "run"), _result(lm))
    with pytest.raises(FileExistsError, match="already holds a result"):
        save_neurons(str(tmp_path / "run"), _result(lm))
    assert os.path.isdir(tmp_path / "run" / "arrays")
