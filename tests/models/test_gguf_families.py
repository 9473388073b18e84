"""Every GGUF architecture llama.cpp writes for our dense families loads to the model it came from.

A tiny transformers model is saved, converted to GGUF in the test the way llama.cpp's
convert_hf_to_gguf.py converts it (`tests/models/gguf_files.py`: llama.cpp's tensor names, its
q/k permutation for llama, Gemma's 1 + w norms, NeoX's regrouped qkv, ...), and loaded by our
loader. The reference is transformers' own GGUF load of the same file (`from_pretrained(...,
gguf_file=...)`) where transformers reads that architecture and every setting the tiny model uses,
and always the transformers model the tensors came from. transformers cannot load gemma, gptneox
and olmo2 files at all, nor read phi3's partial rotary, sliding window and longrope factors, so
those cases are checked against the source model only. The tokenizer comes from the file.
"""

import os

import numpy as np
import pytest

import neuronjax
from neuronjax.errors import UnsupportedModelError
from neuronjax.loader import gguf_io
from tests import tiny_models
from tests.models import gguf_files

pytestmark = pytest.mark.torch

C = tiny_models.COMMON
# Gemma 2/3 in GGUF: llama.cpp scales attention by head_dim ** -0.5 and transformers' GGUF load keeps
# Gemma's default query_pre_attn_scalar (256) and soft-caps (50, 30): a tiny model both read alike.
GEMMA_GGUF = dict(C, head_dim=256, query_pre_attn_scalar=256, sliding_window=4)

# name -> (GGUF architecture, tiny model, weight dtype in the file, also compared with transformers' GGUF load)
CASES = {
    "llama": ("llama", ("LlamaConfig", "LlamaForCausalLM", dict(C)), np.float32, True),
    "qwen2": ("qwen2", "qwen2", np.float16, True),
    # transformers' qwen3 GGUF load takes Qwen3Config's head_dim (128), not the file's key_length
    "qwen3": ("qwen3", ("Qwen3Config", "Qwen3ForCausalLM", dict(C, head_dim=128)), np.float32, True),
    "gemma": ("gemma", "gemma", np.float32, False),
    "gemma2": ("gemma2", ("Gemma2Config", "Gemma2ForCausalLM", GEMMA_GGUF), np.float32, True),
    "gemma3": ("gemma3", ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(GEMMA_GGUF, num_hidden_layers=6)), np.float16,
               True),  # six layers: five sliding, one global
    "phi3": ("phi3", ("Phi3Config", "Phi3ForCausalLM", dict(C, **tiny_models.IDS)), np.float32, True),
    "phi3_partial_window": ("phi3", "phi3", np.float32, False),
    "phi3_longrope": ("phi3", "phi3_longrope", np.float32, False),
    # transformers' gpt2 GGUF load sizes the position table by GPT2Config's default n_positions
    "gpt2": ("gpt2", ("GPT2Config", "GPT2LMHeadModel", dict(tiny_models.VARIANTS["gpt2"][2], n_positions=1024)),
             np.float16, True),
    "gptneox": ("gptneox", "gpt_neox", np.float32, False),
    "olmo2": ("olmo2", "olmo2", np.float32, False),
}  # fmt: skip
TEXT = "The cat is on the mat. Is it 42?"


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    arch, spec, dtype, by_transformers = CASES[request.param]
    d = tmp_path_factory.mktemp(request.param)
    source = tiny_models.save(spec, d)
    path = gguf_files.write(str(d), os.path.join(d, f"{request.param}.gguf"), arch, dtype)
    return request.param, source, path, dtype, by_transformers


def _transformers_gguf(path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32).eval()  # fmt: skip
    model.config._attn_implementation = "eager"
    return model


def test_logits_match_transformers(case):
    name, source, path, dtype, by_transformers = case
    lm = neuronjax.load_model(path)
    assert lm.report.unexpected == []
    ids, mask, pos = tiny_models.batch()
    real = mask.astype(bool)
    got = np.asarray(lm.logits(ids, mask))[real]
    if by_transformers:
        want = tiny_models.torch_logits(_transformers_gguf(path), ids, mask, pos)[real]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"{name}: transformers' GGUF load")
    want = tiny_models.torch_logits(source, ids, mask, pos)[real]
    # float16 weights in the file: the source model is only as close as their rounding
    tol = 1e-4 if dtype == np.float32 else 3e-2
    np.testing.assert_allclose(got, want, atol=tol, rtol=tol, err_msg=f"{name}: the source model")


def test_config_from_metadata(case):
    name, source, path, _, _ = case
    c = gguf_io.config_from_gguf(gguf_io.open_reader(path), path)
    h = source.config
    assert c.num_layers == h.num_hidden_layers and c.vocab_size == h.vocab_size
    assert c.intermediate_size == (4 * h.n_embd if name == "gpt2" else h.intermediate_size)
    assert c.tie_embeddings == bool(h.tie_word_embeddings)
    if name == "phi3_partial_window":
        assert (c.rotary_dim, c.sliding_window, set(c.kinds)) == (4, 4, {"sliding"})
    if name == "phi3_longrope":
        assert c.rope.kind == "longrope" and c.rope.original_max_position == 4
        assert c.rope.long_factor == (2.0, 3.0, 5.0, 9.0) and c.rope.short_factor == (1.0, 1.5, 2.0, 3.0)
    if name == "gptneox":
        assert c.parallel_residual and c.rotary_dim == 4
    if name == "gemma3":
        assert c.kinds == ("sliding",) * 5 + ("full",) and c.rope_local.theta == 10000.0 and c.rope.theta == 1e6


def test_tokenizer_from_the_file(case):
    _, _, path, _, by_transformers = case
    tok = gguf_io.tokenizer(path)
    ids = tok(TEXT).input_ids
    assert tok.decode(ids, skip_special_tokens=True).strip() == TEXT
    assert len(ids) < len(TEXT) - 5  # merges applied, not one token per character
    if by_transformers:
        from transformers import AutoTokenizer

        auto = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
        assert auto(TEXT).input_ids == ids


def _metadata_only(path, arch, layers, hidden=64, heads=4, head_dim=32):
    """A GGUF file with an architecture's metadata and only its embedding table."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(layers)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(96)
    w.add_head_count(heads)
    w.add_key_length(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(16)
    w.add_tensor("token_embd.weight", np.zeros((32, hidden), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return gguf_io.config_from_gguf(gguf_io.open_reader(str(path)), str(path))


@pytest.mark.parametrize("arch,big", [("gemma2", 46), ("gemma3", 62)])
def test_gemma_attention_scale_is_llama_cpp_s(tmp_path, arch, big):
    """GGUF does not store query_pre_attn_scalar: llama.cpp scales by head_dim ** -0.5, and by
    (embed / heads) ** -0.5 for the 27B models (46 layers for Gemma 2, 62 for Gemma 3)."""
    assert _metadata_only(tmp_path / "a.gguf", arch, 4).scale == pytest.approx(32**-0.5)
    assert _metadata_only(tmp_path / "b.gguf", arch, big).scale == pytest.approx(16**-0.5)


def test_unknown_architecture_names_the_field(tmp_path):
    with pytest.raises(UnsupportedModelError, match="'general.architecture' = 'bloom' is not supported"):
        _metadata_only(tmp_path / "c.gguf", "bloom", 2)
