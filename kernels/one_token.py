"""One-token shared-prefix attention in XLA, laid out for the CPU: the replay's attention core.

What it computes is `shared_prefix_attention.reference` for one query token (seq == 1): every
variant's query reads the prompt's cached keys and values plus its own new key and value. The
reference writes that as einsums over [..., batch, seq, kv_heads, group, ...]. XLA's CPU backend
turns those into small batched products over (batch, kv head) whose operands and results it
relays out around every product, in the forward pass and again, with more of them, in the
automatic backward pass. On the IG replay's shapes (119 variants x 8 prompts, 9 heads in 3 kv
groups, 94 cached keys, head_dim 64) the attention core took about a fifth of a layer's forward
time for 3% of its products (docs/performance.md, "One replay layer, part by part").

Here the query rows are laid out once as [batch, kv_head, rows, head_dim] (rows = the variants
times the group's heads, in that order), the cache as [batch, kv_head, cached, head_dim], and
every array of the step keeps that layout: scores and probabilities against the cache [batch,
kv_head, rows, cached] and against each row's own key [batch, kv_head, rows], so each product
reads and writes its natural layout and the softmax runs along the last axis. The two parts are
never joined into one [.., cached + 1] array: one softmax spans both (the maximum and the sum
taken over each and combined), which saves the concatenation and the slices of that odd-width
array in both passes (6% of an IG call at m = 16 and 4% at the default nodes, 8 world_facts
prompts, alternating rounds in one process, 2026-12-03). The backward pass is written out
(`jax.custom_vjp`) in the same layout, from the probabilities saved by the forward pass (and,
with a softcap, its tanh).
It computes the gradients of the inputs being differentiated only (symbolic zeros): the replay
differentiates the rows' q, k and v, which takes two products of the forward pass's shapes; the
cached keys' and values' gradients take one product each, when asked for.

Numbers: scores, softmax and every sum in float32; the weighted values are summed in float32
from the probabilities cast to the values' dtype (as the reference does) and cast to it once at
the end; gradients are computed in float32 and returned in their inputs' dtypes.

`applies` says when it runs (one query position, a bias of the replay's form [batch or 1, 1, 1,
1, cached + 1]); `shared_prefix_attention` uses it on the CPU for one-token steps unless an
implementation is forced.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp

F32 = jnp.float32


def applies(q, k, v, bias) -> bool:
    """Whether `attention` takes these shapes: one query position, k and v with q's leading
    axes, and a bias [batch or 1, 1, 1, 1, cached + 1] (one row for every variant and head)."""
    return (
        q.ndim >= 4 and q.shape[-3] == 1 and k.shape[:-2] == q.shape[:-2] and v.shape == k.shape
        and bias.ndim == 5 and bias.shape[1:4] == (1, 1, 1) and bias.shape[0] in (1, q.shape[-4])
        and q.shape[-2] % k.shape[-2] == 0
    )  # fmt: skip


def attention(q, k, v, past_k, past_v, bias, scale: float, softcap: Optional[float]) -> jax.Array:
    """`shared_prefix_attention.reference` for one query token (`applies` must hold).

    q [..., batch, 1, heads, head_dim]; k, v [..., batch, 1, kv_heads, head_dim]; past_k, past_v
    [batch, cached, kv_heads, head_dim]; bias [batch or 1, 1, 1, 1, cached + 1]. Returns q's
    shape in v's dtype.
    """
    *lead, b, _, h, d = q.shape
    kv = k.shape[-2]
    n = math.prod(lead)
    out = _core(
        q.reshape(n, b, h, d), k.reshape(n, b, kv, d), v.reshape(n, b, kv, d), past_k, past_v,
        bias.reshape(bias.shape[0], -1), float(scale), None if softcap is None else float(softcap),
    )  # fmt: skip
    return out.reshape(q.shape)


def _rows(x, kv):  # [n, b, h, d] -> [b, kv, n * group, d]
    n, b, h, d = x.shape
    return x.reshape(n, b, kv, h // kv, d).transpose(1, 2, 0, 3, 4).reshape(b, kv, n * (h // kv), d)


def _unrows(x, n):  # [b, kv, n * group, d] -> [n, b, kv * group, d]
    b, kv, r, d = x.shape
    return x.reshape(b, kv, n, r // n, d).transpose(2, 0, 1, 3, 4).reshape(n, b, kv * (r // n), d)


def _per_group(x, group):  # [b, kv, n * group, ...] -> [b, kv, n, group, ...]
    return x.reshape(x.shape[0], x.shape[1], x.shape[2] // group, group, *x.shape[3:])


def _bdot(x, y, x_contract: int, y_contract: int):
    """Product over the shared leading (batch, kv_head) axes, summed in float32."""
    return jax.lax.dot_general(x, y, (((x_contract,), (y_contract,)), ((0, 1), (0, 1))), preferred_element_type=F32)


def _forward(q, k, v, past_k, past_v, bias, scale, softcap):
    n, b, h, _ = q.shape
    kv = k.shape[2]
    group = h // kv
    t = past_k.shape[1]
    qr = _rows(q, kv)  # [b, kv, rows, d]
    kn, vn = k.transpose(1, 2, 0, 3), v.transpose(1, 2, 0, 3)  # the rows' own keys/values [b, kv, n, d]
    kc, vc = past_k.transpose(0, 2, 1, 3), past_v.transpose(0, 2, 1, 3)  # [b, kv, cached, d]
    # the scores against the cache [b, kv, rows, cached] and against each row's own key [b, kv,
    # rows] stay apart: one softmax over both, with no [.., cached + 1] array built
    raw_c = _bdot(qr, kc, 3, 3) * scale
    raw_o = jnp.einsum("bkngd,bknd->bkng", _per_group(qr, group), kn, preferred_element_type=F32)
    raw_o = raw_o.reshape(b, kv, -1) * scale
    tanh = None
    if softcap is not None:
        tanh = (jnp.tanh(raw_c / softcap), jnp.tanh(raw_o / softcap))
        raw_c, raw_o = softcap * tanh[0], softcap * tanh[1]
    bias = bias.astype(F32)
    s_c = raw_c + bias[:, None, None, :t]
    s_o = raw_o + bias[:, None, t:]
    top = jnp.maximum(s_c.max(-1), s_o)
    e_c = jnp.exp(s_c - top[..., None])
    e_o = jnp.exp(s_o - top)
    total = e_c.sum(-1) + e_o
    p_c, p_o = e_c / total[..., None], e_o / total
    out = _bdot(p_c.astype(v.dtype), vc.astype(v.dtype), 3, 2)
    own = _per_group(p_o.astype(v.dtype), group)[..., None].astype(F32) * vn[:, :, :, None, :]
    out = out + own.reshape(out.shape)
    return _unrows(out, n).astype(v.dtype), (qr, kn, vn, kc, vc, (p_c, p_o), tanh)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _core(q, k, v, past_k, past_v, bias, scale, softcap):
    return _forward(q, k, v, past_k, past_v, bias, scale, softcap)[0]


NAMES = ("q", "k", "v", "past_k", "past_v", "bias")


def _core_fwd(q, k, v, past_k, past_v, bias, scale, softcap):
    # symbolic zeros: each input comes with whether it is differentiated; the names of those that
    # are travel as the keys of a dict (static pytree structure), so the backward pass computes
    # only their gradients (the replay differentiates q, k and v, never the cache or the bias)
    args = (q, k, v, past_k, past_v, bias)
    wanted = {name: None for name, a in zip(NAMES, args) if a.perturbed}
    out, saved = _forward(*(a.value for a in args), scale, softcap)
    return out, (saved, bias.value, wanted)


def _core_bwd(scale, softcap, residuals, d_out):
    (qr, kn, vn, kc, vc, (p_c, p_o), tanh), bias, wanted = residuals
    if isinstance(d_out, jax.custom_derivatives.SymbolicZero):
        return (None,) * len(NAMES)
    n, b, h, _ = d_out.shape
    kv = kn.shape[1]
    group = h // kv
    grads = dict.fromkeys(NAMES)
    do = _rows(d_out.astype(F32), kv)  # [b, kv, rows, d]
    # what the forward's value products read
    pv_c, pv_o = p_c.astype(vn.dtype).astype(F32), p_o.astype(vn.dtype).astype(F32)
    # d(values): cached ones summed over every row; each row's own value over its group's heads
    if "past_v" in wanted:
        grads["past_v"] = _bdot(pv_c, do, 2, 2).transpose(0, 2, 1, 3).astype(vc.dtype)
    if "v" in wanted:
        d_vn = jnp.einsum("bkng,bkngd->bknd", _per_group(pv_o, group), _per_group(do, group))
        grads["v"] = d_vn.transpose(2, 0, 1, 3).astype(vn.dtype)
    if not wanted.keys() & {"q", "k", "past_k", "bias"}:
        return tuple(grads.values())
    # d(probabilities), then through the softmax: d(logits) = p * (dp - sum(p * dp)), the sum
    # over the cached keys and the row's own
    dp_c = _bdot(do, vc.astype(F32), 3, 3)  # [b, kv, rows, cached]
    dp_o = jnp.einsum("bkngd,bknd->bkng", _per_group(do, group), vn.astype(F32)).reshape(b, kv, -1)
    mean = (p_c * dp_c).sum(-1) + p_o * dp_o
    d_c = p_c * (dp_c - mean[..., None])
    d_o = p_o * (dp_o - mean)
    if "bias" in wanted:
        d_bias = jnp.concatenate([d_c.sum((1, 2)), d_o.sum((1, 2))[:, None]], axis=-1)  # [b, cached + 1]
        grads["bias"] = (d_bias.sum(0, keepdims=True) if bias.shape[0] == 1 else d_bias).astype(bias.dtype)
    if tanh is not None:
        d_c, d_o = d_c * (1.0 - tanh[0] * tanh[0]), d_o * (1.0 - tanh[1] * tanh[1])
    d_c, d_o = d_c * scale, d_o * scale
    if "q" in wanted:
        d_qr = _bdot(d_c, kc.astype(F32), 3, 2)
        own = _per_group(d_o, group)[..., None] * kn[:, :, :, None, :].astype(F32)
        grads["q"] = _unrows(d_qr + own.reshape(d_qr.shape), n).astype(qr.dtype)
    if "past_k" in wanted:
        grads["past_k"] = _bdot(d_c, qr.astype(F32), 2, 2).transpose(0, 2, 1, 3).astype(kc.dtype)
    if "k" in wanted:
        d_kn = jnp.einsum("bkng,bkngd->bknd", _per_group(d_o, group), _per_group(qr, group).astype(F32))
        grads["k"] = d_kn.transpose(2, 0, 1, 3).astype(kn.dtype)
    return tuple(grads.values())


_core.defvjp(_core_fwd, _core_bwd, symbolic_zeros=True)
