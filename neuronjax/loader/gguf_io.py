"""GGUF files (llama.cpp): metadata -> `ModelConfig`, tensors dequantized one at a time, and the
tokenizer the file carries.

Every architecture llama.cpp writes for the dense families we support is read: llama (also
Mistral and SmolLM files), qwen2, qwen3, gemma, gemma2, gemma3, phi3, gpt2, gptneox, olmo2.
llama.cpp's converter (convert_hf_to_gguf.py) changes some tensors on the way, and each change is
undone here, per architecture:

- llama: the rows of the query and key projections are permuted so that rotary pairs are
  adjacent (llama.cpp's "normal" rope); we permute them back to the rotate-half layout. Every
  other architecture here uses llama.cpp's NeoX-style rope, and its q/k are stored as they are.
- gemma, gemma2, gemma3: every RMSNorm weight is stored as 1 + w (llama.cpp scales by the stored
  weight); we subtract the 1 again and keep Gemma's (1 + w) norm.
- gptneox: the per-head interleaved query_key_value is stored as [q; k; v] row blocks, like
  gpt2 (whose Conv1D weights are stored transposed, i.e. as Linear weights) and phi3.
- phi3: gate_up_proj is stored as ffn_up with the gate rows first; longrope's factors are two
  tensors (rope_factors_long / rope_factors_short), read as configuration.

What llama.cpp does not store is taken from llama.cpp's own rules: Gemma 2/3's attention scale
(head_dim ** -0.5, or (embed / heads) ** -0.5 for the 27B models, which llama.cpp tells by their
layer count), their sliding-window patterns (every other layer; five of six), Gemma 3's local
rope base (10000). Activations are the families' own: GELU (tanh) for gpt2 and Gemma, exact GELU
for gptneox (Pythia's; llama.cpp itself evaluates the tanh form), SiLU otherwise.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import numpy as np

from neuronjax.errors import CheckpointError, UnsupportedModelError
from neuronjax.loader import dequant, gguf_file, hf
from neuronjax.models.config import ModelConfig, RopeConfig

# general.architecture -> our model_type (transformers' name, which neuron sets record)
ARCHITECTURES = {
    "llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma": "gemma", "gemma2": "gemma2",
    "gemma3": "gemma3_text", "phi3": "phi3", "gpt2": "gpt2", "gptneox": "gpt_neox", "olmo2": "olmo2",
}  # fmt: skip
GEMMA = ("gemma", "gemma2", "gemma3")
ROPE_FACTORS = ("rope_factors_long.weight", "rope_factors_short.weight")  # phi3 longrope: configuration


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k permutation: rows (head, 2, half) -> (head, half, 2) order undone."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _q(w, cfg):
    return hf.q_kernel(unpermute_rows(w, cfg.num_heads), cfg)


def _k(w, cfg):
    return hf.kv_kernel(unpermute_rows(w, cfg.num_kv_heads), cfg)


def _minus_one(w, cfg):
    return w - 1.0


def _table(overrides: dict | None = None, norms_plus_one: bool = False) -> dict:
    """llama.cpp's tensor names (gguf.constants.TENSOR_NAMES) -> our targets. One table serves
    every architecture: a row whose tensor a file lacks is never used, and a tensor whose target
    the config does not build (a bias the family has not) is reported as unexpected."""
    blk = "blk.{i}."
    table = {
        "token_embd.weight": [("embed", hf.identity)],
        "position_embd.weight": [("pos_embed", hf.identity)],
        "output_norm.weight": [("final_norm.weight", hf.identity)],
        "output_norm.bias": [("final_norm.bias", hf.identity)],
        "output.weight": [("lm_head", hf.transpose)],
        blk + "attn_norm.weight": [("layers.{i}.attn_norm.weight", hf.identity)],
        blk + "attn_norm.bias": [("layers.{i}.attn_norm.bias", hf.identity)],
        blk + "ffn_norm.weight": [("layers.{i}.ffn_norm.weight", hf.identity)],
        blk + "ffn_norm.bias": [("layers.{i}.ffn_norm.bias", hf.identity)],
        blk + "post_attention_norm.weight": [("layers.{i}.attn_out_norm.weight", hf.identity)],
        blk + "post_ffw_norm.weight": [("layers.{i}.ffn_out_norm.weight", hf.identity)],
        blk + "attn_q.weight": [("layers.{i}.attn.q", hf.q_kernel)],
        blk + "attn_k.weight": [("layers.{i}.attn.k", hf.kv_kernel)],
        blk + "attn_v.weight": [("layers.{i}.attn.v", hf.kv_kernel)],
        blk + "attn_q.bias": [("layers.{i}.attn.q_bias", hf.q_bias)],
        blk + "attn_k.bias": [("layers.{i}.attn.k_bias", hf.kv_bias)],
        blk + "attn_v.bias": [("layers.{i}.attn.v_bias", hf.kv_bias)],
        blk + "attn_qkv.weight": [("layers.{i}.attn.q", hf.qkv_rows(0, hf.q_kernel)),
                                  ("layers.{i}.attn.k", hf.qkv_rows(1, hf.kv_kernel)),
                                  ("layers.{i}.attn.v", hf.qkv_rows(2, hf.kv_kernel))],
        blk + "attn_qkv.bias": [("layers.{i}.attn.q_bias", hf.qkv_rows(0, hf.q_bias)),
                                ("layers.{i}.attn.k_bias", hf.qkv_rows(1, hf.kv_bias)),
                                ("layers.{i}.attn.v_bias", hf.qkv_rows(2, hf.kv_bias))],
        blk + "attn_output.weight": [("layers.{i}.attn.o", hf.o_kernel)],
        blk + "attn_output.bias": [("layers.{i}.attn.o_bias", hf.identity)],
        blk + "attn_q_norm.weight": [("layers.{i}.attn.q_norm.weight", hf.identity)],
        blk + "attn_k_norm.weight": [("layers.{i}.attn.k_norm.weight", hf.identity)],
        blk + "ffn_gate.weight": [("layers.{i}.mlp.gate", hf.transpose)],
        blk + "ffn_up.weight": [("layers.{i}.mlp.up", hf.transpose)],
        blk + "ffn_down.weight": [("layers.{i}.mlp.down", hf.transpose)],
        blk + "ffn_up.bias": [("layers.{i}.mlp.up_bias", hf.identity)],
        blk + "ffn_down.bias": [("layers.{i}.mlp.down_bias", hf.identity)],
    }  # fmt: skip
    table.update(overrides or {})
    if norms_plus_one:
        for name, targets in table.items():
            if name.endswith("norm.weight"):
                table[name] = [(t, lambda w, cfg, fn=fn: fn(_minus_one(w, cfg), cfg)) for t, fn in targets]
    return table


TABLE = _table()
LLAMA_TABLE = _table({"blk.{i}.attn_q.weight": [("layers.{i}.attn.q", _q)],
                      "blk.{i}.attn_k.weight": [("layers.{i}.attn.k", _k)]})  # fmt: skip
GEMMA_TABLE = _table(norms_plus_one=True)
PHI3_TABLE = _table({"blk.{i}.ffn_up.weight": [("layers.{i}.mlp.gate", hf.gate_up(0)),
                                               ("layers.{i}.mlp.up", hf.gate_up(1))]})  # fmt: skip
OLMO2_TABLE = _table({"blk.{i}.attn_q_norm.weight": [("layers.{i}.attn.q_norm.weight", hf.q_bias)],
                      "blk.{i}.attn_k_norm.weight": [("layers.{i}.attn.k_norm.weight", hf.kv_bias)]})  # fmt: skip
TABLES = {"llama": LLAMA_TABLE, "gemma": GEMMA_TABLE, "gemma2": GEMMA_TABLE, "gemma3_text": GEMMA_TABLE,
          "phi3": PHI3_TABLE, "olmo2": OLMO2_TABLE}  # fmt: skip


def table_for(cfg: ModelConfig) -> dict:
    """The name table of a config read by `config_from_gguf`."""
    return TABLES.get(cfg.model_type, TABLE)


_REQUIRED = object()


def _field(reader, key: str, source: str, default=_REQUIRED):
    if key not in reader.metadata:
        if default is _REQUIRED:
            raise CheckpointError(f"{source}: GGUF metadata field '{key}' is missing")
        return default
    return reader.metadata[key]


def open_reader(path: str) -> gguf_file.GGUFFile:
    """The metadata and tensors of `path` (`gguf_file.read`); a file gguf cannot parse (not GGUF,
    truncated) is a CheckpointError."""
    try:
        return gguf_file.read(path)
    except Exception as e:  # gguf's reader raises ValueError, IndexError, ... on damaged files
        raise CheckpointError(
            f"{path}: not a readable GGUF file ({type(e).__name__}: {e}); expected a complete GGUF file "
            "as llama.cpp's converters write it"
        ) from None


def _tensor(reader, name: str, source: str) -> np.ndarray:
    t = next((t for t in reader.tensors if t.name == name), None)
    if t is None:
        raise CheckpointError(f"{source}: tensor '{name}' is missing")
    return np.asarray(dequant.dequantize(t.data, t.tensor_type), np.float32).reshape(-1)


def _rope(reader, arch: str, source: str, names: set) -> RopeConfig:
    def get(key, default=_REQUIRED):
        return _field(reader, f"{arch}.{key}", source, default)

    theta = float(get("rope.freq_base", 10000.0))
    scaling = get("rope.scaling.type", "none")
    if arch == "phi3" and "rope_factors_long.weight" in names:
        return RopeConfig(
            theta=theta, kind="longrope", original_max_position=int(get("rope.scaling.original_context_length")),
            attention_factor=float(get("rope.scaling.attn_factor", 1.0)),
            long_factor=tuple(float(x) for x in _tensor(reader, "rope_factors_long.weight", source)),
            short_factor=tuple(float(x) for x in _tensor(reader, "rope_factors_short.weight", source)),
        )  # fmt: skip
    if "rope_freqs.weight" in names:
        raise UnsupportedModelError(f"{source}: tensor 'rope_freqs.weight' (llama3 rope scaling in GGUF) is not supported")
    if scaling == "linear":
        return RopeConfig(theta=theta, kind="linear", factor=float(get("rope.scaling.factor")))
    if scaling in ("none", ""):
        return RopeConfig(theta=theta)
    raise UnsupportedModelError(f"{source}: GGUF field '{arch}.rope.scaling.type' = {scaling!r} is not supported")


def config_from_gguf(reader, source: str) -> ModelConfig:
    arch = _field(reader, "general.architecture", source)
    if arch not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{source}: GGUF field 'general.architecture' = {arch!r} is not supported; expected one of "
            f"{', '.join(ARCHITECTURES)}"
        )

    def get(key, default=_REQUIRED):
        return _field(reader, f"{arch}.{key}", source, default)

    names = {t.name for t in reader.tensors}
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise CheckpointError(f"{source}: tensor 'token_embd.weight' is missing (every {arch} GGUF has one)")
    hidden = int(get("embedding_length"))
    heads = int(get("attention.head_count"))
    n = int(get("block_count"))
    rope_dims = get("rope.dimension_count", None)
    # llama files of SmolLM2 and Llama state no key_length: their head_dim is the rope width
    head_dim = int(get("attention.key_length", rope_dims if arch == "llama" and rope_dims else hidden // heads))
    layer_norm = arch in ("gpt2", "gptneox")
    c = dict(
        model_type=ARCHITECTURES[arch], vocab_size=int(get("vocab_size", int(embd.shape[-1]))), hidden_size=hidden,
        intermediate_size=int(get("feed_forward_length")), num_layers=n, num_heads=heads,
        num_kv_heads=int(get("attention.head_count_kv", heads)), head_dim=head_dim,
        norm_kind="layer" if layer_norm else "rms",
        norm_eps=float(get("attention.layer_norm_epsilon" if layer_norm else "attention.layer_norm_rms_epsilon")),
        max_position_embeddings=int(get("context_length", 2048)), tie_embeddings="output.weight" not in names,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id", source, None),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id", source, None),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id", source, None),
    )  # fmt: skip
    if arch == "gpt2":
        return ModelConfig(**c, activation="gelu_tanh", gated_mlp=False, mlp_bias=True, qkv_bias=True, out_bias=True,
                           position_kind="learned")  # fmt: skip
    c["rope"] = _rope(reader, arch, source, names)
    if rope_dims is not None and int(rope_dims) < head_dim:  # partial rotary (gptneox, phi3)
        c["rotary_dim"] = int(rope_dims)
    if arch == "gptneox":
        return ModelConfig(**c, activation="gelu", gated_mlp=False, mlp_bias=True,
                           qkv_bias="blk.0.attn_qkv.bias" in names, out_bias="blk.0.attn_output.bias" in names,
                           parallel_residual=bool(get("use_parallel_residual", True)))  # fmt: skip
    if arch in GEMMA:
        c.update(norm_plus_one=True, embed_scale=True, activation="gelu_tanh")
        if arch == "gemma":
            return ModelConfig(**c)
        big = n == (46 if arch == "gemma2" else 62)  # the 27B models: scale by embed / heads
        window = get("attention.sliding_window", 4096 if arch == "gemma2" else _REQUIRED)  # 4096: llama.cpp's default
        c.update(sandwich_norm=True, sliding_window=window, attn_scale=(hidden / heads if big else head_dim) ** -0.5)
        if arch == "gemma2":
            return ModelConfig(**c, attn_softcap=get("attn_logit_softcapping", None),
                               final_softcap=get("final_logit_softcapping", None),
                               layer_kinds=tuple("sliding" if i % 2 == 0 else "full" for i in range(n)))  # fmt: skip
        return ModelConfig(**c, qk_norm=True, rope_local=RopeConfig(theta=10000.0),
                           layer_kinds=tuple("sliding" if i % 6 < 5 else "full" for i in range(n)))  # fmt: skip
    if arch == "qwen2":
        return ModelConfig(**c, qkv_bias=True)
    if arch == "qwen3":
        return ModelConfig(**c, qk_norm=True)
    if arch == "olmo2":
        return ModelConfig(**c, pre_norm=False, sandwich_norm=True, qk_norm=True, qk_norm_width="all")
    if arch == "phi3":
        window = int(get("attention.sliding_window", 0)) or None
        return ModelConfig(**c, sliding_window=window, layer_kinds=("sliding",) * n if window else ())
    return ModelConfig(**c)


def readable_types() -> list[str]:
    """The GGUF tensor types the installed gguf package dequantizes (F32 and F16 are plain views)."""
    from gguf import quants

    return ["F32", "F16"] + sorted(t.name for t in getattr(quants, "_type_traits", {}))


def tensors(reader, source: str) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """(name, reader) of every parameter tensor; phi3's rope factors are configuration
    (`config_from_gguf`) and are not listed."""
    for t in reader.tensors:
        if t.name in ROPE_FACTORS:
            continue

        def read(t=t):
            try:
                w = dequant.dequantize(t.data, t.tensor_type)
            except NotImplementedError:
                raise UnsupportedModelError(
                    f"{source}: tensor '{t.name}' uses quantization {t.tensor_type.name}, which the gguf "
                    f"package cannot dequantize; expected one of {', '.join(readable_types())}"
                ) from None
            return np.asarray(w, np.float32).reshape(tuple(int(s) for s in reversed(t.shape)))

        yield t.name, read


def tokenizer(path: str, reader: gguf_file.GGUFFile | None = None):
    """The tokenizer the file carries (llama.cpp's tokenizer.ggml.* metadata), built by
    transformers' GGUF tokenizer converter. AutoTokenizer would first rebuild a model config from
    the file, which transformers cannot do for every architecture here (gemma, gptneox, olmo2);
    the tokenizer does not need it, and on the files AutoTokenizer reads it is the same tokenizer.

    `reader`: the file already read (`open_reader`). With transformers' GGUF tokenizer module
    (transformers 5), the tokenizer is built from its metadata as
    `PreTrainedTokenizerFast.from_pretrained(folder, gguf_file=name)` builds it, without that call
    reading the file a second time with its own reader, which also imports torch: 0.7-1.0 s against
    1.7-2.3 s for SmolLM2 (docs/performance.md, "Loading a model"; tests/loader/test_gguf_tokenizer.py
    holds the two to the same tokenizer). Older transformers read the file themselves."""
    from transformers import PreTrainedTokenizerFast

    folder, name = os.path.dirname(path) or ".", os.path.basename(path)
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer
    except ImportError:
        return PreTrainedTokenizerFast.from_pretrained(folder, gguf_file=name)
    metadata = (reader or open_reader(path)).metadata
    backend, config = _tokenizer_parts(metadata, GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)
    # gguf_file: the same files looked up, and the same init_kwargs, as from_pretrained's own GGUF
    # path; tokenizer_object is used before gguf_file is read
    return PreTrainedTokenizerFast.from_pretrained(folder, gguf_file=name, tokenizer_object=backend, **config)


# llama.cpp's metadata keys (tokenizer.ggml.<key>) of the special tokens' ids, by the keyword a
# transformers tokenizer takes the token itself under
SPECIAL_TOKENS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
                  "pad_token": "padding_token_id"}  # fmt: skip


def _tokenizer_parts(metadata: dict, mapping: dict, convert) -> tuple:
    """(backend tokenizer, keyword arguments) of a file's tokenizer, the two things transformers'
    GGUF path hands `PreTrainedTokenizerFast` (transformers 5.x): `mapping` renames the file's
    tokenizer.* keys into the converter's fields and the tokenizer's config; `convert` builds the
    backend from the fields."""
    fields: dict = {}
    config: dict = {}
    for out, renames in ((fields, mapping["tokenizer"]), (config, mapping["tokenizer_config"])):
        for key, name in renames.items():
            value = metadata.get("tokenizer." + key)
            if value is not None:
                out[name] = value
    kind = fields.get("tokenizer_type")
    if kind == "llama" and "add_bos_token" not in config:
        config["add_bos_token"] = True  # llama.cpp's default for a sentencepiece vocabulary without the flag
    if kind == "gemma4":
        config["add_bos_token"] = False  # its chat template writes <bos> itself
    tokens = fields["tokens"]
    for keyword, key in SPECIAL_TOKENS.items():
        token_id = metadata.get("tokenizer.ggml." + key)
        config[keyword] = None if token_id is None else tokens[token_id]
    backend, extra = convert(metadata["general.architecture"], fields)
    return backend, {**config, **extra}
