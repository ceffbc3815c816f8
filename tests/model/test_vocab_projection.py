"""The vocabulary projection's backward pass runs in the compute dtype: with bfloat16, both
products of the gradient take bfloat16 operands as lowered for a GPU or TPU (a float32
cotangent would promote them to float32; XLA:CPU gets the same rounded values widened to
float32), and the gradients are those of a numpy reference that rounds the cotangent."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from reczero_jax.model import logits_from_hidden


def _inputs():
    h = jax.random.normal(jax.random.key(0), (3, 5, 16), jnp.float32)
    k = jax.random.normal(jax.random.key(1), (16, 40), jnp.float32) * 0.3
    y = jax.random.randint(jax.random.key(2), (3, 5), 0, 40)
    return h, k, y


def _nll(dtype):
    def loss(h, k, y):
        logits = logits_from_hidden(h, k, dtype)
        picked = jnp.take_along_axis(logits, y[..., None], -1)[..., 0]
        return jnp.sum(jax.nn.logsumexp(logits, -1) - picked)

    return loss


def _dot_operand_types(fn, *args, platform="cpu") -> list[tuple[str, str]]:
    text = jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()
    found = re.findall(r"dot_general .*: \(tensor<[0-9x]+x(\w+)>, tensor<[0-9x]+x(\w+)>\)", text)
    assert found, text
    return found


def test_bfloat16_backward_products_take_bfloat16_operands():
    h, k, y = _inputs()
    grad = jax.grad(_nll(jnp.bfloat16), argnums=(0, 1))
    for platform in ("cuda", "tpu"):
        types = _dot_operand_types(grad, h, k, y, platform=platform)
        assert len(types) == 3  # the forward product and the two of the backward
        assert set(types) == {("bf16", "bf16")}
    # on CPU the backward's operands are widened: ("bf16", "bf16") forward, then float32
    assert sorted(_dot_operand_types(grad, h, k, y)) == [("bf16", "bf16")] + [("f32", "f32")] * 2
    dh, dk = grad(h, k, y)
    assert dh.dtype == h.dtype and dk.dtype == k.dtype  # cotangents in the inputs' dtypes

    # numpy: bfloat16 operands, exact accumulation, the cotangent rounded to bfloat16
    def bf16(x):
        return np.asarray(jnp.asarray(x, jnp.bfloat16).astype(jnp.float32), np.float64)

    hb, kb = bf16(h), bf16(k)
    logits = hb @ kb
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    g = bf16(probs - np.eye(40)[np.asarray(y)])
    np.testing.assert_allclose(dh, g @ kb.T, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(dk, np.einsum("rtd,rtv->dv", hb, g), atol=1e-5, rtol=1e-5)


def test_float32_is_plain_autodiff():
    h, k, y = _inputs()
    grad = jax.grad(_nll(jnp.float32), argnums=(0, 1))
    assert set(_dot_operand_types(grad, h, k, y)) == {("f32", "f32")}

    def plain(h, k, y):
        logits = jnp.einsum("...d,dv->...v", h, k, preferred_element_type=jnp.float32)
        picked = jnp.take_along_axis(logits, y[..., None], -1)[..., 0]
        return jnp.sum(jax.nn.logsumexp(logits, -1) - picked)

    for got, want in zip(grad(h, k, y), jax.grad(plain, argnums=(0, 1))(h, k, y), strict=True):
        np.testing.assert_array_equal(got, want)
