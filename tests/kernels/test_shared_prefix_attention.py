"""kernels.shared_prefix_attention: the Pallas kernel against the jnp reference, the reference
against a naive numpy loop, gradients, vmap, and the choice of implementation.

On CPU the kernel runs under the Pallas interpreter; on a GPU or TPU the same tests compile and
run the kernel itself (``KERNEL``). The suite's float32 matmul precision is "highest"
(tests/conftest.py), so on a GPU the float32 cases compare float32 arithmetic on both sides, not
the TF32 the backend's default would allow."""

import functools
import importlib

import jax
import jax.export
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from neuronjax.kernels import choice

from neuronjax import kernels
from neuronjax.models.layers import NEG_INF, attend

# The module (the package's attribute of that name is the function).
spa = importlib.import_module("neuronjax.kernels.shared_prefix_attention")
one_token = importlib.import_module("neuronjax.kernels.one_token")

NEG = NEG_INF  # the model's mask value: the most negative float32, not -inf

# The kernel as it runs on this backend: interpreted on CPU, compiled on a GPU or TPU.
ON_ACCELERATOR = jax.default_backend() in choice.ACCELERATORS
KERNEL = "pallas" if ON_ACCELERATOR else "interpret"


def make_inputs(seed, lead, batch, seq, heads, kv_heads, dim, cached, dtype=jnp.float32):
    """Random q/k/v and cache; the bias of a left-padded batch (causal among the new tokens):
    row 0 sees everything, row 1 has its first 3 cached keys masked, row 2 has every cached key
    masked (only its own new keys are visible)."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape, np.float32)).astype(dtype)

    q = normal(*lead, batch, seq, heads, dim)
    k, v = normal(*lead, batch, seq, kv_heads, dim), normal(*lead, batch, seq, kv_heads, dim)
    pk, pv = normal(batch, cached, kv_heads, dim), normal(batch, cached, kv_heads, dim)
    visible = np.tril(np.ones((seq, cached + seq), bool), k=cached)[None].repeat(batch, 0)
    if batch > 1:
        visible[1, :, : min(3, cached)] = False
    if batch > 2:
        visible[2, :, :cached] = False
    bias = jnp.asarray(np.where(visible, 0.0, NEG).astype(np.float32)[:, None, None])
    return q, k, v, pk, pv, bias


@functools.cache
def jitted(impl, scale, softcap, block_k=None, layout=None):
    if impl == "reference":
        return jax.jit(functools.partial(spa.reference, scale=scale, softcap=softcap))
    return jax.jit(
        functools.partial(
            spa.pallas_attention, scale=scale, softcap=softcap, interpret=impl == "interpret", block_k=block_k,
            layout=layout,
        )
    )


def assert_close(got, want, dtype):
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), atol=tol, rtol=tol)


# (lead, heads, kv_heads, dim, cached, block_k, softcap, dtype)
CASES = [
    ((1,), 6, 3, 32, 32, 16, None, jnp.float32),  # one variant; cached a block multiple
    ((3,), 6, 3, 32, 37, 16, None, jnp.float32),  # cached not a multiple: padded, masked block
    ((32,), 4, 4, 16, 37, 16, 30.0, jnp.float32),  # heads = kv_heads, softcap, 32 variants
    ((2, 3), 9, 3, 24, 20, 16, 20.0, jnp.float32),  # two leading axes; head_dim padded to 32
    ((3,), 6, 3, 32, 37, 16, None, jnp.bfloat16),
    ((32,), 4, 2, 64, 96, None, 30.0, jnp.bfloat16),  # default block (128 > cached)
]


@pytest.mark.parametrize("lead,heads,kv_heads,dim,cached,block_k,softcap,dtype", CASES)
def test_kernel_matches_reference(lead, heads, kv_heads, dim, cached, block_k, softcap, dtype):
    args = make_inputs(0, lead, 3, 1, heads, kv_heads, dim, cached, dtype)
    scale = dim**-0.5
    want = jitted("reference", scale, softcap)(*args)
    got = jitted(KERNEL, scale, softcap, block_k)(*args)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.isfinite(np.asarray(got, np.float32)).all()
    assert_close(got, want, dtype)


def test_tpu_cache_layout():
    """The cache transposed to [batch, kv_heads, cached, head_dim], as the kernel reads it on
    TPU, with several query positions."""
    args = make_inputs(1, (3,), 3, 3, 4, 2, 16, 21, jnp.float32)
    want = jitted("reference", 0.25, None)(*args)
    assert_close(jitted("interpret", 0.25, None, 16, "ktd")(*args), want, jnp.float32)


def test_row_with_nothing_visible_averages_like_reference():
    """A query that sees no key at all (every bias entry masked) gets the uniform average in the
    reference; the kernel agrees (padding positions still excluded)."""
    q, k, v, pk, pv, _ = make_inputs(2, (3,), 2, 1, 4, 2, 16, 19, jnp.float32)
    bias = jnp.zeros((2, 1, 1, 1, 20)).at[1].set(NEG)
    want = jitted("reference", 0.25, None)(q, k, v, pk, pv, bias)
    assert_close(jitted(KERNEL, 0.25, None, 16)(q, k, v, pk, pv, bias), want, jnp.float32)


@pytest.mark.parametrize("variants,kv_heads,softcap,seq", [(5, 3, None, 1), (45, 2, 25.0, 2)])
def test_values_and_gradients_match_reference(variants, kv_heads, softcap, seq):
    """Forward values and the gradients with respect to every input (through the backward
    kernel), for one and for several query positions; 45 variants x 3 heads per group are 135
    query rows, two row blocks of one kv head."""
    args = make_inputs(3, (variants,), 3, seq, 6, kv_heads, 16, 37, jnp.float32)
    w = jnp.asarray(np.random.default_rng(9).standard_normal(args[0].shape, np.float32))

    def loss(fn, *a):
        return (fn(*a) * w).sum()

    grad = functools.partial(jax.value_and_grad, argnums=tuple(range(6)))
    ref, ref_g = jax.jit(grad(functools.partial(loss, jitted("reference", 0.25, softcap))))(*args)
    got, got_g = jax.jit(grad(functools.partial(loss, jitted(KERNEL, 0.25, softcap, 16))))(*args)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    for name, g, r in zip(("q", "k", "v", "past_k", "past_v", "bias"), got_g, ref_g):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=2e-5, rtol=2e-5, err_msg=name)


@pytest.mark.parametrize("variants,kv_heads,softcap,seq", [(5, 3, None, 1), (45, 2, 25.0, 2)])
def test_bfloat16_gradients_match_the_float32_reference(variants, kv_heads, softcap, seq):
    """bfloat16 inputs: the kernel's gradients come back in bfloat16 and lie within 8e-3 of the
    largest gradient of the float32 reference on the same (bf16-rounded) inputs; measured 2.7e-3
    to 5.1e-3, where the jnp reference itself run in bfloat16 is off by 2.7e-3 to 7.4e-3."""
    args = make_inputs(3, (variants,), 3, seq, 6, kv_heads, 16, 37, jnp.bfloat16)
    w = jnp.asarray(np.random.default_rng(9).standard_normal(args[0].shape, np.float32))

    def loss(fn, *a):
        return (fn(*a).astype(jnp.float32) * w).sum()

    grad = functools.partial(jax.grad, argnums=tuple(range(5)))
    as_f32 = [a.astype(jnp.float32) for a in args[:5]] + [args[5]]
    ref_g = jax.jit(grad(functools.partial(loss, jitted("reference", 0.25, softcap))))(*as_f32)
    got_g = jax.jit(grad(functools.partial(loss, jitted(KERNEL, 0.25, softcap, 16))))(*args)
    for name, g, r in zip(("q", "k", "v", "past_k", "past_v"), got_g, ref_g):
        assert g.dtype == jnp.bfloat16, name
        r = np.asarray(r, np.float32)
        err = np.abs(np.asarray(g, np.float32) - r).max() / np.abs(r).max()
        assert err <= 8e-3, (name, err)


def pallas_grids(fn, *args):
    """The grid of every pallas_call in fn's jaxpr, nested jaxprs included."""

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "pallas_call":
                yield eqn.params["grid_mapping"].grid
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else [param]:
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        yield from walk(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        yield from walk(sub)

    return list(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def test_vmap_over_variants_folds_into_rows():
    """vmap over the variants (how evaluate stacks interventions) equals explicit leading axes,
    and the mapped axis becomes query rows of the same grid instead of an extra grid axis."""
    q, k, v, pk, pv, bias = make_inputs(4, (6,), 3, 1, 4, 2, 16, 37, jnp.float32)
    fn = functools.partial(spa.pallas_attention, scale=0.25, softcap=None, interpret=not ON_ACCELERATOR, block_k=16)
    mapped = jax.vmap(lambda q1, k1, v1: fn(q1, k1, v1, pk, pv, bias))
    want = jitted("reference", 0.25, None)(q, k, v, pk, pv, bias)
    assert_close(jax.jit(mapped)(q, k, v), want, jnp.float32)
    assert pallas_grids(mapped, q, k, v) == pallas_grids(fn, q, k, v, pk, pv, bias) == [(3, 2, 1, 1)]

    def total(attn, q, pk):  # gradient through the mapped call, into the shared cache too
        return jax.vmap(lambda q1, k1, v1: attn(q1, k1, v1, pk, pv, bias).sum())(q, k, v).sum()

    ref = functools.partial(spa.reference, scale=0.25, softcap=None)
    want_g = jax.jit(jax.grad(functools.partial(total, ref), argnums=(0, 1)))(q, pk)
    got_g = jax.jit(jax.grad(functools.partial(total, fn), argnums=(0, 1)))(q, pk)
    for g, r in zip(got_g, want_g):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=2e-5, rtol=2e-5)


def test_reference_matches_naive_loop():
    """The reference (the math attend always used) against an independent loop in numpy."""
    lead, b, s, h, kv, d, t, cap, scale = (2,), 3, 2, 4, 2, 8, 5, 7.0, 0.3
    q, k, v, pk, pv, bias = (np.asarray(x, np.float64) for x in make_inputs(5, lead, b, s, h, kv, d, t))
    want = np.zeros(q.shape)
    for n in range(lead[0]):
        for bi in range(b):
            keys = np.concatenate([pk[bi], k[n, bi]], axis=0)  # [t + s, kv, d]
            vals = np.concatenate([pv[bi], v[n, bi]], axis=0)
            for i in range(s):
                for head in range(h):
                    grp = head // (h // kv)
                    sc = keys[:, grp, :] @ q[n, bi, i, head] * scale
                    sc = cap * np.tanh(sc / cap) + bias[bi, 0, 0, i]
                    p = np.exp(sc - sc.max())
                    want[n, bi, i, head] = (p / p.sum()) @ vals[:, grp, :]
    got = spa.reference(*(jnp.asarray(x, jnp.float32) for x in (q, k, v, pk, pv, bias)), scale, cap)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)


def test_choose_and_environment_override(monkeypatch):
    monkeypatch.delenv(choice.ENV_VAR, raising=False)
    assert kernels.choose("auto", backend="cpu") == "reference"
    assert kernels.choose("auto", backend="gpu", devices=1) == "reference"  # slower there (choice.py)
    assert kernels.choose("auto", backend="tpu", devices=1) == "pallas"
    assert kernels.choose("pallas", backend="gpu", devices=1) == "pallas"
    assert kernels.choose("auto", backend="gpu", devices=8) == "reference"  # a mesh: not shard-mapped yet
    assert kernels.choose("interpret", backend="gpu") == "interpret"
    monkeypatch.setenv(choice.ENV_VAR, "interpret")
    assert kernels.choose("auto", backend="gpu") == "interpret"
    assert kernels.choose("reference") == "reference"  # an explicit choice beats the variable
    monkeypatch.setenv(choice.ENV_VAR, "auto")
    assert kernels.choose("auto", backend="cpu") == "reference"
    monkeypatch.setenv(choice.ENV_VAR, "triton")
    with pytest.raises(ValueError, match="NEURONJAX_KERNELS.*auto, reference, pallas, interpret"):
        kernels.choose("auto")
    monkeypatch.delenv(choice.ENV_VAR)
    with pytest.raises(ValueError, match="impl="):
        kernels.choose("fast")


def test_auto_follows_the_default_device(monkeypatch):
    """On a machine whose default backend is an accelerator, work sent to the CPU with
    ``jax.default_device`` gets the reference (a compiled Pallas kernel cannot run there)."""
    monkeypatch.delenv(choice.ENV_VAR, raising=False)
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert kernels.choose("auto", devices=1) == "pallas"
    with jax.default_device(jax.devices("cpu")[0]):
        assert choice.current_backend() == "cpu"
        assert kernels.choose("auto", devices=1) == "reference"
    with jax.default_device("cpu"):
        assert kernels.choose("auto", devices=1) == "reference"


def test_attend_with_past_uses_one_token_layout_on_cpu_and_obeys_override(monkeypatch):
    """On CPU a one-token step runs `one_token.attention` (the reference's math in the replay's
    layout); NEURONJAX_KERNELS=reference forces the einsum reference, =interpret the kernel."""
    monkeypatch.delenv(choice.ENV_VAR, raising=False)
    on_cpu = jax.default_backend() == "cpu"
    if not on_cpu:
        monkeypatch.setenv(choice.ENV_VAR, "reference")  # the same check of the override on an accelerator
    q, k, v, pk, pv, bias = make_inputs(6, (3,), 3, 1, 6, 3, 16, 37, jnp.float32)
    calls = []

    def spy(module, name, fn):
        def wrapped(*a, **kw):
            calls.append(name)
            return fn(*a, **kw)

        monkeypatch.setattr(module, name, wrapped)

    spy(spa, "reference", spa.reference)
    spy(spa, "pallas_attention", spa.pallas_attention)
    spy(one_token, "attention", one_token.attention)

    def run():  # a fresh function each time, so the choice is traced again
        return jax.jit(lambda *a: attend(*a[:4], 0.25, None, past=a[4:]))(q, k, v, bias, pk, pv)

    want = jitted("reference", 0.25, None)(q, k, v, pk, pv, bias)
    out = run()
    assert calls == (["attention"] if on_cpu else ["reference"])
    assert_close(out, want, jnp.float32)
    calls.clear()
    monkeypatch.setenv(choice.ENV_VAR, "reference")
    np.testing.assert_array_equal(np.asarray(run()), np.asarray(want))
    assert calls == ["reference"]
    calls.clear()
    monkeypatch.setenv(choice.ENV_VAR, "interpret")
    forced = run()
    assert calls == ["pallas_attention"]
    assert_close(forced, out, jnp.float32)


@pytest.mark.parametrize("platform,backend", [("cuda", "gpu"), ("tpu", "tpu")])
def test_kernels_lower_for_gpu_and_tpu(monkeypatch, platform, backend):
    """Forward and backward kernels lower to Triton (GPU) and Mosaic (TPU) from this CPU host
    (block shapes, dtypes and ops accepted; compiling the lowered kernels needs the device)."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    f = functools.partial(spa.pallas_attention, scale=0.125, softcap=30.0)
    # SmolLM2-135M's attention (9 heads, 3 kv heads, head_dim 64), 16 variants, cached 150.
    shapes = [(16, 2, 1, 9, 64), (16, 2, 1, 3, 64), (16, 2, 1, 3, 64), (2, 150, 3, 64), (2, 150, 3, 64)]
    args = [jax.ShapeDtypeStruct(s, jnp.bfloat16) for s in shapes]
    args.append(jax.ShapeDtypeStruct((2, 1, 1, 1, 151), jnp.float32))
    grad = jax.grad(lambda *a: f(*a).astype(jnp.float32).sum(), argnums=tuple(range(6)))
    checks = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
    for fn in (f, grad):
        exported = jax.export.export(jax.jit(fn), platforms=[platform], disabled_checks=checks)(*args)
        assert ("xla.gpu.triton" if platform == "cuda" else "tpu_custom_call") in exported.mlir_module()


@pytest.mark.multidevice
@pytest.mark.parametrize("mesh_shape,heads,kv_heads", [({"data": 2, "tensor": 4}, 8, 4), ({"data": 4, "tensor": 2}, 6, 3)])
def test_on_a_mesh_the_kernel_runs_per_shard(mesh_shape, heads, kv_heads):
    """Batch over data, heads with their key/value heads over tensor (3 kv heads do not divide a
    tensor axis of 2: heads stay whole); the per-shard kernel (interpreted) equals the reference
    and its result stays sharded like the queries."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from neuronjax.sharding import DEFAULT_RULES, make_mesh

    mesh = make_mesh(mesh_shape)
    q, k, v, pk, pv, bias = make_inputs(7, (3,), 4, 1, heads, kv_heads, 16, 37, jnp.float32)
    want = spa.reference(q, k, v, pk, pv, bias, 0.25, None)
    split = "tensor" if kv_heads % mesh_shape["tensor"] == 0 else None
    put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))  # noqa: E731
    q, k, v = (put(x, P(None, "data", None, split, None)) for x in (q, k, v))
    pk, pv = (put(x, P("data", None, split, None)) for x in (pk, pv))
    fn = jax.jit(functools.partial(spa.shared_prefix_attention, scale=0.25, softcap=None, impl="interpret", mesh=mesh,
                                   rules=DEFAULT_RULES))  # fmt: skip
    got = fn(q, k, v, pk, pv, put(bias, P("data")))
    assert_close(got, want, jnp.float32)
    assert got.sharding.spec[1] == "data" and (got.sharding.spec[3] == split)
