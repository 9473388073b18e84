"""Building blocks shared by every decoder family: parameters with logical axes, norms, rotary
embeddings, masked attention. Shapes use logical names: batch, seq (queries), keys (key positions),
embed, heads, kv_heads, head_dim, mlp, vocab."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuronjax.errors import InputError
from neuronjax.kernels.choice import current_backend
from neuronjax.kernels.shared_prefix_attention import shared_prefix_attention
from neuronjax.models.config import RopeConfig

NEG_INF = float(np.finfo(np.float32).min)


def param(rngs: nnx.Rngs, shape: Sequence[int], axes: Sequence[Optional[str]], dtype, init: str = "normal",
          stack: Optional[int] = None):  # fmt: skip
    """A parameter tagged with its logical axes (read by `neuronjax.sharding`). With `stack`, one
    per layer, stacked: shape [stack, *shape], axes ("layers", *axes)."""
    if stack is not None:
        shape, axes = (stack, *shape), ("layers", *axes)
    if init == "zeros":
        value = jnp.zeros(shape, dtype)
    elif init == "ones":
        value = jnp.ones(shape, dtype)
    else:
        value = (0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)
    return nnx.Param(value, logical_axes=tuple(axes))


class Norm(nnx.Module):
    """RMSNorm (optionally Gemma's (1 + w) form) or LayerNorm, computed in float32, over the
    trailing axes of the weight's shape: one axis (embed, or head_dim for per-head q/k norms) or
    two (heads, head_dim: OLMo-2 normalises the whole projected query and key)."""

    def __init__(self, size: int | tuple[int, ...], kind: str, eps: float, plus_one: bool, axis: str | tuple[str, ...],
                 dtype, rngs: nnx.Rngs, stack: Optional[int] = None):  # fmt: skip
        shape = (size,) if isinstance(size, int) else tuple(size)
        axes = (axis,) if isinstance(axis, str) else tuple(axis)
        self.kind, self.eps, self.plus_one = kind, eps, plus_one
        self.reduce = tuple(range(-len(shape), 0))
        self.weight = param(rngs, shape, axes, dtype, "zeros" if plus_one else "ones", stack)
        if kind == "layer":
            self.bias = param(rngs, shape, axes, dtype, "zeros", stack)

    def __call__(self, x: jax.Array) -> jax.Array:
        # Size-1 leading axes (the one-token rows [variant, batch, 1, embed] of the IG replay and
        # of cached steps) are dropped for the computation and put back after it. On XLA's CPU
        # backend the backward pass's sum(g * x) over the last axis ran about 10x slower on
        # [119, 8, 1, 576] than on [119, 8, 576] (1.5 against 0.17 ms, 2026-12-02); without the
        # size-1 axis the replay's layer scan took 5-7% less time (docs/performance.md, "Measured
        # 2026-12-02 (morning) ... the norms' backward sum"). The values are the same either way.
        ones = tuple(i for i in range(x.ndim - len(self.reduce)) if x.shape[i] == 1)
        if ones:
            return jnp.expand_dims(self._normalise(jnp.squeeze(x, ones)), ones)
        return self._normalise(x)

    def _normalise(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        w = self.weight[...].astype(jnp.float32)
        if self.kind == "layer":
            mean = x32.mean(self.reduce, keepdims=True)
            var = jnp.square(x32 - mean).mean(self.reduce, keepdims=True)
            y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * w + self.bias[...].astype(jnp.float32)
        else:
            y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(self.reduce, keepdims=True) + self.eps)
            y = y * (1.0 + w if self.plus_one else w)
        return y.astype(x.dtype)


def rope_tables(positions: jax.Array, rope: RopeConfig, dim: int) -> tuple[jax.Array, jax.Array]:
    """cos, sin float32 [batch, seq, dim] for integer positions [batch, seq] and a rotary width
    ``dim`` (`ModelConfig.rope_dim`).

    Longrope (Phi-3) has two frequency sets; a row uses the long one when its length (its last
    position + 1) exceeds ``original_max_position``. transformers decides once for the whole batch
    (by its longest row); deciding per row gives the same numbers whenever the rows agree (and
    for one prompt at a time) and keeps a prompt's result independent of its batch. A cached
    continuation decides by its own length, as transformers' cached generation does."""
    inv = jnp.asarray(rope.inverse_frequencies(dim), jnp.float32)
    if rope.kind == "longrope":
        long = jnp.asarray(rope.inverse_frequencies(dim, long=True), jnp.float32)
        length = positions.max(axis=-1, keepdims=True) + 1  # [batch, 1]
        inv = jnp.where((length > rope.original_max_position)[..., None], long, inv)  # [batch, 1, dim // 2]
    angles = positions.astype(jnp.float32)[..., None] * inv
    angles = jnp.concatenate([angles, angles], axis=-1)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    if rope.kind == "longrope" and rope.attention_factor != 1.0:
        cos, sin = cos * rope.attention_factor, sin * rope.attention_factor
    return cos, sin


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate x [..., batch, seq, heads, head_dim] by position (rotate-half layout); cos, sin
    [batch, seq, rotary]. With partial rotary (rotary < head_dim: GPT-NeoX, Phi-3), only the first
    ``rotary`` features of each head rotate, the rest pass through, as in transformers."""
    r = cos.shape[-1]
    x32 = x.astype(jnp.float32)
    part = x32[..., :r] if r < x.shape[-1] else x32
    half = r // 2
    rotated = jnp.concatenate([-part[..., half:], part[..., :half]], axis=-1)
    out = part * cos[:, :, None, :] + rotated * sin[:, :, None, :]
    if r < x.shape[-1]:
        out = jnp.concatenate([out, x32[..., r:]], axis=-1)
    return out.astype(x.dtype)


def attention_bias(q_index: jax.Array, k_index: jax.Array, key_valid: jax.Array, window: Optional[int]) -> jax.Array:
    """Additive mask float32 [batch, 1, 1, seq, keys]: causal, padding, optional sliding window.

    q_index [seq] and k_index [keys] are absolute slot indices (padding included), key_valid is
    bool [batch, keys]. Masked entries get the most negative float, not -inf, so that rows with no
    visible key (left padding) stay finite.
    """
    allowed = k_index[None, :] <= q_index[:, None]
    if window is not None:
        allowed &= (q_index[:, None] - k_index[None, :]) < window
    allowed = allowed[None] & key_valid[:, None, :]
    return jnp.where(allowed, 0.0, NEG_INF)[:, None, None, :, :]


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    bias: jax.Array,
    scale: float,
    softcap: Optional[float],
    past: Optional[tuple[jax.Array, jax.Array]] = None,
    placement=None,
) -> jax.Array:
    """Grouped-query attention with any leading axes.

    q [..., batch, seq, heads, head_dim]; k, v [..., batch, seq, kv_heads, head_dim] (this call's
    tokens); past: optional (keys, values) [batch, cached, kv_heads, head_dim] of earlier tokens,
    shared by every leading index of q (many variants of the last token read one prompt cache
    without copying it); bias [batch, 1, 1, seq, cached + seq]; placement: the model's mesh and
    sharding rules (the shared-prefix kernel runs per shard on a mesh). Returns q's shape.
    """
    if past is not None:
        # The shared-cache case has its own kernel (Pallas on GPU/TPU, this same math in jnp on
        # CPU); NEURONJAX_KERNELS forces one implementation.
        mesh, rules = (placement.mesh, placement.rules) if placement is not None else (None, None)
        return shared_prefix_attention(q, k, v, past[0], past[1], bias, scale, softcap, mesh=mesh, rules=rules)
    if q.ndim == 4 and fused_attention_applies(q.dtype, softcap):
        return fused_attention(q, k, v, bias, scale)
    *lead, s, h, d = q.shape
    kv = k.shape[-2]
    qg = q.reshape(*lead, s, kv, h // kv, d)
    scores = jnp.einsum("...skgd,...tkd->...kgst", qg, k, preferred_element_type=jnp.float32) * scale
    if softcap is not None:
        scores = softcap * jnp.tanh(scores / softcap)
    probs = jax.nn.softmax(scores + bias, axis=-1).astype(v.dtype)
    out = jnp.einsum("...kgst,...tkd->...skgd", probs, v)
    return out.reshape(*lead, s, h, d)


ATTENTION_ENV = "NEURONJAX_ATTENTION"  # "auto" (default), "xla" or "fused"


def on_gpu() -> bool:
    """Whether computations go to a GPU by default: the platform of ``jax.default_device`` when
    one is set (work sent to the CPU of a GPU machine must not get cuDNN), else the backend's."""
    return current_backend() in ("gpu", "cuda")


def fused_attention_applies(dtype, softcap: Optional[float]) -> bool:
    """Whether the prompt pass uses the backend's fused attention (`jax.nn.dot_product_attention`:
    cuDNN's flash attention on GPU): on a GPU, in bfloat16 or float16, for families without
    attention soft-capping (Gemma 2 caps scores, which the fused kernel cannot). NEURONJAX_ATTENTION
    forces "xla" (the einsum path below) or "fused" (then XLA's own implementation of the same call
    runs where cuDNN does not, e.g. on a CPU, which is how the switch is tested here)."""
    choice = os.environ.get(ATTENTION_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "xla", "fused"):
        raise InputError(f"{ATTENTION_ENV}={choice!r}: expected auto, xla or fused")
    if softcap is not None or choice == "xla":
        return False
    if choice == "fused":
        return True
    return on_gpu() and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, scale: float) -> jax.Array:
    """Prompt-pass attention through `jax.nn.dot_product_attention`. q [batch, seq, heads,
    head_dim]; k, v [batch, keys, kv_heads, head_dim]; bias [batch, 1, 1, seq, keys] from
    `attention_bias`, turned into a boolean mask. A query with no visible key (a left-padding slot)
    is let see itself, so that no row is all masked (kernels may return NaN there); such rows
    are never read."""
    allowed = bias[:, 0] > NEG_INF / 2  # [batch, 1, seq, keys]
    s, t = allowed.shape[-2:]
    diagonal = jnp.arange(t)[None, :] == (t - s + jnp.arange(s))[:, None]
    allowed = allowed | (~allowed.any(axis=-1, keepdims=True) & diagonal)
    impl = "cudnn" if on_gpu() else None
    return jax.nn.dot_product_attention(q, k, v, mask=allowed, scale=scale, implementation=impl).astype(q.dtype)


def activation(name: str, x: jax.Array) -> jax.Array:
    if name == "silu":
        return jax.nn.silu(x)
    if name == "gelu_tanh":
        return jax.nn.gelu(x, approximate=True)
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    raise InputError(f"unknown activation {name!r}")
