"""The token draw (sampling.methods.draw): its distribution against the exact softmax, and
top-k / top-p truncation, from many draws with fixed keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.sampling.methods import (
    Greedy,
    Sampling,
    block_size,
    draw,
    inverse_cdf_draw,
    inverse_cdf_index,
)


def _frequencies(logits, method, draws=20000):
    """[V] frequencies of ``draws`` tokens drawn from one row of ``logits``."""
    rows = jnp.broadcast_to(jnp.asarray(logits, jnp.float32), (draws, len(logits)))
    tokens, logp = jax.jit(draw, static_argnums=2)(rows, jax.random.key(7), method)
    counts = np.bincount(np.asarray(tokens), minlength=len(logits))
    return counts / draws, np.asarray(tokens), np.asarray(logp)


def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_matches_the_softmax(temperature):
    logits = np.array([2.0, 0.5, -1.0, 1.2, 0.0, -3.0, 1.9, 0.3])
    freq, tokens, logp = _frequencies(logits, Sampling(temperature))
    probs = _softmax(logits / temperature)
    # 20k draws: the standard error of each frequency is below 0.0036; 5 sigma
    np.testing.assert_allclose(freq, probs, atol=0.018)
    # the reported log-prob is the full softmax's at the drawn token
    np.testing.assert_allclose(logp, np.log(probs)[tokens], rtol=1e-5)


def test_top_k_and_top_p_never_draw_outside_the_kept_set():
    logits = np.array([3.0, 2.5, 2.0, 0.0, -1.0, 1.0])
    freq, _, _ = _frequencies(logits, Sampling(1.0, top_k=3))
    kept = _softmax(logits[:3])
    assert freq[3:].sum() == 0
    np.testing.assert_allclose(freq[:3], kept, atol=0.02)
    probs = _softmax(logits)  # top_p: the smallest most-likely set reaching 0.7
    freq, _, _ = _frequencies(logits, Sampling(1.0, top_p=0.7))
    order = np.argsort(-probs)
    n_keep = int(np.searchsorted(np.cumsum(probs[order]), 0.7) + 1)
    assert freq[order[n_keep:]].sum() == 0 and np.all(freq[order[:n_keep]] > 0)


def test_inverse_cdf_draw_skips_zero_probability_entries_and_uses_one_uniform_per_row():
    probs = jnp.asarray([[0.0, 0.5, 0.0, 0.5, 0.0]] * 5000)
    index = np.asarray(inverse_cdf_draw(probs, jax.random.key(1)))
    assert set(np.unique(index)) == {1, 3}
    assert abs((index == 1).mean() - 0.5) < 0.03
    # rows are independent: different rows of the same distribution differ
    assert len(np.unique(index[:20])) == 2


@pytest.mark.parametrize("v", [5, 100, 997, 4096])
def test_inverse_cdf_index_equals_one_running_sum_over_the_vocabulary(v):
    """The two-level search returns the first index whose running sum exceeds u * total,
    as one float64 prefix sum does; whole zero blocks and a padded tail (997) included."""
    rng = np.random.default_rng(v)
    n = 400
    w = rng.exponential(size=(n, v)).astype(np.float32)
    w[rng.random((n, v)) < 0.3] = 0.0
    w[:, : 3 * block_size(v)] = 0.0  # leading blocks with no mass
    w[:, -1] = 1.0  # every row has mass
    u = rng.random(n).astype(np.float32)
    got = np.asarray(inverse_cdf_index(jnp.asarray(w), jnp.asarray(u)))
    cdf = np.cumsum(w.astype(np.float64), axis=-1)
    point = u.astype(np.float64) * cdf[:, -1]
    want = (cdf <= point[:, None]).sum(-1)
    # away from a boundary of the running sum, float32 rounding cannot move the draw
    clear = np.abs(cdf - point[:, None]).min(-1) > 1e-5 * cdf[:, -1]
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(got[clear], want[clear])
    assert np.all(w[np.arange(n), got] > 0)


def test_inverse_cdf_index_never_returns_a_zero_weight_past_the_total():
    w = np.zeros((3, 4096), np.float32)
    w[:, 100] = 0.25
    w[:, 2000:2003] = 0.25
    u = np.array([1.0, np.nextafter(np.float32(1.0), np.float32(0.0)), 0.0], np.float32)
    got = np.asarray(inverse_cdf_index(jnp.asarray(w), jnp.asarray(u)))
    np.testing.assert_array_equal(got, [2002, 2002, 100])


def test_block_sizes_divide_the_common_vocabularies():
    assert [block_size(v) for v in (4096, 151936, 128256, 32000)] == [64, 128, 256, 128]
    assert block_size(997) == 32  # prime: padded to 1,024


def test_greedy_takes_the_argmax():
    tokens, logp = draw(jnp.asarray([[0.0, 3.0, 1.0]]), jax.random.key(0), Greedy())
    assert int(tokens[0]) == 1
    assert float(logp[0]) == pytest.approx(np.log(_softmax(np.array([0.0, 3.0, 1.0]))[1]))
