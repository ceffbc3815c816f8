"""decoder.swiglu: silu(gate) * up with a hand-written backward pass, against autodiff of
the same expression and the float64 derivative."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reczero_jax.model.decoder import swiglu


def _inputs(dtype, shape=(3, 5, 17)):
    k = jax.random.split(jax.random.key(0), 3)
    gate = jax.random.normal(k[0], shape) * 4.0  # both tails of the sigmoid
    up = jax.random.normal(k[1], shape)
    weight = jax.random.normal(k[2], shape)
    return gate.astype(dtype), up.astype(dtype), weight.astype(dtype)


def test_forward_is_the_silu_product_bit_for_bit():
    for dtype in (jnp.float32, jnp.bfloat16):
        gate, up, _ = _inputs(dtype)
        np.testing.assert_array_equal(swiglu(gate, up), nn.silu(gate) * up)


def test_gradients_equal_autodiff_and_the_float64_derivative():
    gate, up, weight = _inputs(jnp.float32)

    def loss(fn):
        return lambda g, u: jnp.sum(fn(g, u) * weight)

    got = jax.grad(loss(swiglu), argnums=(0, 1))(gate, up)
    auto = jax.grad(loss(lambda g, u: nn.silu(g) * u), argnums=(0, 1))(gate, up)
    for a, b in zip(got, auto, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)
    g, u, w = (np.asarray(x, np.float64) for x in (gate, up, weight))
    s = 1.0 / (1.0 + np.exp(-g))
    np.testing.assert_allclose(got[0], w * u * (s + g * s * (1 - s)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], w * g * s, rtol=1e-5, atol=1e-6)


def test_bfloat16_gradients_keep_their_dtype_and_match_float32():
    gate, up, weight = _inputs(jnp.bfloat16)

    def grads(g, u, w):
        return jax.grad(lambda g, u: jnp.sum(swiglu(g, u) * w), argnums=(0, 1))(g, u)

    low = grads(gate, up, weight)
    high = grads(*(x.astype(jnp.float32) for x in (gate, up, weight)))
    for a, b in zip(low, high, strict=True):
        assert a.dtype == jnp.bfloat16
        np.testing.assert_allclose(a.astype(jnp.float32), b, rtol=2e-2, atol=2e-2)
