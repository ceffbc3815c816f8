"""The attention functions against plain references: the blocked causal attention over
several query blocks (with left padding), and the grouped response attention's
two-segment softmax (values and gradients)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.model import attention


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _reference_causal(q, k, v, valid):
    """Plain numpy: every (row, head, query) on its own."""
    b, t, hq, dh = q.shape
    r = hq // k.shape[2]
    out = np.zeros_like(q)
    for i in range(b):
        for h in range(hq):
            s = q[i, :, h] @ k[i, :, h // r].T / np.sqrt(dh)  # [T, S]
            ok = np.tril(np.ones((t, t), bool)) & valid[i][None, :]
            s = np.where(ok, s, -1e30)
            out[i, :, h] = _np_softmax(s) @ v[i, :, h // r]
    return out


@pytest.mark.parametrize("t", [5, 300, 1100])  # one block; 3 blocks of 128; 8 blocks of 138
def test_blocked_causal_attention_equals_the_reference(t):
    rng = np.random.default_rng(t)
    b, hq, hkv, dh = 2, 4, 2, 8
    q = rng.normal(size=(b, t, hq, dh)).astype(np.float32)
    k = rng.normal(size=(b, t, hkv, dh)).astype(np.float32)
    v = rng.normal(size=(b, t, hkv, dh)).astype(np.float32)
    valid = np.ones((b, t), bool)
    valid[1, : t // 3] = False  # left padding
    got = np.asarray(attention.causal_attention(q, k, v, valid))
    want = _reference_causal(q, k, v, valid)
    real = valid[:, :, None, None] & np.ones_like(got, bool)  # padded queries are unused
    np.testing.assert_allclose(got[real], want[real], atol=2e-5)
    assert len(attention._query_blocks(t)) == {5: 1, 300: 3, 1100: 8}[t]


def _concat_softmax_grouped(q, k, v, pk, pv, pvalid, rvalid):
    """The grouped response attention as one softmax over [prompt keys, own keys]."""
    b, g, t, hq, dh = q.shape
    r = hq // k.shape[3]
    kp = jnp.repeat(pk, r, axis=2)  # [B, P, Hq, D]
    vp = jnp.repeat(pv, r, axis=2)
    ks = jnp.repeat(k, r, axis=3)  # [B, G, T, Hq, D]
    vs = jnp.repeat(v, r, axis=3)
    s_p = jnp.einsum("bgthd,bphd->bghtp", q, kp) / np.sqrt(dh)
    s_s = jnp.einsum("bgthd,bgshd->bghts", q, ks) / np.sqrt(dh)
    s_p = jnp.where(pvalid[:, None, None, None, :], s_p, -1e30)
    ok = jnp.tril(jnp.ones((t, t), bool))[None, None] & rvalid[:, :, None, :]
    s_s = jnp.where(ok[:, :, None], s_s, -1e30)
    p = jax.nn.softmax(jnp.concatenate([s_p, s_s], axis=-1), axis=-1)
    n = pk.shape[1]
    out = jnp.einsum("bghtp,bphd->bgthd", p[..., :n], vp)
    return out + jnp.einsum("bghts,bgshd->bgthd", p[..., n:], vs)


def test_grouped_response_attention_equals_one_softmax_values_and_gradients():
    rng = np.random.default_rng(0)
    b, g, t, p, hq, hkv, dh = 2, 3, 6, 9, 4, 2, 8
    arrays = [
        rng.normal(size=shape).astype(np.float32)
        for shape in [(b, g, t, hq, dh), (b, g, t, hkv, dh), (b, g, t, hkv, dh),
                      (b, p, hkv, dh), (b, p, hkv, dh)]
    ]  # fmt: skip
    pvalid = np.ones((b, p), bool)
    pvalid[0, :4] = False
    rvalid = np.ones((b, g, t), bool)
    rvalid[1, 2, 3:] = False
    got = attention.grouped_response_attention(*arrays, pvalid, rvalid)
    want = _concat_softmax_grouped(*arrays, pvalid, rvalid)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5)

    def loss(fn, *xs):
        return jnp.sum(jnp.sin(fn(*xs, pvalid, rvalid)))

    grads = jax.grad(lambda *xs: loss(attention.grouped_response_attention, *xs), (0, 1, 2, 3, 4))
    ref = jax.grad(lambda *xs: loss(_concat_softmax_grouped, *xs), (0, 1, 2, 3, 4))
    for a, c in zip(grads(*arrays), ref(*arrays)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=5e-5)
