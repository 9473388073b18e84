"""Time the jnp reference against the Pallas kernel of ``shared_prefix_attention``, side by side
in one process on the current backend: ``python -m neuronjax.kernels.bench [--dtype bfloat16] ...``.

The default shapes are SmolLM2-135M's attention (9 query heads, 3 kv heads, head_dim 64) for one
attribution step: 16 variants of the last token x 8 prompts against a cache of 96 positions.
Three workloads: the forward pass with explicit variant axes (attribution's alpha steps), the
forward pass under ``jax.vmap`` over variants (evaluation's stacked interventions) and forward +
gradient with respect to q, k, v (what integrated gradients differentiates).

On CPU the Pallas side runs in interpret mode: those timings measure the Pallas interpreter, not
the kernel, and say nothing about speed; the ratio that matters is the one printed on a GPU or
TPU.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from neuronjax.kernels import choice
from neuronjax.kernels.shared_prefix_attention import pallas_attention, reference


def _inputs(variants, batch, heads, kv_heads, dim, cached, dtype, seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape, np.float32)).astype(dtype)

    q = normal(variants, batch, 1, heads, dim)
    k, v = normal(variants, batch, 1, kv_heads, dim), normal(variants, batch, 1, kv_heads, dim)
    pk, pv = normal(batch, cached, kv_heads, dim), normal(batch, cached, kv_heads, dim)
    # Left padding: prompt b has b * 3 padded positions (masked by the most negative float).
    visible = np.arange(cached + 1)[None, :] >= (3 * np.arange(batch))[:, None]
    bias = np.where(visible, 0.0, np.finfo(np.float32).min).astype(np.float32)
    return q, k, v, pk, pv, jnp.asarray(bias[:, None, None, None, :])


def _time(fn, args, repeats):
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _workloads(attn, pk, pv, bias):
    def forward(q, k, v):
        return attn(q, k, v, pk, pv, bias)

    def mapped(q, k, v):
        return jax.vmap(lambda q1, k1, v1: attn(q1[None], k1[None], v1[None], pk, pv, bias)[0])(q, k, v)

    def grad(q, k, v):
        return jax.grad(lambda *a: forward(*a).astype(jnp.float32).sum(), argnums=(0, 1, 2))(q, k, v)

    return {"forward": forward, "forward, vmap over variants": mapped, "forward + grad(q, k, v)": grad}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cached", type=int, default=96)
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--kv-heads", type=int, default=3)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--softcap", type=float, default=None)
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on GPU/TPU, float32 on CPU")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per entry (median)")
    args = parser.parse_args(argv)

    backend = jax.default_backend()
    side = "pallas" if backend in choice.ACCELERATORS else "interpret"
    dtype = jnp.dtype(args.dtype or ("bfloat16" if backend in choice.ACCELERATORS else "float32"))
    repeats = args.repeats or (50 if side == "pallas" else 3)
    scale = args.head_dim**-0.5
    q, k, v, pk, pv, bias = _inputs(
        args.variants, args.batch, args.heads, args.kv_heads, args.head_dim, args.cached, dtype
    )
    print(f"backend {backend} ({jax.devices()[0].device_kind}), jax {jax.__version__}")
    print(
        f"shapes: {args.variants} variants x batch {args.batch}, heads {args.heads}, kv heads "
        f"{args.kv_heads}, head_dim {args.head_dim}, cached {args.cached}, seq 1, {dtype.name}, "
        f"softcap {args.softcap}; median of {repeats} calls"
    )
    if side == "interpret":
        print(
            "NOTE: no GPU/TPU here, so the Pallas side runs in INTERPRET mode. Its timings measure "
            "the Pallas interpreter, not the kernel, and are not meaningful; the ratio that matters "
            "is the one on a GPU or TPU."
        )
    print(f"impl='auto' resolves to {choice.choose('auto')!r} here (what attend uses)")
    ref = functools.partial(reference, scale=scale, softcap=args.softcap)
    ker = functools.partial(pallas_attention, scale=scale, softcap=args.softcap, interpret=side == "interpret")
    ref_work, ker_work = _workloads(ref, pk, pv, bias), _workloads(ker, pk, pv, bias)
    print(f"{'workload':<30} {'reference ms':>13} {side + ' ms':>13} {'reference/' + side:>20} {'max |diff|':>11}")
    for name in ref_work:
        f_ref, f_ker = jax.jit(ref_work[name]), jax.jit(ker_work[name])
        t_ref, t_ker = _time(f_ref, (q, k, v), repeats), _time(f_ker, (q, k, v), repeats)
        diff = max(
            float(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)).max())
            for a, b in zip(jax.tree.leaves(f_ref(q, k, v)), jax.tree.leaves(f_ker(q, k, v)))
        )
        print(f"{name:<30} {t_ref * 1e3:>13.3f} {t_ker * 1e3:>13.3f} {t_ref / t_ker:>19.2f}x {diff:>11.2e}")


if __name__ == "__main__":
    main()
