"""kernels.one_token: the one-token shared-prefix attention in the replay's layout, against the
einsum reference (values and the gradient of every input, through its written backward pass)
and against a float64 loop in numpy; when it applies."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.kernels.test_shared_prefix_attention import NEG, make_inputs

spa = importlib.import_module("neuronjax.kernels.shared_prefix_attention")
one_token = importlib.import_module("neuronjax.kernels.one_token")

NAMES = ("q", "k", "v", "past_k", "past_v", "bias")


def value_and_grads(fn, args, scale, softcap, seed=9):
    """fn's output and the gradients of a random read-out of it with respect to all six inputs."""
    w = jnp.asarray(np.random.default_rng(seed).standard_normal(args[0].shape, np.float32))

    def loss(*a):
        out = fn(*a, scale, softcap)
        return (out.astype(jnp.float32) * w).sum(), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(6)), has_aux=True))(*args)
    return out, grads


def assert_near(got, want, rtol, name=""):
    """Elementwise within rtol of the largest magnitude of `want` (gradients of masked keys are 0)."""
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    scale = max(float(np.abs(want).max()), 1e-30)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale, err_msg=name)


# (lead, batch, heads, kv_heads, dim, cached, softcap)
CASES = [
    ((5,), 3, 6, 3, 16, 37, None),  # the replay's form: one variant axis
    ((2, 3), 3, 9, 3, 24, 20, 20.0),  # two leading axes, softcap
    ((), 2, 4, 4, 16, 11, None),  # no leading axis; heads = kv_heads
    ((45,), 3, 6, 2, 16, 37, 25.0),  # 135 rows per kv head
]


@pytest.mark.parametrize("lead,batch,heads,kv_heads,dim,cached,softcap", CASES)
def test_values_and_gradients_match_the_reference(lead, batch, heads, kv_heads, dim, cached, softcap):
    """Measured agreement in float32 (these cases and the next test's): outputs within 3e-7 and
    gradients within 7e-7 of the largest entry; the bound is 2e-6."""
    args = make_inputs(3, lead, batch, 1, heads, kv_heads, dim, cached)
    assert one_token.applies(args[0], args[1], args[2], args[5])
    want, want_g = value_and_grads(spa.reference, args, 0.25, softcap)
    got, got_g = value_and_grads(one_token.attention, args, 0.25, softcap)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert_near(got, want, 2e-6)
    for name, g, r in zip(NAMES, got_g, want_g):
        assert g.shape == r.shape and g.dtype == r.dtype, name
        assert_near(g, r, 2e-6, name)


def test_bias_shared_by_the_batch_and_a_row_that_sees_nothing():
    """A bias [1, ...] broadcast over the batch (its gradient summed over it), and a bias masking
    every key of one prompt (the reference averages all values then)."""
    q, k, v, pk, pv, _ = make_inputs(2, (3,), 2, 1, 4, 2, 16, 19)
    shared = jnp.zeros((1, 1, 1, 1, 20)).at[..., 3:6].set(NEG)
    blind = jnp.zeros((2, 1, 1, 1, 20)).at[1].set(NEG)
    for bias in (shared, blind):
        args = (q, k, v, pk, pv, bias)
        want, want_g = value_and_grads(spa.reference, args, 0.25, None)
        got, got_g = value_and_grads(one_token.attention, args, 0.25, None)
        assert_near(got, want, 2e-6)
        for name, g, r in zip(NAMES, got_g, want_g):
            assert g.shape == r.shape, name
            assert_near(g, r, 2e-6, name)


def test_bfloat16_against_the_float32_reference():
    """bfloat16 inputs: the output and gradients against the float32 reference of the same
    (rounded) inputs, within bfloat16's resolution (measured: at most 6e-3 of the largest entry)."""
    args = make_inputs(4, (7,), 3, 1, 6, 3, 32, 37, jnp.bfloat16)
    want, want_g = value_and_grads(spa.reference, tuple(a.astype(jnp.float32) for a in args), 0.25, 30.0)
    got, got_g = value_and_grads(one_token.attention, args, 0.25, 30.0)
    assert got.dtype == jnp.bfloat16
    assert_near(got, want, 2e-2)
    for name, g, r, a in zip(NAMES, got_g, want_g, args):
        assert g.dtype == a.dtype, name
        assert_near(g, r, 2e-2, name)


def test_matches_a_float64_loop():
    """Independently of the reference: each head's softmax over its group's cached keys and its
    own new key, in float64."""
    lead, b, h, kv, d, t, cap, scale = (3,), 3, 6, 2, 8, 5, 7.0, 0.3
    q, k, v, pk, pv, bias = (np.asarray(x, np.float64) for x in make_inputs(5, lead, b, 1, h, kv, d, t))
    want = np.zeros(q.shape)
    for n in range(lead[0]):
        for bi in range(b):
            for head in range(h):
                grp = head // (h // kv)
                keys = np.concatenate([pk[bi, :, grp], k[n, bi, :, grp]])  # [t + 1, d]
                vals = np.concatenate([pv[bi, :, grp], v[n, bi, :, grp]])
                sc = keys @ q[n, bi, 0, head] * scale
                sc = cap * np.tanh(sc / cap) + bias[bi, 0, 0, 0]
                p = np.exp(sc - sc.max())
                want[n, bi, 0, head] = (p / p.sum()) @ vals
    got = one_token.attention(*(jnp.asarray(x, jnp.float32) for x in (q, k, v, pk, pv, bias)), scale, cap)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6, rtol=2e-6)


def test_under_vmap_equals_the_leading_axis():
    """Mapped over a variant axis (`jax.vmap`, the written backward pass batched by JAX) it gives
    what the same axis gives as a leading axis, values and query gradients."""
    q, k, v, pk, pv, bias = make_inputs(6, (4,), 2, 1, 6, 3, 16, 13)

    def f(q, k, v):
        return one_token.attention(q, k, v, pk, pv, bias, 0.25, None)

    mapped = jax.vmap(f)(q, k, v)
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(f(q, k, v)), rtol=1e-6, atol=1e-6)
    def loss(fn, *a):
        return (fn(*a) ** 2).sum()

    g_mapped = jax.grad(loss, argnums=1)(jax.vmap(f), q, k, v)
    g_lead = jax.grad(loss, argnums=1)(f, q, k, v)
    np.testing.assert_allclose(np.asarray(g_mapped), np.asarray(g_lead), rtol=1e-5, atol=1e-6)


def test_applies_to_one_token_steps_only():
    q, k, v, _, _, bias = make_inputs(7, (3,), 2, 1, 6, 3, 16, 9)
    assert one_token.applies(q, k, v, bias)
    q2, k2, v2, _, _, bias2 = make_inputs(7, (3,), 2, 2, 6, 3, 16, 9)
    assert not one_token.applies(q2, k2, v2, bias2)  # two query positions
    assert not one_token.applies(q, k[:1], v[:1], bias)  # keys broadcast over the variants
    per_head = jnp.zeros((2, 1, 3, 1, 10))
    assert not one_token.applies(q, k, v, per_head)


def test_backward_computes_only_the_gradients_asked_for():
    """Differentiating the rows' q, k, v (as the replay does) puts no product for the cache's
    gradients in the program; asking for past_k adds one ([batch, kv_heads, cached, head_dim])."""
    q, k, v, pk, pv, bias = make_inputs(8, (3,), 2, 1, 6, 3, 16, 11)
    cache_grad_shape = (2, 3, 11, 16)

    def products(argnums):
        def loss(*a):
            return (one_token.attention(*a, 0.25, None) ** 2).sum()

        jaxpr = jax.make_jaxpr(jax.grad(loss, argnums))(q, k, v, pk, pv, bias).jaxpr
        return [tuple(e.outvars[0].aval.shape) for e in jaxpr.eqns if e.primitive.name == "dot_general"]

    rows_only = products((0, 1, 2))
    assert cache_grad_shape not in rows_only
    with_cache = products((0, 1, 2, 3))
    assert with_cache.count(cache_grad_shape) == 1
    assert len(with_cache) == len(rows_only) + 1
