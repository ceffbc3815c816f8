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


def _reference_decode(q, k_new, v_new, pk, pv, pvalid, gk, gv, gvalid):
    """Plain numpy, float64: each row and query head against the concatenation of its
    prompt's valid keys, its own valid generated keys and (when given) its current key.
    Layouts as stored: pk [B, Hkv, P, Dh], gk [N, Hkv, Tg, Dh] (slots second to last)."""
    n, hq, dh = q.shape
    b, hkv = pk.shape[:2]
    g, r = n // b, hq // hkv
    out = np.zeros((n, hq, dh))
    for row in range(n):
        i = row // g
        for h in range(hq):
            kh = h // r
            keys = [pk[i, kh][pvalid[i]], gk[row, kh][gvalid]]
            values = [pv[i, kh][pvalid[i]], gv[row, kh][gvalid]]
            if k_new is not None:
                keys.append(k_new[row, kh][None])
                values.append(v_new[row, kh][None])
            s = np.concatenate(keys) @ q[row, h] / np.sqrt(dh)
            out[row, h] = _np_softmax(s) @ np.concatenate(values)
    return out


@pytest.mark.parametrize("current", ["separate", "in_cache"])
def test_shared_prompt_decode_attention_equals_one_softmax_over_the_segments(current):
    """The decode attention (prompt segment heads-major, no concatenation, one max and one
    denominator) against one softmax over the concatenated keys: G rows share each
    prompt, prompts left-padded to different lengths, the generated cache partly written,
    R = 3 query heads per KV head; the current token as its own segment (the scanned step)
    or already written into the cache (the unrolled step)."""
    rng = np.random.default_rng(7)
    b, g, hkv, r, dh, p, tg = 2, 3, 2, 3, 16, 11, 9
    n = b * g
    f = lambda *s: rng.normal(size=s)  # noqa: E731
    q, pk, pv = f(n, hkv * r, dh) * 2, f(b, hkv, p, dh), f(b, hkv, p, dh)
    gk, gv = f(n, hkv, tg, dh), f(n, hkv, tg, dh)
    pvalid = np.ones((b, p), bool)
    pvalid[0, :4] = False
    t = 5  # this step's slot
    if current == "separate":
        k_new, v_new = f(n, hkv, dh), f(n, hkv, dh)
        gvalid = np.arange(tg) < t
    else:
        k_new = v_new = None
        gvalid = np.arange(tg) <= t
    as32 = lambda x: None if x is None else jnp.asarray(x, jnp.float32)  # noqa: E731
    got = attention.shared_prompt_decode_attention(
        as32(q), as32(k_new), as32(v_new),
        as32(pk.swapaxes(2, 3)), as32(pv), pvalid,  # keys stored slots last
        as32(gk.swapaxes(2, 3)), as32(gv), jnp.asarray(gvalid),
    )  # fmt: skip
    want = _reference_decode(q, k_new, v_new, pk, pv, pvalid, gk, gv, gvalid)
    assert got.shape == (n, hkv * r, dh) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=0)
