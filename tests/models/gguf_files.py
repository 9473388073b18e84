"""Tiny GGUF files written the way llama.cpp's convert_hf_to_gguf.py writes them, from a Hugging
Face checkpoint folder (config.json + model.safetensors): the metadata each architecture's
converter writes, llama.cpp's tensor names (the gguf package's own HF -> GGUF name map), and the
converter's changes to tensors: q/k rows permuted for llama's rope, Gemma norms stored as 1 + w,
GPT-NeoX's per-head qkv regrouped, GPT-2's Conv1D weights transposed, Phi-3's longrope factors as
tensors. A tokenizer is written into the file too, as llama.cpp stores one: a small sentencepiece
vocabulary for the families llama.cpp converts with sentencepiece, byte-level BPE otherwise."""

from __future__ import annotations

import json
import math
import os

import numpy as np

ARCHS = ("llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "gpt2", "gptneox", "olmo2")
SENTENCEPIECE = ("llama", "gemma", "gemma2", "gemma3", "phi3")


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order for its interleaved rope: within each head, the rotate-half
    layout's two halves interleaved, rows (head, 2, half) -> (head, half, 2)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _theta(h: dict, default: float = 10000.0) -> float:
    rp = h.get("rope_parameters") or {}
    rp = rp.get("full_attention", rp)
    return float(rp.get("rope_theta", h.get("rope_theta", default)))


def _metadata(w, arch: str, h: dict) -> None:
    """What each converter's set_gguf_parameters writes (for these tiny configs)."""
    heads = h.get("num_attention_heads", h.get("n_head"))
    if arch == "gpt2":
        w.add_block_count(h["n_layer"])
        w.add_context_length(h["n_positions"])
        w.add_embedding_length(h["n_embd"])
        w.add_feed_forward_length(4 * h["n_embd"])
        w.add_head_count(heads)
        w.add_layer_norm_eps(h["layer_norm_epsilon"])
        return
    w.add_block_count(h["num_hidden_layers"])
    w.add_context_length(h["max_position_embeddings"])
    w.add_embedding_length(h["hidden_size"])
    w.add_feed_forward_length(h["intermediate_size"])
    w.add_head_count(heads)
    head_dim = h.get("head_dim") or h["hidden_size"] // heads
    if arch == "gptneox":
        rp = h.get("rope_parameters") or {}
        w.add_rope_dimension_count(int(rp.get("partial_rotary_factor", h.get("rotary_pct", 0.25)) * head_dim))
        w.add_parallel_residual(h.get("use_parallel_residual", True))
        w.add_layer_norm_eps(h["layer_norm_eps"])
        return
    w.add_head_count_kv(h.get("num_key_value_heads", heads))
    w.add_layer_norm_rms_eps(h["rms_norm_eps"])
    if arch == "phi3":
        rp = h.get("rope_parameters") or {}
        w.add_rope_scaling_orig_ctx_len(h["original_max_position_embeddings"])
        w.add_rope_dimension_count(int(rp.get("partial_rotary_factor", 1.0) * h["hidden_size"]) // heads)
        w.add_rope_freq_base(_theta(h))
        w.add_sliding_window(h.get("sliding_window") or 0)
        if rp.get("rope_type") == "longrope":
            scale = h["max_position_embeddings"] / h["original_max_position_embeddings"]
            orig = h["original_max_position_embeddings"]
            w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0)
        return
    if arch in ("gemma", "gemma2", "gemma3") or h.get("head_dim"):
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if arch == "llama":
        w.add_rope_dimension_count(head_dim)
    if arch != "gemma" and arch != "gemma2":
        w.add_rope_freq_base(_theta(h, 1_000_000.0 if arch == "gemma3" else 10000.0))
    if arch == "gemma2":
        w.add_attn_logit_softcapping(h["attn_logit_softcapping"])
        w.add_final_logit_softcapping(h["final_logit_softcapping"])
    if arch in ("gemma2", "gemma3"):
        w.add_sliding_window(h["sliding_window"])


def _tensors(arch: str, h: dict, tensors: dict) -> dict:
    """HF name -> array, changed as llama.cpp's modify_tensors changes them, named as llama.cpp names them."""
    import gguf

    arch_enum = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    layers = h.get("num_hidden_layers", h.get("n_layer"))
    names = gguf.get_tensor_name_map(arch_enum, layers)
    heads = h.get("num_attention_heads", h.get("n_head"))
    out = {}
    for name, t in tensors.items():
        t = np.asarray(t, np.float32)
        if arch == "gpt2" and name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if arch in ("gemma", "gemma2") and name == "lm_head.weight":
            continue
        if arch == "llama" and name.endswith("q_proj.weight"):
            t = _permute(t, heads)
        if arch == "llama" and name.endswith("k_proj.weight"):
            t = _permute(t, h.get("num_key_value_heads", heads))
        if arch in ("gemma", "gemma2", "gemma3") and name.endswith("norm.weight"):
            t = t + 1
        if arch == "gptneox" and "query_key_value" in name:  # per-head [q, k, v] -> [q; k; v] blocks
            t = t.reshape(heads, 3, -1, *t.shape[1:]).swapaxes(0, 1).reshape(t.shape)
        if arch == "gpt2" and name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            t = t.T
        base, suffix = name.rsplit(".", 1)
        gguf_name = names.get_name(base)
        assert gguf_name is not None, (arch, name)
        out[f"{gguf_name}.{suffix}"] = t
    rp = h.get("rope_parameters") or {}
    if arch == "phi3" and rp.get("rope_type") == "longrope":
        out["rope_factors_long.weight"] = np.asarray(rp["long_factor"], np.float32)
        out["rope_factors_short.weight"] = np.asarray(rp["short_factor"], np.float32)
    return out


SINGLES = list("abcdefghijklmnopqrstuvwxyz") + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + list("0123456789.,?!:'-()")


def merges(space: str) -> list[tuple[str, str]]:
    """Merges in the order they apply (each joins two earlier tokens); `space` is the word-start
    symbol (Ġ for byte-level BPE, ▁ for sentencepiece)."""
    first = [("h", "e"), ("a", "t"), ("i", "s"), ("o", "n"), (space, "t"), (space + "t", "he"), (space, "c"),
             (space + "c", "at"), (space, "is"), (space, "on"), (space, "m"), (space + "m", "at")]  # fmt: skip
    rest = ["in", "er", "an", "re", "or", "en", "es", "ar", "of", "to", "al", "ed", "it", "ou", "as", "le", "st", "nd"]
    return first + [(a, b) for a, b in rest]


def bpe_vocabulary(size: int) -> tuple[list[str], list[str]]:
    """(tokens, merges) of a byte-level BPE vocabulary of exactly `size` tokens: <|endoftext|>,
    the space (Ġ), letters, digits and marks, then merged tokens."""
    singles = ["Ġ"] + SINGLES
    used = merges("Ġ")[: size - 1 - len(singles)]
    tokens = ["<|endoftext|>"] + singles + [a + b for a, b in used]
    assert len(tokens) == size and len(set(tokens)) == size, (len(tokens), size)
    return tokens, [f"{a} {b}" for a, b in used]


def sentencepiece_vocabulary(size: int) -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, types) of a sentencepiece (BPE) vocabulary of exactly `size` tokens:
    <unk>, <s>, </s>, the word start ▁, letters, digits and marks, then merged pieces scored by
    merge order (the earlier the merge, the higher the score)."""
    singles = ["▁"] + SINGLES
    merged = [a + b for a, b in merges("▁")][: size - 3 - len(singles)]
    tokens = ["<unk>", "<s>", "</s>"] + singles + merged
    scores = [0.0, 0.0, 0.0] + [-1000.0 - i for i in range(len(singles))] + [-float(i) for i in range(len(merged))]
    types = [2, 3, 3] + [1] * (len(singles) + len(merged))  # unknown, control, control, normal
    assert len(tokens) == size and len(set(tokens)) == size, (len(tokens), size)
    return tokens, scores, types


def add_sentencepiece(w, vocab: int) -> list:
    """A llama-style sentencepiece tokenizer of `vocab` tokens written to GGUFWriter w (<unk> 0,
    <s> 1, </s> 2); its tokens."""
    tokens, scores, types = sentencepiece_vocabulary(vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    return tokens


def _tokenizer(w, arch: str, vocab: int) -> None:
    if arch in SENTENCEPIECE:
        add_sentencepiece(w, vocab)
        w.add_pad_token_id(0)
        w.add_add_bos_token(True)
        if arch in ("gemma", "gemma2", "gemma3"):
            w.add_add_space_prefix(False)
    else:
        tokens, merges = bpe_vocabulary(vocab)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("qwen2" if arch.startswith("qwen") else "gpt-2")
        w.add_token_list(tokens)
        w.add_token_types([3] + [1] * (vocab - 1))
        w.add_token_merges(merges)
        w.add_bos_token_id(0)
        w.add_eos_token_id(0)


def write(checkpoint: str, path: str, arch: str, weights_dtype=np.float32) -> str:
    """Convert the checkpoint folder to a GGUF file of architecture `arch` at `path`. 2-D weights
    are stored as `weights_dtype` (float32 or float16); norms, biases and rope factors stay float32,
    as llama.cpp keeps them."""
    import gguf
    from safetensors.numpy import load_file

    with open(os.path.join(checkpoint, "config.json")) as f:
        h = json.load(f)
    tensors = load_file(os.path.join(checkpoint, "model.safetensors"))
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny {arch}")
    _metadata(w, arch, h)
    w.add_vocab_size(h["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if weights_dtype == np.float32 else gguf.LlamaFileType.MOSTLY_F16)
    _tokenizer(w, arch, h["vocab_size"])
    for name, t in _tensors(arch, h, tensors).items():
        w.add_tensor(name, t.astype(weights_dtype) if t.ndim == 2 else t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
