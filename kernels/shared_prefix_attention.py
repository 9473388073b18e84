"""Attention of many query variants against one shared prompt cache.

Why this kernel exists
----------------------
Attribution (the integrated-gradient alpha steps of ``neuronjax.attribution.last_token``) and
evaluation (the stacked interventions of ``neuronjax.evaluation``) replay the last prompt token
many times: every variant has its own query, key and value for that token, and all variants
attend to the same cached keys/values of the rest of the prompt. Written with einsums
(``reference``), XLA runs two batched matmuls with the whole float32 score matrix [variants,
heads, cached] (per batch and kv head) in memory between them: it is written by the first
product, concatenated with the new token's scores (a copy), read and written again by the
softcap/bias/softmax fusions, cast, and read by the second product; the backward pass adds as
many more round trips. In one-token steps that matrix (variants x group heads x cached floats)
is of the same order as the cache (cached x head_dim), and the step is bound by memory traffic
rather than arithmetic. The Pallas
kernel runs one program per (batch, kv_head, query position, block of at most 128 query rows),
where the rows are all variants x all query heads of the kv group. Each program streams the
shared keys/values in blocks along ``cached`` and keeps an online (flash-style) softmax on chip,
so each cache block is loaded once and used by every variant and head of the group, and no score
or probability matrix reaches memory. Each variant's own new key/value is then folded into that
softmax (a small per-variant computation, done in jnp).

Semantics are those of ``neuronjax.models.layers.attend`` with ``past`` given: grouped-query
heads, scores in float32, ``scale`` then optional ``softcap * tanh(scores / softcap)``, an
additive bias [batch, 1, 1, seq, cached + seq] whose masked entries are the most negative
float32 (so a row whose cached keys are all masked still attends to its new key, and a row with
nothing visible averages everything, as in the reference).

Implementations (``impl``, see ``neuronjax.kernels.choice``): "reference" (pure jnp, the math ``attend``
always used), "pallas", "interpret" (the Pallas kernel under the Pallas interpreter), "auto".
With "auto" on an accelerator, steps of more than one query token (seq > 1) use the reference:
the kernel handles them (one grid axis per query position, so the cache is re-read once per
position), but the shared-cache saving is for one-token steps, which is the hot path. An
explicit impl or ``NEURONJAX_KERNELS`` forces the kernel for any seq. Where "auto" resolves to the
reference on the CPU (one device, no mesh), one-token steps run ``one_token.attention``
(``kernels/one_token.py``): the reference's math with the rows laid out [batch, kv_head, rows]
and a written backward pass, twice as fast on the IG replay's shapes; an explicit "reference"
(argument or ``NEURONJAX_KERNELS``) runs the einsums below.

Gradients: the kernel part has a ``jax.custom_vjp`` whose backward pass is a second Pallas kernel
(same grid; it recomputes the probabilities from the saved row max and sum, accumulates the query
gradient in the loop and writes the cache/bias gradients of every block; rows of all variants sit
in one program, so the sum over variants of the cache gradient needs no atomics). Under
``jax.vmap`` with an unbatched cache, the forward folds the mapped axis into the query rows
(``jax.custom_batching.custom_vmap``), so the cache is still read once for all mapped variants;
the backward then uses Pallas' default batching (correct, one cache read per mapped index).

Layout and padding: the cache is padded along ``cached`` to a multiple of the block (padded keys
are masked by index inside the kernel) and head_dim is padded to a power of two when it is not
one (Triton needs power-of-two tensors); both are copies of the cache made only when needed. On
TPU the cache is also transposed to [batch, kv_heads, cached, head_dim], because Mosaic needs the
last two dims of a block to be whole array dims (or multiples of (8, 128)); on GPU it is read in
place through a strided block. Query rows are padded to a power of two of at least 16 (Triton's
minimum dot size; a multiple of 8 for TPU sublanes). Each program's block spans the whole cache
of its (batch, kv head) and the kernel loops over it: on GPU that is only a pointer, on TPU the
whole slice is staged in VMEM (keys and values, double-buffered: 4 x cached x head_dim x
itemsize bytes), which bounds the cache length there by the scoped VMEM size; a TPU-specific
version would move the loop to a grid axis with scratch accumulators. Matmuls run at the
backend's default precision (float32 dots may run as TF32 on GPU).

Size: over 400 lines because the Pallas kernel, its jnp reference (the definition it is tested
against) and the dispatch between them are one thing to read and change together.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from neuronjax.kernels import choice

from neuronjax.errors import InputError
from neuronjax.kernels import one_token

F32 = jnp.float32
MAX_BLOCK_K = 128  # cached positions per inner step
MAX_BLOCK_ROWS = 128  # query rows (variants x group heads) per program


def reference(q, k, v, past_k, past_v, bias, scale: float, softcap: Optional[float]) -> jax.Array:
    """Pure-jnp version, the math of ``attend``'s ``past`` branch.

    q [..., batch, seq, heads, head_dim]; k, v [..., batch, seq, kv_heads, head_dim];
    past_k, past_v [batch, cached, kv_heads, head_dim]; bias [batch, 1, 1, seq, cached + seq].
    Returns q's shape in v's dtype.
    """
    *lead, s, h, d = q.shape
    kv = k.shape[-2]
    qg = q.reshape(*lead, s, kv, h // kv, d)
    new = jnp.einsum("...skgd,...tkd->...kgst", qg, k, preferred_element_type=F32)
    cached = jnp.einsum("...bskgd,btkd->...bkgst", qg, past_k, preferred_element_type=F32)
    scores = jnp.concatenate([cached, new], axis=-1) * scale
    if softcap is not None:
        scores = softcap * jnp.tanh(scores / softcap)
    probs = jax.nn.softmax(scores + bias, axis=-1).astype(v.dtype)
    t = past_v.shape[-3]
    out = jnp.einsum("...bkgst,btkd->...bskgd", probs[..., :t], past_v.astype(v.dtype))
    out = out + jnp.einsum("...kgst,...tkd->...skgd", probs[..., t:], v)
    return out.reshape(*lead, s, h, d)


def shared_prefix_attention(
    q, k, v, past_k, past_v, bias, scale: float, softcap: Optional[float], *,
    impl: str = "auto", block_k: Optional[int] = None, mesh=None, rules=None,
) -> jax.Array:  # fmt: skip
    """What ``attend(q, k, v, bias, scale, softcap, past=(past_k, past_v))`` computes (shapes in
    ``reference``), by the implementation ``impl`` picks (module docstring). block_k: cached
    positions per kernel step (a power of two >= 16; default min(128, next power of two of
    cached)); ignored by the reference. mesh, rules: where the arrays live (a jax Mesh and
    `neuronjax.sharding.ShardingRules`); on a mesh of several devices the kernel runs per shard
    (`on_mesh`)."""
    seq, cached = q.shape[-3], past_k.shape[-3]
    devices = 1 if mesh is None else mesh.size
    name = choice.choose(impl, devices=1 if mesh is not None else None)
    if name == "pallas" and impl == "auto" and not choice.forced() and seq > 1:
        name = "reference"
    if name == "reference" or cached == 0:
        if (impl == "auto" and not choice.forced() and devices == 1 and choice.backend_or_current() == "cpu"
                and one_token.applies(q, k, v, bias)):  # fmt: skip
            return one_token.attention(q, k, v, past_k, past_v, bias, scale, softcap)
        return reference(q, k, v, past_k, past_v, bias, scale, softcap)
    kernel = functools.partial(pallas_attention, scale=scale, softcap=softcap, interpret=name == "interpret",
                               block_k=block_k)  # fmt: skip
    if devices > 1:
        return on_mesh(kernel, mesh, rules, q, k, v, past_k, past_v, bias)
    return kernel(q, k, v, past_k, past_v, bias)


def on_mesh(kernel, mesh, rules, q, k, v, past_k, past_v, bias) -> jax.Array:
    """Run `kernel(q, k, v, past_k, past_v, bias)` once per shard with `jax.shard_map`: prompts
    split like the batch, query and key/value heads split together over the heads' mesh axis
    (when that axis divides both, so every shard keeps whole groups), the rest replicated. A
    Pallas call is opaque to XLA's sharding propagation; without the map it would be replicated,
    every device gathering the whole batch."""
    from jax.sharding import PartitionSpec as P

    lead = q.ndim - 4
    b, h, kv = q.shape[-4], q.shape[-2], k.shape[-2]
    batch = rules.spec(("batch",), (b,), mesh)[0]
    heads = rules.spec(("heads",), (h,), mesh)[0]
    if heads is not None and rules.spec(("kv_heads",), (kv,), mesh)[0] != heads:
        heads = None  # kv heads not split alike: keep the heads whole
    q_spec = P(*([None] * lead), batch, None, heads, None)
    cache_spec = P(batch, None, heads, None)
    return jax.shard_map(kernel, mesh=mesh, in_specs=(q_spec, q_spec, q_spec, cache_spec, cache_spec,
                                                     P(batch, None, None, None, None)),
                         out_specs=q_spec, check_vma=False)(q, k, v, past_k, past_v, bias)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The Pallas path.


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything the kernels are specialised on (hashable: one compiled op per value)."""

    scale: float
    softcap: Optional[float]
    cached: int  # true number of cached positions (the cache may be padded past it)
    block_k: int
    layout: str  # "tkd": cache [batch, cached, kv, dim]; "ktd": [batch, kv, cached, dim]
    interpret: bool
    backend: str


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _dot(a, b, contract):
    """2-D matmul with float32 accumulation; contract = (a's dim, b's dim)."""
    return lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((), ())), preferred_element_type=F32)


def _block_scores(q, kb, bias_row, cfg: _Static, start):
    """Scores [rows, block_k] of one cache block (float32), scaled, soft-capped, biased, with
    positions at or past ``cfg.cached`` (padding) set to -inf; also tanh(scaled / softcap) (for
    the backward pass) or None."""
    raw = _dot(q, kb, (1, 1)) * cfg.scale
    th = None
    if cfg.softcap is not None:
        th = jnp.tanh(raw / cfg.softcap)
        raw = cfg.softcap * th
    s = raw + bias_row.astype(F32)
    col = start + lax.broadcasted_iota(jnp.int32, (1, cfg.block_k), 1)
    return jnp.where(col < cfg.cached, s, -jnp.inf), col < cfg.cached, th


def _fwd_kernel(q_ref, k_ref, v_ref, b_ref, o_ref, m_ref, den_ref, *, cfg: _Static):
    q = q_ref[...]
    rows, dim = q.shape
    n_blocks = k_ref.shape[0] // cfg.block_k

    def step(j, carry):
        acc, m, den = carry
        start = pl.multiple_of(j * cfg.block_k, cfg.block_k)
        kb = k_ref[pl.ds(start, cfg.block_k), :]
        vb = v_ref[pl.ds(start, cfg.block_k), :]
        s, _, _ = _block_scores(q, kb, b_ref[:, pl.ds(start, cfg.block_k)], cfg, start)
        m_new = jnp.maximum(m, s.max(axis=1, keepdims=True))
        p = jnp.exp(s - m_new)
        fade = jnp.exp(m - m_new)
        den = fade * den + p.sum(axis=1, keepdims=True)
        acc = fade * acc + _dot(p.astype(vb.dtype), vb, (1, 0))
        return acc, m_new, den

    init = (
        jnp.zeros((rows, dim), F32),
        jnp.full((rows, 1), np.finfo(np.float32).min, F32),
        jnp.zeros((rows, 1), F32),
    )
    acc, m, den = lax.fori_loop(0, n_blocks, step, init)
    o_ref[...] = acc / den
    m_ref[...] = m
    den_ref[...] = den


def _bwd_kernel(q_ref, k_ref, v_ref, b_ref, m_ref, den_ref, do_ref, delta_ref,
                dq_ref, dk_ref, dv_ref, db_ref, *, cfg: _Static):  # fmt: skip
    q = q_ref[...]
    q32 = q.astype(F32)
    do = do_ref[...]
    m, den, delta = m_ref[...], den_ref[...], delta_ref[...]
    n_blocks = k_ref.shape[0] // cfg.block_k

    def step(j, dq):
        start = pl.multiple_of(j * cfg.block_k, cfg.block_k)
        sl = pl.ds(start, cfg.block_k)
        kb = k_ref[sl, :]
        vb = v_ref[sl, :].astype(F32)
        s, valid, th = _block_scores(q, kb, b_ref[:, sl], cfg, start)
        p = jnp.where(valid, jnp.exp(s - m) / den, 0.0)  # this block's share of each row's softmax
        ds = p * (_dot(do, vb, (1, 1)) - delta)  # d(loss)/d(biased score)
        db_ref[:, sl] = ds.sum(axis=0, keepdims=True)
        dv_ref[sl, :] = _dot(p, do, (0, 0))
        if th is not None:
            ds = ds * (1.0 - th * th)
        ds = ds * cfg.scale  # d(loss)/d(q . k)
        dk_ref[sl, :] = _dot(ds, q32, (0, 0))
        return dq + _dot(ds, kb.astype(F32), (1, 0))

    dq = lax.fori_loop(0, n_blocks, step, jnp.zeros(q.shape, F32))
    dq_ref[...] = dq


def _compiler_params(cfg: _Static, grid_rank: int):
    if cfg.interpret:
        return None
    if cfg.backend == "tpu":
        from jax.experimental.pallas import tpu as pltpu

        return pltpu.CompilerParams(dimension_semantics=("parallel",) * grid_rank)
    from jax.experimental.pallas import triton as plgpu

    return plgpu.CompilerParams(num_warps=4, num_stages=2)


def _row_blocking(rows: int) -> tuple[int, int]:
    """(rows per program, padded row count) for ``rows`` query rows."""
    block = min(MAX_BLOCK_ROWS, _next_pow2(max(rows, 16)))
    return block, -(-rows // block) * block


def _pad_rows(x, padded: int, value=0.0):
    extra = padded - x.shape[3]
    if extra == 0:
        return x
    return jnp.pad(x, [(0, 0)] * 3 + [(0, extra), (0, 0)], constant_values=value)


def _cache_spec(cfg: _Static, tp: int, dim: int):
    if cfg.layout == "ktd":
        return pl.BlockSpec((None, None, tp, dim), lambda b, h, *_: (b, h, 0, 0))
    return pl.BlockSpec((None, tp, None, dim), lambda b, h, *_: (b, 0, h, 0))


def _forward(qr, kc, vc, bc, *, cfg: _Static):
    """(out, row max, row sum) of the cached part. qr [batch, kv, seq, rows, dim] (query rows of
    each kv head); kc, vc: the padded cache in cfg.layout; bc [batch, seq, 1, padded cached].
    out [batch, kv, seq, rows, dim] float32 (normalised by the row sum); max, sum [..., rows, 1]."""
    b, kv, s, rows, dim = qr.shape
    tp = bc.shape[-1]
    block_r, padded = _row_blocking(rows)
    qp = _pad_rows(qr, padded)
    grid = (b, kv, s, padded // block_r)
    row_spec = pl.BlockSpec((None, None, None, block_r, dim), lambda b, h, i, r: (b, h, i, r, 0))
    vec_spec = pl.BlockSpec((None, None, None, block_r, 1), lambda b, h, i, r: (b, h, i, r, 0))
    o, m, den = pl.pallas_call(
        functools.partial(_fwd_kernel, cfg=cfg),
        grid=grid,
        in_specs=[
            row_spec,
            _cache_spec(cfg, tp, dim),
            _cache_spec(cfg, tp, dim),
            pl.BlockSpec((None, None, 1, tp), lambda b, h, i, r: (b, i, 0, 0)),
        ],
        out_specs=[row_spec, vec_spec, vec_spec],
        out_shape=[
            jax.ShapeDtypeStruct((b, kv, s, padded, dim), F32),
            jax.ShapeDtypeStruct((b, kv, s, padded, 1), F32),
            jax.ShapeDtypeStruct((b, kv, s, padded, 1), F32),
        ],
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg, 4),
        name="shared_prefix_attention_fwd",
    )(qp, kc, vc, bc)
    return o[..., :rows, :], m[..., :rows, :], den[..., :rows, :]


def _backward(qr, kc, vc, bc, m, den, do, delta, *, cfg: _Static):
    """Cotangents (dq, dk, dv, dbias) of the cached part, shaped like qr, kc, vc, bc (float32)."""
    b, kv, s, rows, dim = qr.shape
    tp = bc.shape[-1]
    block_r, padded = _row_blocking(rows)
    nr = padded // block_r
    qp, dop, deltap = _pad_rows(qr, padded), _pad_rows(do, padded), _pad_rows(delta, padded)
    mp, denp = _pad_rows(m, padded), _pad_rows(den, padded, 1.0)
    grid = (b, kv, s, nr)
    row_spec = pl.BlockSpec((None, None, None, block_r, dim), lambda b, h, i, r: (b, h, i, r, 0))
    vec_spec = pl.BlockSpec((None, None, None, block_r, 1), lambda b, h, i, r: (b, h, i, r, 0))
    part_spec = pl.BlockSpec((None, None, None, None, tp, dim), lambda b, h, i, r: (b, h, i, r, 0, 0))
    cache = _cache_spec(cfg, tp, dim)
    dq, dk, dv, db = pl.pallas_call(
        functools.partial(_bwd_kernel, cfg=cfg),
        grid=grid,
        in_specs=[
            row_spec,  # q
            cache,  # keys
            cache,  # values
            pl.BlockSpec((None, None, 1, tp), lambda b, h, i, r: (b, i, 0, 0)),  # bias
            vec_spec,  # row max
            vec_spec,  # row sum
            row_spec,  # d out
            vec_spec,  # delta
        ],
        out_specs=[
            row_spec,  # dq
            part_spec,  # dk
            part_spec,  # dv
            pl.BlockSpec((None, None, None, None, 1, tp), lambda b, h, i, r: (b, h, i, r, 0, 0)),  # dbias
        ],
        out_shape=[
            jax.ShapeDtypeStruct((b, kv, s, padded, dim), F32),
            jax.ShapeDtypeStruct((b, kv, s, nr, tp, dim), F32),
            jax.ShapeDtypeStruct((b, kv, s, nr, tp, dim), F32),
            jax.ShapeDtypeStruct((b, kv, s, nr, 1, tp), F32),
        ],
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg, 4),
        name="shared_prefix_attention_bwd",
    )(qp, kc, vc, bc, mp, denp, dop, deltap)
    dk, dv = dk.sum(axis=(2, 3)), dv.sum(axis=(2, 3))  # [batch, kv, cached, dim]
    if cfg.layout == "tkd":
        dk, dv = dk.transpose(0, 2, 1, 3), dv.transpose(0, 2, 1, 3)
    db = db.sum(axis=(1, 3))  # [batch, seq, 1, cached]
    return dq[..., :rows, :].astype(qr.dtype), dk.astype(kc.dtype), dv.astype(vc.dtype), db.astype(bc.dtype)


@functools.cache
def _cached_part(cfg: _Static):
    """The differentiable, vmap-aware op (qr, kc, vc, bc) -> (out, row max, row sum) for cfg.

    The row max is a stabilising shift, not a result: its derivative is defined as zero (the
    caller only uses the output through sum * exp(max - shift) with a constant shift)."""
    forward = functools.partial(_forward, cfg=cfg)

    @jax.custom_batching.custom_vmap
    def op(qr, kc, vc, bc):
        return forward(qr, kc, vc, bc)

    @op.def_vmap
    def _fold(axis_size, in_batched, qr, kc, vc, bc):
        q_b, k_b, v_b, b_b = in_batched
        if q_b and not (k_b or v_b or b_b):
            # Mapped variants become extra query rows: one read of the cache for all of them.
            n, b, kv, s, rows, dim = qr.shape
            flat = jnp.moveaxis(qr, 0, 3).reshape(b, kv, s, n * rows, dim)
            outs = forward(flat, kc, vc, bc)
            outs = tuple(jnp.moveaxis(x.reshape(b, kv, s, n, rows, x.shape[-1]), 3, 0) for x in outs)
        else:
            axes = tuple(0 if flag else None for flag in in_batched)
            outs = jax.vmap(forward, in_axes=axes)(qr, kc, vc, bc)
        return outs, (True, True, True)

    diff = jax.custom_vjp(op)

    def fwd(qr, kc, vc, bc):
        o, m, den = op(qr, kc, vc, bc)
        return (o, m, den), (qr, kc, vc, bc, o, m, den)

    def bwd(res, cts):
        qr, kc, vc, bc, o, m, den = res
        do, _, dl = cts  # the row max has no derivative (see above)
        do = do.astype(F32)
        delta = (do * o).sum(axis=-1, keepdims=True) - dl.astype(F32) * den
        return _backward(qr, kc, vc, bc, m, den, do, delta, cfg=cfg)

    diff.defvjp(fwd, bwd)
    return diff


def pallas_attention(
    q, k, v, past_k, past_v, bias, scale: float, softcap: Optional[float], *,
    interpret: bool = False, block_k: Optional[int] = None, layout: Optional[str] = None,
) -> jax.Array:  # fmt: skip
    """The Pallas path of ``shared_prefix_attention`` (shapes as in ``reference``). layout: cache
    layout inside the kernel, "ktd" (TPU's) or "tkd" (read in place; GPU's and the interpreter's);
    default by backend."""
    *lead, b, s, h, d = q.shape
    kv = k.shape[-2]
    g = h // kv
    t = past_k.shape[-3]
    n = math.prod(lead)
    backend = jax.default_backend().lower()
    block_k = block_k or min(MAX_BLOCK_K, max(16, _next_pow2(t)))
    if block_k < 16 or block_k & (block_k - 1):
        raise InputError(f"block_k must be a power of two >= 16, got {block_k}")
    layout = layout or ("ktd" if backend == "tpu" and not interpret else "tkd")
    if layout not in ("ktd", "tkd"):
        raise InputError(f"layout must be 'ktd' or 'tkd', got {layout!r}")
    cfg = _Static(
        scale=float(scale), softcap=None if softcap is None else float(softcap), cached=t,
        block_k=block_k, layout=layout, interpret=bool(interpret), backend=backend,
    )  # fmt: skip
    tp = -(-t // block_k) * block_k
    dp = _next_pow2(d)
    bias = jnp.broadcast_to(bias, (b, 1, 1, s, t + s))

    qf = q.reshape(n, b, s, kv, g, d)
    kf, vf = k.reshape(n, b, s, kv, d), v.reshape(n, b, s, kv, d)

    # The cached part, in the kernel: rows = (variant, group head) of each (batch, kv, position).
    qr = qf.transpose(1, 3, 2, 0, 4, 5).reshape(b, kv, s, n * g, d)
    kc, vc = past_k.astype(q.dtype), past_v.astype(v.dtype)
    if (tp, dp) != (t, d):
        qr = jnp.pad(qr, [(0, 0)] * 4 + [(0, dp - d)])
        kc = jnp.pad(kc, [(0, 0), (0, tp - t), (0, 0), (0, dp - d)])
        vc = jnp.pad(vc, [(0, 0), (0, tp - t), (0, 0), (0, dp - d)])
    if layout == "ktd":
        kc, vc = kc.transpose(0, 2, 1, 3), vc.transpose(0, 2, 1, 3)
    bc = jnp.pad(bias[:, 0, 0, :, :t].astype(F32), [(0, 0), (0, 0), (0, tp - t)])[:, :, None, :]
    o_c, m_c, l_c = _cached_part(cfg)(qr, kc, vc, bc)

    def per_variant(x):  # [b, kv, s, n * g, last] -> [n, b, kv, g, s, last]
        return x.reshape(b, kv, s, n, g, x.shape[-1]).transpose(3, 0, 1, 4, 2, 5)

    o_c = per_variant(o_c)[..., :d]
    m_c, l_c = per_variant(m_c)[..., 0], per_variant(l_c)[..., 0]

    # Each variant's own new keys/values (small; jnp), merged into the same softmax.
    sn = jnp.einsum("nbskgd,nbtkd->nbkgst", qf, kf, preferred_element_type=F32) * cfg.scale
    if cfg.softcap is not None:
        sn = cfg.softcap * jnp.tanh(sn / cfg.softcap)
    sn = sn + bias[..., t:].astype(F32)
    m_n = lax.stop_gradient(sn.max(axis=-1))
    e_n = jnp.exp(sn - m_n[..., None])
    acc_n = jnp.einsum("nbkgst,nbtkd->nbkgsd", e_n, vf.astype(F32))
    m = lax.stop_gradient(jnp.maximum(m_c, m_n))
    w_c = l_c * jnp.exp(m_c - m)
    w_n = jnp.exp(m_n - m)
    total = w_c + e_n.sum(axis=-1) * w_n
    out = (o_c * w_c[..., None] + acc_n * w_n[..., None]) / total[..., None]
    out = out.transpose(0, 1, 4, 2, 3, 5).reshape(*lead, b, s, h, d)
    return out.astype(v.dtype)
