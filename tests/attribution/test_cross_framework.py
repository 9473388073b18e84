"""Our IG (JAX, cached-prompt replay) equals the PyTorch peer (transformers, hooked down
projection, full prompt per step): two implementations of NeuronLLM's attribution (arXiv
2601.04548, Sec. 3) that share no code, on a tiny Llama, a tiny GPT-2 and SmolLM2.

Tolerance: |ours - peer| <= 1e-4 * max |peer score| + 1e-4 * |peer score| elementwise, i.e. the
two float32 computations agree to about four significant digits of the largest attribution of
the batch; F agrees within 1e-4 (F is a log-probability, O(1))."""

import os

import numpy as np
import pytest

import neuronjax
from neuronjax.attribution import PromptBatch, attribute
from tests import tiny_models

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
torch_ig = pytest.importorskip("neuronjax.bench.torch_ig")


def _assert_same(ours, peer):
    scale = np.abs(peer["scores"]).max()
    assert scale > 1e-2
    np.testing.assert_allclose(np.asarray(ours.scores), peer["scores"], atol=1e-4 * scale, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(ours.f), peer["f"], atol=1e-4)
    np.testing.assert_allclose(np.asarray(ours.option_scores), peer["option_scores"], atol=1e-4)


@pytest.mark.parametrize("name", ["llama3_rope", "gpt2"])
@pytest.mark.parametrize("method,steps", [("ig", 6), ("grad_x_act", 1)])
def test_tiny_models(tmp_path, name, method, steps):
    """Left-padded batch of two prompts (lengths 11 and 6), options with 1 or 2 candidates."""
    ref = tiny_models.save(name, tmp_path)
    lm = neuronjax.load_model(str(tmp_path))
    ids, mask, _ = tiny_models.batch(vocab=lm.config.vocab_size, seed=1)
    opts = np.random.default_rng(1).integers(0, lm.config.vocab_size, (2, 4, 2)).astype(np.int32)
    opts[0, 3, 1] = -1
    batch = PromptBatch(ids.astype(np.int32), mask.astype(np.int32), opts, np.array([3, 1], np.int32))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds synchronisation
    try:
        peer = torch_ig.attribute(ref, ids, mask, opts, batch.gold, method, steps)
    finally:
        torch.set_num_threads(threads)
    _assert_same(attribute(lm, batch, method, steps, rule="right_riemann"), peer)  # the peer's rule


@pytest.mark.real_model
def test_smollm2_two_short_prompts():
    """SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float32 on both sides), m = 4, two
    prompts of different lengths (left-padded), options scored by the first token of the word."""
    from transformers import AutoModelForCausalLM

    path = neuronjax.default_model_path()
    lm = neuronjax.load_model(path)
    ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                               dtype=torch.float32).eval()  # fmt: skip
    ids, mask = lm.encode(["The capital of France is the city of", "The largest planet is"])
    words = (["Paris", "Rome", "Madrid", "Berlin"], ["Mars", "Venus", "Jupiter", "Earth"])
    # candidates of an option: the first token of " word" and of "word"; one option keeps one
    opts = np.array([[[lm.tokenizer.encode(t, add_special_tokens=False)[0] for t in (" " + w, w)] for w in row]
                     for row in words], np.int32)  # fmt: skip
    opts[0, 1, 1] = -1
    batch = PromptBatch(ids, mask, opts, np.array([0, 2], np.int32))
    assert mask[1, 0] == 0  # the second prompt is left-padded
    peer = torch_ig.attribute(ref, ids, mask, opts, batch.gold, "ig", 4)
    ours = attribute(lm, batch, "ig", 4, rule="right_riemann")  # the peer's rule
    _assert_same(ours, peer)
    assert float(ours.f[0]) > -0.1  # a meaningful target: the model puts Paris far above the others
