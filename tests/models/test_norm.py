"""`layers.Norm` on rows with size-1 axes (one-token steps [variant, batch, 1, embed]), which it
computes without those axes: values against a float64 numpy reference, gradients against the
plain broadcast formula differentiated by JAX, for every kind of norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from neuronjax.models.layers import Norm

# measured: 1.0e-7 (values) and 5e-8 (gradients) of the largest entry, float32
TOL = 5e-7


def numpy_norm(x, w, b, kind, eps, plus_one, axes):
    x = np.asarray(x, np.float64)
    if kind == "layer":
        c = x - x.mean(axes, keepdims=True)
        return c / np.sqrt(np.square(c).mean(axes, keepdims=True) + eps) * w + b
    return x / np.sqrt(np.square(x).mean(axes, keepdims=True) + eps) * ((1.0 + w) if plus_one else w)


def plain(x, w, b, kind, eps, plus_one, axes):  # the broadcast form, size-1 axes kept
    if kind == "layer":
        c = x - x.mean(axes, keepdims=True)
        return c * jax.lax.rsqrt(jnp.square(c).mean(axes, keepdims=True) + eps) * w + b
    return x * jax.lax.rsqrt(jnp.square(x).mean(axes, keepdims=True) + eps) * ((1.0 + w) if plus_one else w)


@pytest.mark.parametrize("kind,plus_one", [("rms", False), ("rms", True), ("layer", False)])
@pytest.mark.parametrize("shape,size", [((5, 3, 1, 16), 16), ((1, 4, 1, 16), 16), ((5, 3, 16), 16),
                                         ((2, 3, 1, 4, 8), (4, 8)), ((1, 16), 16)])  # fmt: skip
def test_values_and_gradients(kind, plus_one, shape, size):
    rng = np.random.default_rng(0)
    norm = Norm(size, kind, 1e-5, plus_one, "embed" if isinstance(size, int) else ("heads", "head_dim"), jnp.float32,
                nnx.Rngs(0))  # fmt: skip
    norm.weight[...] = jnp.asarray(rng.normal(size=norm.weight.shape), jnp.float32)
    b = 0.0
    if kind == "layer":
        norm.bias[...] = jnp.asarray(rng.normal(size=norm.bias.shape), jnp.float32)
        b = np.asarray(norm.bias[...])
    x = jnp.asarray(3.0 * rng.normal(size=shape) + 1.0, jnp.float32)
    w = np.asarray(norm.weight[...])
    axes = norm.reduce
    want = numpy_norm(x, w, b, kind, 1e-5, plus_one, axes)
    got = np.asarray(norm(x))
    assert got.shape == shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * np.abs(want).max())
    g = jnp.asarray(rng.normal(size=shape), jnp.float32)
    dx = jax.grad(lambda x: (norm(x) * g).sum())(x)
    ref = jax.grad(lambda x: (plain(x, jnp.asarray(w), b, kind, 1e-5, plus_one, axes) * g).sum())(x)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(ref), rtol=0, atol=TOL * float(jnp.abs(ref).max()))
