"""Everything that knows Hugging Face naming: `config.json` fields -> `ModelConfig`, and the
declarative tables that map checkpoint tensor names to our parameter paths.

A table row is ``source template -> [(target template, transform)]``. Templates use ``{i}`` for
the layer index; checkpoint names are matched after their wrapper prefix (``model.``,
``transformer.``) is removed. Transforms turn the stored layout into ours: PyTorch `Linear` keeps
``[out, in]``, we keep ``[in, out]`` with attention heads as their own axis.

Size: one idea, Hugging Face naming, for eleven families: their config fields and their tensor
names stay together so that this is the only module that knows them.
"""

from __future__ import annotations

import math
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
SUPPORTED = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox",
             "olmo2", "phi3")  # fmt: skip


def _req(d: dict, key: str, source: str) -> Any:
    if key not in d or d[key] is None:
        raise ConfigError(f"{source}: required field '{key}' is missing")
    return d[key]


def _activation(d: dict, source: str, *keys: str, default: str = "silu") -> str:
    for key in keys:
        if d.get(key):
            name = d[key]
            if name not in ACTIVATIONS:
                raise UnsupportedModelError(
                    f"{source}: field '{key}' = {name!r} is not supported; expected one of {sorted(ACTIVATIONS)}"
                )
            return ACTIVATIONS[name]
    return default


def _rope(params: dict | None, theta: float, source: str, field: str, d: dict | None = None) -> RopeConfig:
    params = params or {}
    kind = params.get("rope_type", params.get("type", "default")) or "default"
    theta = float(params.get("rope_theta", theta))
    if kind in ("longrope", "su") and d is not None and d.get("model_type") == "phi3":
        return _longrope(params, theta, d, source, field)
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
        f"{source}: field '{field}' has rope type {kind!r}; supported: default, linear, llama3, and longrope/su "
        "for phi3"
    )


def _longrope(params: dict, theta: float, d: dict, source: str, field: str) -> RopeConfig:
    """Phi-3's longrope ("su" in older configs), with transformers' defaults: factor =
    max_position_embeddings / original_max_position_embeddings, attention factor
    sqrt(1 + ln(factor) / ln(original)) when the factor exceeds 1."""
    where = f"{source}: {field}"
    original = params.get("original_max_position_embeddings") or _req(d, "original_max_position_embeddings", source)
    original = int(original)
    factor = params.get("factor") or int(_req(d, "max_position_embeddings", source)) / original
    attention = params.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    return RopeConfig(
        theta=theta, kind="longrope", original_max_position=original, attention_factor=float(attention),
        short_factor=tuple(float(x) for x in _req(params, "short_factor", where)),
        long_factor=tuple(float(x) for x in _req(params, "long_factor", where)),
    )  # fmt: skip


def _global_rope(d: dict, source: str, theta: float = 10000.0) -> RopeConfig:
    """transformers 5 writes `rope_parameters`; 4.x writes `rope_theta` and `rope_scaling`."""
    rp = d.get("rope_parameters")
    if isinstance(rp, dict) and "full_attention" in rp:
        return _rope(rp["full_attention"], theta, source, "rope_parameters.full_attention")
    if isinstance(rp, dict):
        return _rope(rp, d.get("rope_theta", theta), source, "rope_parameters", d)
    return _rope(d.get("rope_scaling"), d.get("rope_theta", theta), source, "rope_scaling", d)


def _rotary_dim(d: dict, head_dim: int, default: float = 1.0) -> int | None:
    """Partial rotary: transformers 5 keeps the fraction in `rope_parameters`; 4.x configs spell
    it `partial_rotary_factor` (Phi-3) or `rotary_pct` (GPT-NeoX). None when all of head_dim rotates."""
    rp = d.get("rope_parameters") if isinstance(d.get("rope_parameters"), dict) else {}
    fraction = rp.get("partial_rotary_factor", d.get("partial_rotary_factor", d.get("rotary_pct", default)))
    dim = int(head_dim * float(fraction))
    return None if dim == head_dim else dim


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
    if mt == "gpt_neox":
        e = int(_req(d, "hidden_size", source))
        heads = int(_req(d, "num_attention_heads", source))
        bias = bool(d.get("attention_bias", True))
        theta = float(d.get("rotary_emb_base", 10000.0))
        return ModelConfig(
            model_type=mt, vocab_size=int(_req(d, "vocab_size", source)), hidden_size=e,
            intermediate_size=int(_req(d, "intermediate_size", source)),
            num_layers=int(_req(d, "num_hidden_layers", source)), num_heads=heads, num_kv_heads=heads,
            head_dim=e // heads, norm_kind="layer", norm_eps=float(d.get("layer_norm_eps", 1e-5)),
            activation=_activation(d, source, "hidden_act", default="gelu"),
            gated_mlp=False, mlp_bias=True, qkv_bias=bias, out_bias=bias,
            parallel_residual=bool(d.get("use_parallel_residual", True)),
            rope=_global_rope(d, source, theta), rotary_dim=_rotary_dim(d, e // heads, default=0.25),
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
            tie_embeddings=bool(d.get("tie_word_embeddings", False)), **ids,
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
    if mt == "olmo2":  # post-norms only; q/k RMSNorm over all heads
        cfg.update(pre_norm=False, sandwich_norm=True, qk_norm=True, qk_norm_width="all", sliding_window=None)
    if mt == "phi3":
        cfg.update(rotary_dim=_rotary_dim(d, common["head_dim"]), qkv_bias=False, out_bias=False)
    if mt == "mixtral":  # experts side by side on the neuron axis (see neuronjax.models.decoder.MLP)
        experts = int(_req(d, "num_local_experts", source))
        cfg.update(intermediate_size=experts * cfg["intermediate_size"], num_experts=experts,
                   experts_per_token=int(_req(d, "num_experts_per_tok", source)))  # fmt: skip
    if mt in ("mistral", "mixtral", "phi3"):  # one window for every layer
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


def qkv_rows(part: int, then: Transform) -> Transform:
    """Fused q/k/v stored as row blocks [q; k; v] of heads*head_dim, kv_heads*head_dim and
    kv_heads*head_dim rows (Phi-3's qkv_proj; llama.cpp's attn_qkv): take one block, then lay it
    out with `then`. Serves the weight [rows, embed] and the bias [rows]."""

    def take(w, cfg):
        q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        lo = (0, q, q + kv)[part]
        return then(w[lo : lo + (q if part == 0 else kv)], cfg)

    return take


def neox_qkv(part: int) -> Transform:
    """GPT-NeoX's query_key_value interleaves per head: its rows are (head, [q, k, v], head_dim)
    (transformers views the output as [..., heads, 3 * head_dim] and chunks the last axis). Take
    one of q, k, v: weight [rows, embed] -> [embed, heads, head_dim], bias [rows] -> [heads, head_dim]."""

    def take(w, cfg):
        x = w.reshape(cfg.num_heads, 3, cfg.head_dim, *w.shape[1:])[:, part]
        return x if x.ndim == 2 else x.transpose(2, 0, 1)

    return take


def gate_up(part: int) -> Transform:
    """Phi-3's gate_up_proj [2 * mlp, embed]: the gate rows, then the up rows (transformers chunks
    the output in two); -> [embed, mlp]."""

    def take(w, cfg):
        f = cfg.intermediate_size
        return w[part * f : (part + 1) * f].T

    return take


def _decoder_table(pre_attn: str | None = "input_layernorm", pre_ffn: str | None = "post_attention_layernorm",
                   post_attn: str | None = None, post_ffn: str | None = None,
                   qk_norm: tuple[Transform, Transform] = (identity, identity)) -> dict:  # fmt: skip
    """The Llama-style naming every family from Llama on shares; the arguments name the norms
    (checkpoint module names) before and after attention and the FFN, and how q/k norm weights
    are laid out (one head's width, or [heads, head_dim] for OLMo-2)."""
    layer = "layers.{i}."
    table = {
        "embed_tokens.weight": [("embed", identity)],
        "norm.weight": [("final_norm.weight", identity)],
        "lm_head.weight": [("lm_head", transpose)],
        layer + "self_attn.q_proj.weight": [("layers.{i}.attn.q", q_kernel)],
        layer + "self_attn.k_proj.weight": [("layers.{i}.attn.k", kv_kernel)],
        layer + "self_attn.v_proj.weight": [("layers.{i}.attn.v", kv_kernel)],
        layer + "self_attn.o_proj.weight": [("layers.{i}.attn.o", o_kernel)],
        layer + "self_attn.q_proj.bias": [("layers.{i}.attn.q_bias", q_bias)],
        layer + "self_attn.k_proj.bias": [("layers.{i}.attn.k_bias", kv_bias)],
        layer + "self_attn.v_proj.bias": [("layers.{i}.attn.v_bias", kv_bias)],
        layer + "self_attn.o_proj.bias": [("layers.{i}.attn.o_bias", identity)],
        layer + "self_attn.q_norm.weight": [("layers.{i}.attn.q_norm.weight", qk_norm[0])],
        layer + "self_attn.k_norm.weight": [("layers.{i}.attn.k_norm.weight", qk_norm[1])],
        layer + "mlp.gate_proj.weight": [("layers.{i}.mlp.gate", transpose)],
        layer + "mlp.up_proj.weight": [("layers.{i}.mlp.up", transpose)],
        layer + "mlp.down_proj.weight": [("layers.{i}.mlp.down", transpose)],
        layer + "mlp.gate_proj.bias": [("layers.{i}.mlp.gate_bias", identity)],
        layer + "mlp.up_proj.bias": [("layers.{i}.mlp.up_bias", identity)],
        layer + "mlp.down_proj.bias": [("layers.{i}.mlp.down_bias", identity)],
    }
    norms = {"attn_norm": pre_attn, "ffn_norm": pre_ffn, "attn_out_norm": post_attn, "ffn_out_norm": post_ffn}
    for ours, theirs in norms.items():
        if theirs:
            table[layer + theirs + ".weight"] = [(f"layers.{{i}}.{ours}.weight", identity)]
    return table


LLAMA_TABLE = _decoder_table()
GEMMA2_TABLE = _decoder_table(pre_ffn="pre_feedforward_layernorm", post_attn="post_attention_layernorm",
                              post_ffn="post_feedforward_layernorm")  # fmt: skip
OLMO2_TABLE = _decoder_table(pre_attn=None, pre_ffn=None, post_attn="post_attention_layernorm",
                             post_ffn="post_feedforward_layernorm", qk_norm=(q_bias, kv_bias))  # fmt: skip
PHI3_TABLE = {
    **LLAMA_TABLE,
    "layers.{i}.self_attn.qkv_proj.weight": [
        ("layers.{i}.attn.q", qkv_rows(0, q_kernel)), ("layers.{i}.attn.k", qkv_rows(1, kv_kernel)),
        ("layers.{i}.attn.v", qkv_rows(2, kv_kernel)),
    ],
    "layers.{i}.mlp.gate_up_proj.weight": [("layers.{i}.mlp.gate", gate_up(0)), ("layers.{i}.mlp.up", gate_up(1))],
}  # fmt: skip

MIXTRAL_TABLE = {
    **{k: v for k, v in LLAMA_TABLE.items() if ".mlp." not in k},
    "layers.{i}.block_sparse_moe.gate.weight": [("layers.{i}.mlp.router", transpose)],  # [experts, embed] -> [embed, experts]
    # expert j's weights fill its block of the neuron axis (a third entry names the axis)
    "layers.{i}.block_sparse_moe.experts.{j}.w1.weight": [("layers.{i}.mlp.gate", transpose, "mlp")],
    "layers.{i}.block_sparse_moe.experts.{j}.w3.weight": [("layers.{i}.mlp.up", transpose, "mlp")],
    "layers.{i}.block_sparse_moe.experts.{j}.w2.weight": [("layers.{i}.mlp.down", transpose, "mlp")],
}  # fmt: skip

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

GPT_NEOX_TABLE = {
    "embed_in.weight": [("embed", identity)],
    "final_layer_norm.weight": [("final_norm.weight", identity)],
    "final_layer_norm.bias": [("final_norm.bias", identity)],
    "embed_out.weight": [("lm_head", transpose)],  # outside the gpt_neox. wrapper
    "layers.{i}.input_layernorm.weight": [("layers.{i}.attn_norm.weight", identity)],
    "layers.{i}.input_layernorm.bias": [("layers.{i}.attn_norm.bias", identity)],
    "layers.{i}.post_attention_layernorm.weight": [("layers.{i}.ffn_norm.weight", identity)],
    "layers.{i}.post_attention_layernorm.bias": [("layers.{i}.ffn_norm.bias", identity)],
    "layers.{i}.attention.query_key_value.weight": [(f"layers.{{i}}.attn.{n}", neox_qkv(j))
                                                    for j, n in enumerate("qkv")],
    "layers.{i}.attention.query_key_value.bias": [(f"layers.{{i}}.attn.{n}_bias", neox_qkv(j))
                                                  for j, n in enumerate("qkv")],
    "layers.{i}.attention.dense.weight": [("layers.{i}.attn.o", o_kernel)],
    "layers.{i}.attention.dense.bias": [("layers.{i}.attn.o_bias", identity)],
    "layers.{i}.mlp.dense_h_to_4h.weight": [("layers.{i}.mlp.up", transpose)],
    "layers.{i}.mlp.dense_h_to_4h.bias": [("layers.{i}.mlp.up_bias", identity)],
    "layers.{i}.mlp.dense_4h_to_h.weight": [("layers.{i}.mlp.down", transpose)],
    "layers.{i}.mlp.dense_4h_to_h.bias": [("layers.{i}.mlp.down_bias", identity)],
}  # fmt: skip

# Buffers some checkpoints carry that are not parameters (recomputed from the config).
NON_PARAMETERS = (r".*rotary_emb\.inv_freq", r"h\.\d+\.attn\.(masked_)?bias", r"layers\.\d+\.attention\.(masked_)?bias")

PREFIXES = {"gpt2": ("transformer.",), "gpt_neox": ("gpt_neox.",), "gemma3_text": ("model.language_model.", "model.")}
TABLES = {"gpt2": GPT2_TABLE, "gpt_neox": GPT_NEOX_TABLE, "gemma2": GEMMA2_TABLE, "gemma3_text": GEMMA2_TABLE,
          "olmo2": OLMO2_TABLE, "phi3": PHI3_TABLE, "mixtral": MIXTRAL_TABLE}  # fmt: skip


def table_for(cfg: ModelConfig) -> dict:
    return TABLES.get(cfg.model_type, LLAMA_TABLE)


def prefixes_for(cfg: ModelConfig) -> tuple[str, ...]:
    return PREFIXES.get(cfg.model_type, ("model.",))
