"""Everything that knows Hugging Face naming: `config.json` fields -> `ModelConfig`, and the
declarative tables that map checkpoint tensor names to our parameter paths.

A table row is ``source template -> [(target template, transform)]``. Templates use ``{i}`` for
the layer index; checkpoint names are matched after their wrapper prefix (``model.``,
``transformer.``) is removed. Transforms turn the stored layout into ours: PyTorch `Linear` keeps
``[out, in]``, we keep ``[in, out]`` with attention heads as their own axis.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from neuronjax.errors import ConfigError, UnsupportedModelError
from neuronjax.models.config import ModelConfig, RopeConfig

Transform = Callable[[np.ndarray, ModelConfig], np.ndarray]

# ---------------------------------------------------------------- config.json -> ModelConfig

ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu": "gelu",
}
SUPPORTED = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2")


def _req(d: dict, key: str, source: str) -> Any:
    if key not in d or d[key] is None:
        raise ConfigError(f"{source}: required field '{key}' is missing")
    return d[key]


def _activation(d: dict, source: str, *keys: str) -> str:
    for key in keys:
        if d.get(key):
            name = d[key]
            if name not in ACTIVATIONS:
                raise UnsupportedModelError(
                    f"{source}: field '{key}' = {name!r} is not supported; expected one of {sorted(ACTIVATIONS)}"
                )
            return ACTIVATIONS[name]
    return "silu"


def _rope(params: dict | None, theta: float, source: str, field: str) -> RopeConfig:
    params = params or {}
    kind = params.get("rope_type", params.get("type", "default")) or "default"
    theta = float(params.get("rope_theta", theta))
    if kind == "default":
        return RopeConfig(theta=theta)
    if kind == "linear":
        return RopeConfig(theta=theta, kind="linear", factor=float(_req(params, "factor", f"{source}: {field}")))
    if kind == "llama3":
        where = f"{source}: {field}"
        return RopeConfig(
            theta=theta,
            kind="llama3",
            factor=float(_req(params, "factor", where)),
            low_freq_factor=float(_req(params, "low_freq_factor", where)),
            high_freq_factor=float(_req(params, "high_freq_factor", where)),
            original_max_position=int(_req(params, "original_max_position_embeddings", where)),
        )
    raise UnsupportedModelError(
        f"{source}: field '{field}' has rope type {kind!r}; supported: default, linear, llama3"
    )


def _global_rope(d: dict, source: str) -> RopeConfig:
    """transformers 5 writes `rope_parameters`; 4.x writes `rope_theta` and `rope_scaling`."""
    rp = d.get("rope_parameters")
    if isinstance(rp, dict) and "full_attention" in rp:
        return _rope(rp["full_attention"], 10000.0, source, "rope_parameters.full_attention")
    if isinstance(rp, dict):
        return _rope(rp, d.get("rope_theta", 10000.0), source, "rope_parameters")
    return _rope(d.get("rope_scaling"), d.get("rope_theta", 10000.0), source, "rope_scaling")


def _layer_kinds(d: dict, n: int, source: str, default: Callable[[int], bool]) -> tuple:
    types = d.get("layer_types")
    if types is None:
        return tuple("sliding" if default(i) else "full" for i in range(n))
    if len(types) != n:
        raise ConfigError(f"{source}: field 'layer_types' has {len(types)} entries, expected num_hidden_layers={n}")
    kinds = {"full_attention": "full", "sliding_attention": "sliding"}
    for t in types:
        if t not in kinds:
            raise UnsupportedModelError(f"{source}: field 'layer_types' has {t!r}; expected {sorted(kinds)}")
    return tuple(kinds[t] for t in types)


def config_from_hf(d: dict, source: str) -> ModelConfig:
    """Translate a Hugging Face `config.json` dict (transformers 4.x or 5.x) to a ModelConfig."""
    mt = d.get("model_type")
    if mt not in SUPPORTED:
        raise UnsupportedModelError(
            f"{source}: field 'model_type' = {mt!r} is not supported; expected one of {', '.join(SUPPORTED)}"
        )
    ids = dict(bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"), pad_token_id=d.get("pad_token_id"))
    for k, v in ids.items():  # some configs list several eos ids; keep the first
        if isinstance(v, list):
            ids[k] = v[0] if v else None
    if mt == "gpt2":
        e = int(_req(d, "n_embd", source))
        heads = int(_req(d, "n_head", source))
        return ModelConfig(
            model_type=mt, vocab_size=int(_req(d, "vocab_size", source)), hidden_size=e,
            intermediate_size=int(d.get("n_inner") or 4 * e), num_layers=int(_req(d, "n_layer", source)),
            num_heads=heads, num_kv_heads=heads, head_dim=e // heads, norm_kind="layer",
            norm_eps=float(d.get("layer_norm_epsilon", 1e-5)),
            activation=_activation(d, source, "activation_function"), gated_mlp=False, mlp_bias=True,
            qkv_bias=True, out_bias=True, position_kind="learned",
            max_position_embeddings=int(d.get("n_positions", 1024)),
            tie_embeddings=bool(d.get("tie_word_embeddings", True)), **ids,
        )  # fmt: skip
    if d.get("scale_attn_by_inverse_layer_idx"):
        raise UnsupportedModelError(f"{source}: field 'scale_attn_by_inverse_layer_idx' = true is not supported")

    heads = int(_req(d, "num_attention_heads", source))
    hidden = int(_req(d, "hidden_size", source))
    n = int(_req(d, "num_hidden_layers", source))
    common = dict(
        model_type=mt, vocab_size=int(_req(d, "vocab_size", source)), hidden_size=hidden,
        intermediate_size=int(_req(d, "intermediate_size", source)), num_layers=n, num_heads=heads,
        num_kv_heads=int(d.get("num_key_value_heads") or heads),
        head_dim=int(d.get("head_dim") or hidden // heads),
        norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=int(d.get("max_position_embeddings", 2048)), **ids,
    )  # fmt: skip
    rope = _global_rope(d, source)
    if mt in ("gemma", "gemma2", "gemma3_text"):
        gemma = dict(
            common, norm_plus_one=True, embed_scale=True, rope=rope,
            activation=_activation(d, source, "hidden_activation", "hidden_act"),
            tie_embeddings=bool(d.get("tie_word_embeddings", True)),
            qkv_bias=bool(d.get("attention_bias", False)), out_bias=bool(d.get("attention_bias", False)),
        )  # fmt: skip
        if mt == "gemma":
            return ModelConfig(**gemma)
        gemma.update(
            sandwich_norm=True, sliding_window=d.get("sliding_window"),
            attn_scale=float(d.get("query_pre_attn_scalar") or common["head_dim"]) ** -0.5,
            attn_softcap=d.get("attn_logit_softcapping"), final_softcap=d.get("final_logit_softcapping"),
        )  # fmt: skip
        if mt == "gemma2":
            return ModelConfig(**gemma, layer_kinds=_layer_kinds(d, n, source, lambda i: i % 2 == 0))
        pattern = int(d.get("sliding_window_pattern", d.get("_sliding_window_pattern", 6)))
        rp = d.get("rope_parameters")
        if isinstance(rp, dict) and "sliding_attention" in rp:
            local = _rope(rp["sliding_attention"], 10000.0, source, "rope_parameters.sliding_attention")
        else:
            local = RopeConfig(theta=float(d.get("rope_local_base_freq", 10000.0)))
        return ModelConfig(
            **gemma, qk_norm=True, rope_local=local,
            layer_kinds=_layer_kinds(d, n, source, lambda i: (i + 1) % pattern != 0),
        )  # fmt: skip

    bias = bool(d.get("attention_bias", False))
    cfg = dict(
        common, rope=rope, activation=_activation(d, source, "hidden_act"),
        tie_embeddings=bool(d.get("tie_word_embeddings", False)), mlp_bias=bool(d.get("mlp_bias", False)),
        qkv_bias=bias, out_bias=bias, qk_norm=(mt == "qwen3"), sliding_window=d.get("sliding_window"),
    )  # fmt: skip
    if mt == "qwen2":
        cfg.update(qkv_bias=True, out_bias=False)
    if mt == "mistral":
        kinds = ("sliding",) * n if d.get("sliding_window") else ()
    elif mt in ("qwen2", "qwen3"):
        window_from = int(d.get("max_window_layers", n))
        use = bool(d.get("use_sliding_window", False)) and d.get("sliding_window")
        kinds = _layer_kinds(d, n, source, lambda i: bool(use) and i >= window_from)
    else:
        kinds = ()
    return ModelConfig(**cfg, layer_kinds=kinds)


# ---------------------------------------------------------------- tensor name tables


def identity(w, cfg):
    return w


def transpose(w, cfg):
    return w.T


def q_kernel(w, cfg):  # [heads*head_dim, embed] -> [embed, heads, head_dim]
    return w.T.reshape(cfg.hidden_size, cfg.num_heads, cfg.head_dim)


def kv_kernel(w, cfg):  # [kv_heads*head_dim, embed] -> [embed, kv_heads, head_dim]
    return w.T.reshape(cfg.hidden_size, cfg.num_kv_heads, cfg.head_dim)


def o_kernel(w, cfg):  # [embed, heads*head_dim] -> [heads, head_dim, embed]
    return w.T.reshape(cfg.num_heads, cfg.head_dim, cfg.hidden_size)


def q_bias(b, cfg):
    return b.reshape(cfg.num_heads, cfg.head_dim)


def kv_bias(b, cfg):
    return b.reshape(cfg.num_kv_heads, cfg.head_dim)


def _fused_qkv(part: int) -> Transform:
    """GPT-2 keeps q, k, v in one Conv1D ([in, out] layout) of width 3*embed; take one third and
    split its last axis into (heads, head_dim). Serves the kernel [embed, 3*embed] and the bias."""

    def take(w, cfg):
        e = cfg.hidden_size
        piece = w[..., part * e : (part + 1) * e]
        return piece.reshape(piece.shape[:-1] + (cfg.num_heads, cfg.head_dim))

    return take


def gpt2_o_kernel(w, cfg):  # Conv1D [in=heads*head_dim, out=embed] -> [heads, head_dim, embed]
    return w.reshape(cfg.num_heads, cfg.head_dim, cfg.hidden_size)


def _decoder_table(pre_ffn: str, post_attn: str | None) -> dict:
    layer = "layers.{i}."
    table = {
        "embed_tokens.weight": [("embed", identity)],
        "norm.weight": [("final_norm.weight", identity)],
        "lm_head.weight": [("lm_head", transpose)],
        layer + "input_layernorm.weight": [("layers.{i}.attn_norm.weight", identity)],
        layer + pre_ffn + ".weight": [("layers.{i}.ffn_norm.weight", identity)],
        layer + "self_attn.q_proj.weight": [("layers.{i}.attn.q", q_kernel)],
        layer + "self_attn.k_proj.weight": [("layers.{i}.attn.k", kv_kernel)],
        layer + "self_attn.v_proj.weight": [("layers.{i}.attn.v", kv_kernel)],
        layer + "self_attn.o_proj.weight": [("layers.{i}.attn.o", o_kernel)],
        layer + "self_attn.q_proj.bias": [("layers.{i}.attn.q_bias", q_bias)],
        layer + "self_attn.k_proj.bias": [("layers.{i}.attn.k_bias", kv_bias)],
        layer + "self_attn.v_proj.bias": [("layers.{i}.attn.v_bias", kv_bias)],
        layer + "self_attn.o_proj.bias": [("layers.{i}.attn.o_bias", identity)],
        layer + "self_attn.q_norm.weight": [("layers.{i}.attn.q_norm.weight", identity)],
        layer + "self_attn.k_norm.weight": [("layers.{i}.attn.k_norm.weight", identity)],
        layer + "mlp.gate_proj.weight": [("layers.{i}.mlp.gate", transpose)],
        layer + "mlp.up_proj.weight": [("layers.{i}.mlp.up", transpose)],
        layer + "mlp.down_proj.weight": [("layers.{i}.mlp.down", transpose)],
        layer + "mlp.gate_proj.bias": [("layers.{i}.mlp.gate_bias", identity)],
        layer + "mlp.up_proj.bias": [("layers.{i}.mlp.up_bias", identity)],
        layer + "mlp.down_proj.bias": [("layers.{i}.mlp.down_bias", identity)],
    }
    if post_attn:
        table[layer + post_attn + ".weight"] = [("layers.{i}.attn_out_norm.weight", identity)]
        table[layer + "post_feedforward_layernorm.weight"] = [("layers.{i}.ffn_out_norm.weight", identity)]
    return table


LLAMA_TABLE = _decoder_table(pre_ffn="post_attention_layernorm", post_attn=None)
GEMMA2_TABLE = _decoder_table(pre_ffn="pre_feedforward_layernorm", post_attn="post_attention_layernorm")

GPT2_TABLE = {
    "wte.weight": [("embed", identity)],
    "wpe.weight": [("pos_embed", identity)],
    "ln_f.weight": [("final_norm.weight", identity)],
    "ln_f.bias": [("final_norm.bias", identity)],
    "lm_head.weight": [("lm_head", transpose)],
    "h.{i}.ln_1.weight": [("layers.{i}.attn_norm.weight", identity)],
    "h.{i}.ln_1.bias": [("layers.{i}.attn_norm.bias", identity)],
    "h.{i}.ln_2.weight": [("layers.{i}.ffn_norm.weight", identity)],
    "h.{i}.ln_2.bias": [("layers.{i}.ffn_norm.bias", identity)],
    "h.{i}.attn.c_attn.weight": [(f"layers.{{i}}.attn.{n}", _fused_qkv(j)) for j, n in enumerate("qkv")],
    "h.{i}.attn.c_attn.bias": [(f"layers.{{i}}.attn.{n}_bias", _fused_qkv(j)) for j, n in enumerate("qkv")],
    "h.{i}.attn.c_proj.weight": [("layers.{i}.attn.o", gpt2_o_kernel)],
    "h.{i}.attn.c_proj.bias": [("layers.{i}.attn.o_bias", identity)],
    "h.{i}.mlp.c_fc.weight": [("layers.{i}.mlp.up", identity)],
    "h.{i}.mlp.c_fc.bias": [("layers.{i}.mlp.up_bias", identity)],
    "h.{i}.mlp.c_proj.weight": [("layers.{i}.mlp.down", identity)],
    "h.{i}.mlp.c_proj.bias": [("layers.{i}.mlp.down_bias", identity)],
}

# Buffers some checkpoints carry that are not parameters (recomputed from the config).
NON_PARAMETERS = (r".*rotary_emb\.inv_freq", r"h\.\d+\.attn\.(masked_)?bias")

PREFIXES = {"gpt2": ("transformer.",), "gemma3_text": ("model.language_model.", "model.")}


def table_for(cfg: ModelConfig) -> dict:
    if cfg.model_type == "gpt2":
        return GPT2_TABLE
    if cfg.model_type in ("gemma2", "gemma3_text"):
        return GEMMA2_TABLE
    return LLAMA_TABLE


def prefixes_for(cfg: ModelConfig) -> tuple[str, ...]:
    return PREFIXES.get(cfg.model_type, ("model.",))
