"""The prompt pass through `jax.nn.dot_product_attention` (cuDNN on a GPU; forced here with
NEURONJAX_ATTENTION=fused, where XLA's implementation of the same call runs) gives the logits of
the transformers PyTorch model, like the einsum path, on a left-padded batch (the padding rows see
no key) and with sliding windows."""

import jax
import numpy as np
import pytest

import neuronjax
from neuronjax.models.layers import ATTENTION_ENV, fused_attention_applies
from tests import tiny_models

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("name", ["llama3_rope", "mistral", "qwen3", "gemma3", "gpt2"])
def test_fused_prompt_attention_matches_transformers(tmp_path, name, monkeypatch):
    ref = tiny_models.save(name, tmp_path)
    ids, mask, pos = tiny_models.batch()
    want = tiny_models.torch_logits(ref, ids, mask, pos)
    monkeypatch.setenv(ATTENTION_ENV, "fused")
    jax.clear_caches()  # the switch is read when a function is traced
    lm = neuronjax.load_model(str(tmp_path))
    got = np.asarray(lm.logits(ids, mask))
    jax.clear_caches()
    real = mask.astype(bool)
    assert np.isfinite(got[real]).all()
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)


def test_when_the_fused_kernel_applies(monkeypatch):
    import jax.numpy as jnp

    monkeypatch.delenv(ATTENTION_ENV, raising=False)
    on_gpu = jax.default_backend() in ("gpu", "cuda")
    assert fused_attention_applies(jnp.bfloat16, None) == on_gpu
    assert not fused_attention_applies(jnp.float32, None)  # float32 stays on the einsum path
    assert not fused_attention_applies(jnp.bfloat16, 50.0)  # Gemma 2's score capping: never fused
    # on a GPU machine (faked), work sent to the CPU with jax.default_device gets the einsum path
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert fused_attention_applies(jnp.bfloat16, None)
    with jax.default_device(jax.devices("cpu")[0]):
        assert not fused_attention_applies(jnp.bfloat16, None)
    monkeypatch.setenv(ATTENTION_ENV, "xla")
    assert not fused_attention_applies(jnp.bfloat16, None)
    monkeypatch.setenv(ATTENTION_ENV, "cudnn")
    with pytest.raises(ValueError, match="expected auto, xla or fused"):
        fused_attention_applies(jnp.bfloat16, None)
