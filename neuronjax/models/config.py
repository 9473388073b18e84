"""The one configuration every decoder family is expressed in.

A `ModelConfig` says what the forward pass computes, in our terms; the translation from a
checkpoint's own config (Hugging Face `config.json`, GGUF metadata) lives in `neuronjax.loader`.
Families differ only by the switches below, so one decoder implementation serves them all.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Optional

import numpy as np

from neuronjax.errors import CheckpointError

LayerKind = Literal["full", "sliding"]


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Rotary position embedding of one attention kind (Su et al. 2021, rotate-half layout)."""

    theta: float = 10000.0  # base of the inverse frequencies
    kind: Literal["default", "linear", "llama3", "longrope"] = "default"  # frequency scaling rule
    factor: float = 1.0  # linear / llama3: context extension factor
    low_freq_factor: float = 1.0  # llama3 only
    high_freq_factor: float = 4.0  # llama3 only
    original_max_position: int = 8192  # llama3, longrope: the pre-extension context length
    short_factor: tuple[float, ...] = ()  # longrope: per-frequency divisors for prompts within original_max_position
    long_factor: tuple[float, ...] = ()  # longrope: the divisors for longer prompts
    attention_factor: float = 1.0  # longrope: cos and sin are multiplied by it

    def inverse_frequencies(self, dim: int, long: bool = False) -> np.ndarray:
        """float64 [dim // 2] inverse frequencies after scaling, for a rotary width of ``dim``
        (head_dim, or less with partial rotary). ``long``: longrope's set for prompts longer than
        ``original_max_position`` (Phi-3 "longrope"/"su", as transformers computes it)."""
        inv = 1.0 / (self.theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        if self.kind == "longrope":
            factors = np.asarray(self.long_factor if long else self.short_factor, np.float64)
            if factors.shape != inv.shape:
                raise CheckpointError(
                    f"longrope {'long' if long else 'short'}_factor has {factors.size} entries; the rotary width "
                    f"{dim} needs {inv.size}"
                )
            return inv / factors
        if self.kind == "linear":
            return inv / self.factor
        if self.kind == "llama3":
            # Llama 3.1: long wavelengths are divided by `factor`, short ones kept, and the band
            # between them interpolated (Meta's reference implementation of rope scaling).
            low_wavelen = self.original_max_position / self.low_freq_factor
            high_wavelen = self.original_max_position / self.high_freq_factor
            wavelen = 2.0 * math.pi / inv
            scaled = np.where(wavelen > low_wavelen, inv / self.factor, inv)
            smooth = (self.original_max_position / wavelen - self.low_freq_factor) / (
                self.high_freq_factor - self.low_freq_factor
            )
            smoothed = (1.0 - smooth) * scaled / self.factor + smooth * scaled
            medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
            return np.where(medium, smoothed, scaled)
        return inv


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only LM. Axis names: embed, heads, kv_heads, head_dim, mlp, vocab."""

    model_type: str  # family name as the checkpoint states it (llama, gemma2, gpt2, ...)
    vocab_size: int
    hidden_size: int  # embed
    intermediate_size: int  # mlp: the neuron axis of every FFN
    num_layers: int
    num_heads: int
    num_kv_heads: int  # < num_heads for grouped-query attention
    head_dim: int
    norm_kind: Literal["rms", "layer"] = "rms"
    norm_eps: float = 1e-6
    norm_plus_one: bool = False  # Gemma: RMSNorm scales by (1 + w)
    activation: Literal["silu", "gelu_tanh", "gelu"] = "silu"
    gated_mlp: bool = True  # act(x Wg) * (x Wu); False: act(x Wfc + b) (GPT-2)
    mlp_bias: bool = False
    qkv_bias: bool = False  # Qwen2, GPT-2
    out_bias: bool = False  # bias of the attention output projection (GPT-2, Llama attention_bias)
    qk_norm: bool = False  # RMSNorm on queries and keys before rope (Qwen3, Gemma 3, OLMo-2)
    qk_norm_width: Literal["head", "all"] = "head"  # over head_dim of each head, or over all heads (OLMo-2)
    pre_norm: bool = True  # norms on the attention and FFN inputs (False: OLMo-2, which has only post-norms)
    sandwich_norm: bool = False  # norms on the attention and FFN outputs before the residual add (Gemma 2/3, OLMo-2)
    parallel_residual: bool = False  # x + attn(ln1(x)) + mlp(ln2(x)): the FFN reads the block input (GPT-NeoX)
    position_kind: Literal["rope", "learned"] = "rope"
    rotary_dim: Optional[int] = None  # rope rotates only the first rotary_dim of head_dim (GPT-NeoX, Phi-3); None: all
    max_position_embeddings: int = 2048
    rope: RopeConfig = RopeConfig()  # rope of full-attention layers
    rope_local: Optional[RopeConfig] = None  # rope of sliding layers, when different (Gemma 3)
    layer_kinds: tuple[LayerKind, ...] = ()  # per layer; empty means all "full"
    sliding_window: Optional[int] = None  # keys with q_index - k_index >= window are masked
    attn_scale: Optional[float] = None  # default head_dim ** -0.5
    attn_softcap: Optional[float] = None  # Gemma 2: cap * tanh(scores / cap)
    final_softcap: Optional[float] = None  # Gemma 2: cap * tanh(logits / cap)
    embed_scale: bool = False  # Gemma: multiply embeddings by sqrt(hidden_size)
    tie_embeddings: bool = True  # lm_head shares the embedding matrix
    # Mixture of experts (Mixtral): the FFN holds num_experts experts of expert_size neurons and
    # intermediate_size = num_experts * expert_size, the neuron axis being expert-major (neuron
    # e * expert_size + i is neuron i of expert e). 0: a dense FFN.
    num_experts: int = 0
    experts_per_token: int = 0  # experts a token is routed to (top-k of the router's logits)
    router_renormalize: bool = True  # weights: softmax over the chosen experts' logits (False: over all, then kept)
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    pad_token_id: Optional[int] = None

    def __post_init__(self):
        if self.num_experts and (
            self.intermediate_size % self.num_experts or not 0 < self.experts_per_token <= self.num_experts
        ):
            raise CheckpointError(
                f"num_experts={self.num_experts} must divide intermediate_size={self.intermediate_size} and hold "
                f"experts_per_token={self.experts_per_token} (1..num_experts)"
            )
        if self.num_heads % self.num_kv_heads:
            raise CheckpointError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.layer_kinds and len(self.layer_kinds) != self.num_layers:
            raise CheckpointError(
                f"layer_kinds has {len(self.layer_kinds)} entries, expected num_layers={self.num_layers}"
            )
        if self.rotary_dim is not None and not (0 < self.rotary_dim <= self.head_dim and self.rotary_dim % 2 == 0):
            raise CheckpointError(f"rotary_dim={self.rotary_dim} must be even and within head_dim={self.head_dim}")

    @property
    def rope_dim(self) -> int:
        """The rotated width of each head (rotate-half layout within it; the rest passes through)."""
        return self.rotary_dim if self.rotary_dim is not None else self.head_dim

    @property
    def expert_size(self) -> int:
        """Neurons per expert (the whole FFN for a dense model)."""
        return self.intermediate_size // self.num_experts if self.num_experts else self.intermediate_size

    @property
    def kinds(self) -> tuple[LayerKind, ...]:
        return self.layer_kinds or ("full",) * self.num_layers

    @property
    def scale(self) -> float:
        return self.attn_scale if self.attn_scale is not None else self.head_dim**-0.5

    @property
    def attention_kinds(self) -> tuple[LayerKind, ...]:
        """The distinct attention kinds of the layers, in first-seen order."""
        return tuple(dict.fromkeys(self.kinds))

    @property
    def kind_ids(self) -> tuple[int, ...]:
        """Per layer, the index of its kind in `attention_kinds` (per-layer data of the layer scan)."""
        return tuple(self.attention_kinds.index(k) for k in self.kinds)

    def rope_of(self, kind: LayerKind) -> RopeConfig:
        return self.rope_local if kind == "sliding" and self.rope_local is not None else self.rope

    def window_of(self, kind: LayerKind) -> Optional[int]:
        return self.sliding_window if kind == "sliding" else None

    def rope_for(self, layer: int) -> RopeConfig:
        return self.rope_of(self.kinds[layer])

    def window_for(self, layer: int) -> Optional[int]:
        return self.window_of(self.kinds[layer])

    @property
    def num_neurons(self) -> int:
        """Neurons across all layers (layers x mlp)."""
        return self.num_layers * self.intermediate_size
