"""GGUF files (llama.cpp): metadata -> `ModelConfig`, tensors dequantized one at a time.

llama.cpp's converter permutes the rows of the query and key projections so that rotary pairs
are adjacent (interleaved layout); we undo that to get back the rotate-half layout our decoder
(and the original checkpoint) uses. Only the llama architecture is read for now (Llama, Mistral
and SmolLM files are all written as it).
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from neuronjax.errors import CheckpointError, UnsupportedModelError
from neuronjax.loader import hf
from neuronjax.models.config import ModelConfig, RopeConfig


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k permutation: rows (head, 2, half) -> (head, half, 2) order undone."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _q(w, cfg):
    return hf.q_kernel(unpermute_rows(w, cfg.num_heads), cfg)


def _k(w, cfg):
    return hf.kv_kernel(unpermute_rows(w, cfg.num_kv_heads), cfg)


LLAMA_TABLE = {
    "token_embd.weight": [("embed", hf.identity)],
    "output_norm.weight": [("final_norm.weight", hf.identity)],
    "output.weight": [("lm_head", hf.transpose)],
    "blk.{i}.attn_norm.weight": [("layers.{i}.attn_norm.weight", hf.identity)],
    "blk.{i}.ffn_norm.weight": [("layers.{i}.ffn_norm.weight", hf.identity)],
    "blk.{i}.attn_q.weight": [("layers.{i}.attn.q", _q)],
    "blk.{i}.attn_k.weight": [("layers.{i}.attn.k", _k)],
    "blk.{i}.attn_v.weight": [("layers.{i}.attn.v", hf.kv_kernel)],
    "blk.{i}.attn_output.weight": [("layers.{i}.attn.o", hf.o_kernel)],
    "blk.{i}.ffn_gate.weight": [("layers.{i}.mlp.gate", hf.transpose)],
    "blk.{i}.ffn_up.weight": [("layers.{i}.mlp.up", hf.transpose)],
    "blk.{i}.ffn_down.weight": [("layers.{i}.mlp.down", hf.transpose)],
}


_REQUIRED = object()


def _field(reader, key: str, source: str, default=_REQUIRED):
    f = reader.fields.get(key)
    if f is None:
        if default is _REQUIRED:
            raise CheckpointError(f"{source}: GGUF metadata field '{key}' is missing")
        return default
    return f.contents()


def open_reader(path: str):
    """A GGUFReader of `path`; a file gguf cannot parse (not GGUF, truncated) is a CheckpointError."""
    import gguf

    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # the reader raises ValueError, IndexError, ... on damaged files
        raise CheckpointError(
            f"{path}: not a readable GGUF file ({type(e).__name__}: {e}); expected a complete GGUF file "
            "as llama.cpp's converters write it"
        ) from None


def config_from_gguf(reader, source: str) -> ModelConfig:
    arch = _field(reader, "general.architecture", source)
    if arch != "llama":
        raise UnsupportedModelError(
            f"{source}: GGUF field 'general.architecture' = {arch!r} is not supported; expected 'llama'"
        )
    names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in names:
        raise UnsupportedModelError(f"{source}: tensor 'rope_freqs.weight' (llama3 rope scaling in GGUF) is not supported")
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise CheckpointError(f"{source}: tensor 'token_embd.weight' is missing (every llama GGUF has one)")
    hidden = int(_field(reader, "llama.embedding_length", source))
    heads = int(_field(reader, "llama.attention.head_count", source))
    scaling = _field(reader, "llama.rope.scaling.type", source, "none")
    theta = float(_field(reader, "llama.rope.freq_base", source, 10000.0))
    if scaling == "linear":
        rope = RopeConfig(theta=theta, kind="linear", factor=float(_field(reader, "llama.rope.scaling.factor", source)))
    elif scaling in ("none", ""):
        rope = RopeConfig(theta=theta)
    else:
        raise UnsupportedModelError(f"{source}: GGUF field 'llama.rope.scaling.type' = {scaling!r} is not supported")
    return ModelConfig(
        model_type="llama",
        vocab_size=int(_field(reader, "llama.vocab_size", source, int(embd.shape[-1]))),
        hidden_size=hidden,
        intermediate_size=int(_field(reader, "llama.feed_forward_length", source)),
        num_layers=int(_field(reader, "llama.block_count", source)),
        num_heads=heads,
        num_kv_heads=int(_field(reader, "llama.attention.head_count_kv", source, heads)),
        head_dim=int(_field(reader, "llama.rope.dimension_count", source, hidden // heads)),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", source)),
        max_position_embeddings=int(_field(reader, "llama.context_length", source, 2048)),
        rope=rope,
        tie_embeddings="output.weight" not in names,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id", source, None),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id", source, None),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id", source, None),
    )


def readable_types() -> list[str]:
    """The GGUF tensor types the installed gguf package dequantizes (F32 and F16 are plain views)."""
    from gguf import quants

    return ["F32", "F16"] + sorted(t.name for t in getattr(quants, "_type_traits", {}))


def tensors(reader, source: str) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    from gguf import quants

    for t in reader.tensors:

        def read(t=t):
            try:
                w = quants.dequantize(t.data, t.tensor_type)
            except NotImplementedError:
                raise UnsupportedModelError(
                    f"{source}: tensor '{t.name}' uses quantization {t.tensor_type.name}, which the gguf "
                    f"package cannot dequantize; expected one of {', '.join(readable_types())}"
                ) from None
            return np.asarray(w, np.float32).reshape(tuple(int(s) for s in reversed(t.shape)))

        yield t.name, read
