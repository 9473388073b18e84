"""The embedded SmolLM2-135M-Instruct GGUF: our dequantized load equals transformers' own GGUF
load (PyTorch), and the model knows the capital of France."""

import os

import numpy as np
import pytest

import neuronjax

pytestmark = [pytest.mark.real_model]

PROMPTS = [
    "The capital of France is",
    "Question: What is 2 + 3?\nAnswer:",
    "<|im_start|>user\nName a fruit that is yellow.<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module")
def lm():
    return neuronjax.load_model(neuronjax.default_model_path())


def test_config_from_gguf_metadata(lm):
    c = lm.config
    assert (c.num_layers, c.hidden_size, c.intermediate_size) == (30, 576, 1536)
    assert (c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size) == (9, 3, 64, 49152)
    assert c.tie_embeddings and c.rope.theta == 100000.0
    assert lm.report.loaded == 272 and not lm.report.unexpected


def test_greedy_next_token_is_paris(lm):
    ids, mask = lm.encode(["The capital of France is"])
    logits = np.asarray(lm.logits(ids, mask))
    assert lm.tokenizer.decode([int(logits[0, -1].argmax())]) == " Paris"


@pytest.mark.torch
def test_logits_match_transformers_gguf_load(lm):
    import torch
    from transformers import AutoModelForCausalLM

    path = neuronjax.default_model_path()
    ref = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()
    for prompt in PROMPTS:  # one at a time: no padding on the reference side
        ids, mask = lm.encode([prompt])
        with torch.no_grad():
            want = ref(input_ids=torch.as_tensor(ids, dtype=torch.long)).logits.numpy()
        got = np.asarray(lm.logits(ids, mask))
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0, err_msg=prompt)
    # and the three prompts as one left-padded batch
    ids, mask = lm.encode(PROMPTS)
    got = np.asarray(lm.logits(ids, mask))
    for i, prompt in enumerate(PROMPTS):
        n = int(mask[i].sum())
        with torch.no_grad():
            want = ref(input_ids=torch.as_tensor(ids[i : i + 1, -n:], dtype=torch.long)).logits.numpy()
        np.testing.assert_allclose(got[i : i + 1, -n:], want, atol=1e-3, rtol=0, err_msg=prompt)
