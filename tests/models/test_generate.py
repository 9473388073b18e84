"""Greedy generation with the key/value cache equals transformers' own greedy generation, with and
without a neuron intervention. On the PyTorch side the intervention is a forward pre-hook on the
down projection that scales one neuron at the last position of every call: with transformers'
cache, that is the prompt's last token and then each new token, the positions a last-position
intervention edits."""

import numpy as np
import pytest

import neuronjax
from neuronjax import Intervention
from neuronjax.cached import greedy_tokens
from tests import tiny_models

pytestmark = pytest.mark.torch

LAYER, NEURONS, SCALE, NEW = 1, list(range(0, 48, 3)), -3.0, 12


def _torch_greedy(model, ids, mask, factor=None):
    import torch

    handle = None
    if factor is not None:
        def hook(module, args):
            x = args[0].clone()
            x[:, -1, NEURONS] *= factor
            return (x,)

        handle = model.model.layers[LAYER].mlp.down_proj.register_forward_pre_hook(hook)
    model.generation_config.eos_token_id = None
    try:
        with torch.no_grad():
            out = model.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                                 max_new_tokens=NEW, do_sample=False, pad_token_id=0)  # fmt: skip
    finally:
        if handle is not None:
            handle.remove()
    return out[:, ids.shape[1]:].numpy()


@pytest.mark.parametrize("name", ["llama3_rope", "mistral", "gemma3", "qwen2"])
def test_greedy_tokens_match_transformers(tmp_path, name):
    """mistral and gemma3 have a sliding window of 4 keys, shorter than prompt + new tokens."""
    ref = tiny_models.save(name, tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    ids, mask, _ = tiny_models.batch()
    c = lm.config
    got = np.asarray(greedy_tokens(lm.state, lm.place(ids.astype(np.int32)), lm.place(mask.astype(np.int32)), None,
                                   graphdef=lm.graphdef, max_new=NEW))  # fmt: skip
    np.testing.assert_array_equal(got, _torch_greedy(ref, ids, mask))
    iv = Intervention.on_neurons(c.num_layers, c.intermediate_size, [(LAYER, i) for i in NEURONS], scale=SCALE)
    edited = np.asarray(greedy_tokens(lm.state, lm.place(ids.astype(np.int32)), lm.place(mask.astype(np.int32)), iv,
                                      graphdef=lm.graphdef, max_new=NEW))  # fmt: skip
    want = _torch_greedy(ref, ids, mask, factor=SCALE)
    np.testing.assert_array_equal(edited, want)
    assert (edited != got).any(), "the intervention must change the continuation for the test to mean anything"
