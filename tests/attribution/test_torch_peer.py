"""The PyTorch peer of the benchmark equals our attribution (independent implementations of the
same definitions), on a tiny Llama, a tiny GPT-2 and on SmolLM2."""

import os

import numpy as np
import pytest

import neuronjax
from neuronjax.attribution import PromptBatch, attribute
from tests import tiny_models

pytestmark = pytest.mark.torch


def _batch(vocab, seed=0):
    ids, mask, _ = tiny_models.batch(vocab=vocab, seed=seed)
    rng = np.random.default_rng(seed)
    opts = rng.integers(0, vocab, (2, 4, 2)).astype(np.int32)
    opts[1, 2, 1] = -1
    return PromptBatch(ids.astype(np.int32), mask.astype(np.int32), opts, np.array([2, 0], np.int32))


@pytest.mark.parametrize("name", ["llama3_rope", "gpt2"])
@pytest.mark.parametrize("method,steps", [("ig", 5), ("grad_x_act", 1)])
def test_peer_equals_ours_on_tiny_models(tmp_path, name, method, steps):
    from neuronjax.bench import torch_peer

    ref = tiny_models.save(name, tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    batch = _batch(lm.config.vocab_size)
    ours = attribute(lm, batch, method, steps)
    peer = torch_peer.attribute(ref, batch.input_ids, batch.attention_mask, batch.option_ids, batch.gold, method, steps)
    scale = np.abs(peer["scores"]).max()
    assert scale > 1e-2
    np.testing.assert_allclose(np.asarray(ours.scores), peer["scores"], atol=1e-4 * scale, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(ours.f), peer["f"], atol=1e-4)


@pytest.mark.real_model
def test_peer_equals_ours_on_smollm2():
    import torch
    from transformers import AutoModelForCausalLM

    from neuronjax.bench import torch_peer

    path = neuronjax.default_model_path()
    lm = neuronjax.load_model(path)
    ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                               dtype=torch.float32).eval()  # fmt: skip
    ids, mask = lm.encode(["Paris is the capital of", "The largest planet is"])
    opts = np.array([[[lm.tokenizer.encode(" " + w, add_special_tokens=False)[0]] for w in words]
                     for words in (["France", "Spain", "Italy", "Peru"], ["Jupiter", "Mars", "Venus", "Earth"])],
                    np.int32)  # fmt: skip
    batch = PromptBatch(ids, mask, opts, np.array([0, 0], np.int32))
    ours = attribute(lm, batch, "ig", 4)
    peer = torch_peer.attribute(ref, ids, mask, opts, batch.gold, "ig", 4)
    scale = np.abs(peer["scores"]).max()
    np.testing.assert_allclose(np.asarray(ours.scores), peer["scores"], atol=1e-4 * scale, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(ours.f), peer["f"], atol=1e-4)
    assert float(ours.f[0]) > -0.7  # the model does know the answer
