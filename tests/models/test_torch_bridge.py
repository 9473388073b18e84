"""The PyTorch bridge: a transformers model hooked by `neuronjax.torch.apply_neuron_set` gives the
logits of our `lm.logits(ids, mask, from_masks(...))`, for every mode of MODE_EDITS and both
position policies, on tiny Llama, GPT-2, GPT-NeoX, OLMo-2 and Phi-3 models and on the embedded SmolLM2 (loaded in
transformers from its GGUF). Measured agreement (float32, max |difference| of logits): tiny
models <= 1.2e-5 over every real position; SmolLM2 (logits up to ~30) <= 7.5e-5 at the last
position, where the unhooked models already differ by 5.9e-5."""

import os

import numpy as np
import pytest

import neuronjax
from neuronjax.generate import greedy_tokens
from neuronjax.errors import InputError
from neuronjax.intervention import MODE_EDITS, from_masks
from neuronjax.io import NeuronSet, save_neurons
from neuronjax.torch import apply_neuron_set
from tests import tiny_models

pytestmark = pytest.mark.torch

TOL = 1e-4
VALUE = 0.7  # the constant of set_good / set_bad


def _neurons(layers, mlp, k, seed=0):
    """k good and k other bad neurons, drawn at random over the grid."""
    flat = np.random.default_rng(seed).permutation(layers * mlp)
    good, bad = np.zeros(layers * mlp, bool), np.zeros(layers * mlp, bool)
    good[flat[:k]], bad[flat[k : 2 * k]] = True, True
    scores = np.where(good, 1.0, np.where(bad, -1.0, 0.0)).astype(np.float32)
    return NeuronSet(scores.reshape(layers, mlp), good.reshape(layers, mlp), bad.reshape(layers, mlp), {})


@pytest.fixture(scope="module", params=["llama2", "gpt2", "gpt_neox", "olmo2", "phi3"])
def tiny(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    ref = tiny_models.save(request.param, d)
    lm = neuronjax.load_model(str(d))
    return ref, lm, _neurons(lm.config.num_layers, lm.config.intermediate_size, k=12)


@pytest.mark.parametrize("positions", ["last", "all"])
@pytest.mark.parametrize("mode", list(MODE_EDITS))
def test_hooked_transformers_equals_our_intervention(tiny, mode, positions):
    ref, lm, ns = tiny
    ids, mask, pos = tiny_models.batch()
    want = np.asarray(lm.logits(ids, mask, from_masks(mode, ns.good, ns.bad, positions == "all", VALUE)))
    base = tiny_models.torch_logits(ref, ids, mask, pos)
    with apply_neuron_set(ref, ns, mode, positions, VALUE):
        got = tiny_models.torch_logits(ref, ids, mask, pos)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=TOL, rtol=0)
    if mode != "none":
        assert np.abs(got[:, -1] - base[:, -1]).max() > 0.05, "the edit must move the logits for the test to mean anything"
    np.testing.assert_array_equal(tiny_models.torch_logits(ref, ids, mask, pos), base)  # the hooks came off


def test_right_padded_rows_read_the_attention_mask(tiny):
    ref, lm, ns = tiny
    ids, mask, _ = tiny_models.batch()
    right_ids, right_mask = np.zeros_like(ids), np.zeros_like(mask)
    for i, n in enumerate(mask.sum(1)):
        right_ids[i, :n], right_mask[i, :n] = ids[i, -n:], 1
    pos = np.maximum(np.cumsum(right_mask, axis=1) - 1, 0)
    want = np.asarray(lm.logits(right_ids, right_mask, from_masks("enhancer", ns.good, ns.bad)))
    hooks = apply_neuron_set(ref, ns, "enhancer")
    got = tiny_models.torch_logits(ref, right_ids, right_mask, pos)
    hooks.remove()
    last = mask.sum(1) - 1
    rows = np.arange(len(last))
    np.testing.assert_allclose(got[rows, last], want[rows, last], atol=TOL, rtol=0)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_greedy_generation_equals_ours(tmp_path, positions):
    """transformers' cached generate under the hooks gives our cached greedy tokens: each new token
    is the last position of its step, under either policy."""
    import torch

    ref = tiny_models.save("llama2", tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    ns = _neurons(lm.config.num_layers, lm.config.intermediate_size, k=12, seed=1)
    ids, mask, _ = tiny_models.batch()
    iv = from_masks("degrader", ns.good, ns.bad, positions == "all")
    want = np.asarray(greedy_tokens(lm.state, lm.place(ids.astype(np.int32)), lm.place(mask.astype(np.int32)), iv,
                                    graphdef=lm.graphdef, max_new=10))  # fmt: skip
    ref.generation_config.eos_token_id = None
    with apply_neuron_set(ref, ns, "degrader", positions), torch.no_grad():
        out = ref.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), max_new_tokens=10,
                           do_sample=False, pad_token_id=0)  # fmt: skip
    np.testing.assert_array_equal(out[:, ids.shape[1] :].numpy(), want)


def test_saved_set_by_directory_and_by_safetensors_file(tiny, tmp_path):
    ref, _, ns = tiny
    ids, mask, pos = tiny_models.batch()
    save_neurons(str(tmp_path / "set"), NeuronSet(ns.scores, ns.good, ns.bad, {"method": {"name": "handmade"}}))
    with apply_neuron_set(ref, ns, "enhancer"):
        want = tiny_models.torch_logits(ref, ids, mask, pos)
    for source in (tmp_path / "set", tmp_path / "set" / "neurons.safetensors"):
        with apply_neuron_set(ref, str(source), "enhancer"):
            np.testing.assert_array_equal(tiny_models.torch_logits(ref, ids, mask, pos), want)


def test_errors_name_the_model(tiny):
    import torch

    ref, lm, ns = tiny
    with pytest.raises(InputError, match=r"Linear \(model_type None\): no known down projection to hook"):
        apply_neuron_set(torch.nn.Linear(2, 2), ns, "enhancer")
    small = _neurons(2, 5, k=1)
    c = lm.config
    grid = f"the neuron set is a 2 x 5 grid \\(layers x mlp\\); {type(ref).__name__} has {c.num_layers} layers x"
    with pytest.raises(InputError, match=grid):
        apply_neuron_set(ref, small, "enhancer")
    with pytest.raises(InputError, match="intervention mode 'boost' unknown"):
        apply_neuron_set(ref, ns, "boost")
    with pytest.raises(InputError, match="positions = 'first'"):
        apply_neuron_set(ref, ns, "enhancer", positions="first")


@pytest.mark.real_model
@pytest.mark.slow
def test_smollm2_hooked_equals_ours():
    import torch
    from transformers import AutoModelForCausalLM

    from tests.models.test_smollm2 import PROMPTS

    path = neuronjax.default_model_path()
    lm = neuronjax.load_model(path)
    ref = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()
    ns = _neurons(lm.config.num_layers, lm.config.intermediate_size, k=100)
    ids, mask = lm.encode(PROMPTS)
    pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    cases = [(mode, "last") for mode in MODE_EDITS] + [(mode, "all") for mode in ("set_good", "enhancer")]
    for mode, positions in cases:
        want = np.asarray(lm.logits(ids, mask, from_masks(mode, ns.good, ns.bad, positions == "all", VALUE)))
        with apply_neuron_set(ref, ns, mode, positions, VALUE):
            got = tiny_models.torch_logits(ref, ids.astype(np.int64), mask.astype(np.int64), pos)
        np.testing.assert_allclose(got[:, -1], want[:, -1], atol=TOL, rtol=0, err_msg=f"{mode} at {positions}")
