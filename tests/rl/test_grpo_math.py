"""GRPO math against hand-derived numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.rl import group_filter, losses
from reczero_jax.rl.advantages import group_advantages
from reczero_jax.rl.logprobs import token_logprobs


def test_advantages_reference_numerics():
    r = jnp.array([[1.0, 0.0, 0.5], [2.0, 2.0, 2.0]])
    # mean 0.5; unbiased std = sqrt((0.25 + 0.25 + 0) / 2) = 0.5
    a = np.asarray(group_advantages(r))
    np.testing.assert_allclose(a[0], [0.5 / 0.500001, -0.5 / 0.500001, 0.0], rtol=1e-6)
    np.testing.assert_allclose(a[1], [0.0, 0.0, 0.0])
    # population std = sqrt(0.5 / 3)
    pop = np.asarray(group_advantages(r, "population"))
    np.testing.assert_allclose(
        pop[0], [0.5 / (np.sqrt(0.5 / 3) + 1e-6), -0.5 / (np.sqrt(0.5 / 3) + 1e-6), 0], rtol=1e-6
    )
    np.testing.assert_allclose(np.asarray(group_advantages(r, "none"))[0], [0.5, -0.5, 0.0])
    # a group of one keeps its raw reward
    np.testing.assert_allclose(
        np.asarray(group_advantages(jnp.array([[0.7], [-0.2]]))), [[0.7], [-0.2]]
    )
    assert float(1 - group_filter.informative_groups(r).mean()) == 0.5  # zero-std share
    with pytest.raises(ValueError, match="std must be"):
        group_advantages(r, "bessel")


def test_clipped_surrogate_cases():
    logp = jnp.log(jnp.array([1.5, 0.5, 5.0, 1.0]))
    old = jnp.zeros(4)
    adv = jnp.array([1.0, -1.0, -1.0, 2.0])
    loss, clipped = losses.clipped_surrogate(logp, old, adv, 0.2, 0.2, dual_clip_c=3.0)
    # ratio 1.5, A=1: max(-1.5, -1.2) = -1.2 (clipped)
    # ratio 0.5, A=-1: max(0.5, 0.8) = 0.8 (clipped)
    # ratio 5, A=-1: max(5, 1.2) = 5 -> dual clip min(5, 3) = 3
    # ratio 1, A=2: -2, not clipped
    np.testing.assert_allclose(np.asarray(loss), [-1.2, 0.8, 3.0, -2.0], rtol=1e-6)
    assert np.asarray(clipped).tolist() == [True, True, True, False]
    no_dual, _ = losses.clipped_surrogate(logp, old, adv, 0.2, 0.28, dual_clip_c=0.0)
    # eps_high 0.28: ratio 1.5 -> max(-1.5, -1.28) = -1.28
    np.testing.assert_allclose(np.asarray(no_dual), [-1.28, 0.8, 5.0, -2.0], rtol=1e-6)


def test_log_ratio_is_clamped():
    loss, _ = losses.clipped_surrogate(
        jnp.array([100.0]), jnp.array([0.0]), jnp.array([-1.0]), 0.2, 0.2
    )
    assert np.isfinite(np.asarray(loss)).all()
    np.testing.assert_allclose(np.asarray(loss), [np.exp(20.0)], rtol=1e-5)


def test_kl_estimators():
    logp, ref = jnp.array([-1.0]), jnp.array([-0.5])
    d = 0.5  # ref - logp
    np.testing.assert_allclose(
        np.asarray(losses.kl_penalty(logp, ref, "k3")), [np.exp(d) - d - 1], rtol=1e-6
    )
    np.testing.assert_allclose(np.asarray(losses.kl_penalty(logp, ref, "k2")), [0.125], rtol=1e-6)
    assert float(losses.kl_penalty(jnp.array([0.0]), jnp.array([50.0]), "k3")[0]) == 10.0


def test_aggregations():
    loss = jnp.array([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = jnp.array([[1, 1, 1], [1, 0, 0]], bool)
    out = {}
    for mode in losses.AGGREGATIONS:
        out[mode] = float(
            losses.aggregate_numerator(loss, mask, mode) / losses.aggregate_denominator(mask, mode)
        )
    assert out["token-mean"] == pytest.approx(10 / 4)
    assert out["seq-mean-token-mean"] == pytest.approx((2 + 4) / 2)
    assert out["dr_grpo"] == pytest.approx(10 / 6)


@pytest.mark.parametrize("remat", [True, False])
@pytest.mark.parametrize("chunk", [1, 3, 8, 64])
def test_chunked_logprobs_equal_dense(chunk, remat):
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(2, 3, 7, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(16, 50)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 50, (2, 3, 7)))
    logp, ent = token_logprobs(h, w, y, temperature=0.7, chunk=chunk, remat=remat)
    logits = (np.asarray(h) @ np.asarray(w)) / 0.7
    ref = jax.nn.log_softmax(logits, -1)
    np.testing.assert_allclose(
        np.asarray(logp),
        np.take_along_axis(np.asarray(ref), np.asarray(y)[..., None], -1)[..., 0],
        atol=1e-5,
    )
    p = np.exp(np.asarray(ref))
    np.testing.assert_allclose(np.asarray(ent), -(p * np.asarray(ref)).sum(-1), atol=1e-4)
    # gradients flow through the chunks, rematerialised or stored
    g = jax.grad(lambda hh: token_logprobs(hh, w, y, 0.7, chunk, remat=remat)[0].sum())(h)
    g_ref = jax.grad(
        lambda hh: jnp.take_along_axis(jax.nn.log_softmax(hh @ w / 0.7, -1), y[..., None], -1).sum()
    )(h)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), atol=1e-4)


def test_k3_clamps_the_log_ratio_before_exp():
    """A huge log-ratio gives a finite KL (clamped at 10) and a finite, zero gradient
    (without the clamp of d before exp, exp(d) is inf and its gradient NaN)."""
    ref = jnp.array([500.0, 0.3, -500.0])
    logp = jnp.array([0.0, 0.1, 0.0])
    kl = losses.kl_penalty(logp, ref, "k3")
    grad = jax.grad(lambda x: jnp.sum(losses.kl_penalty(x, ref, "k3")))(logp)
    assert np.all(np.isfinite(np.asarray(grad)))
    d = 0.2
    np.testing.assert_allclose(np.asarray(kl), [10.0, np.exp(d) - d - 1, 10.0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), [0.0, 1 - np.exp(d), 0.0], rtol=1e-5)


def _numpy_grpo(logp, ent, old, adv, mask, ref, kl_coef, ent_coef, eps_low, eps_high, c):
    """Per token in plain numpy: PPO clip, dual clip, k2 KL, entropy bonus; token-mean."""
    ratio = np.exp(logp - old)
    a = adv[..., None]
    pg = np.maximum(-a * ratio, -a * np.clip(ratio, 1 - eps_low, 1 + eps_high))
    pg = np.where(a < 0, np.minimum(pg, -a * c), pg)
    per_token = pg + kl_coef * 0.5 * (logp - ref) ** 2 - ent_coef * ent
    return float(np.sum(per_token * mask))


def test_grpo_and_sft_losses_equal_plain_numpy():
    rng = np.random.default_rng(0)
    b, g, t = 3, 4, 5
    logp = rng.normal(-2, 0.5, (b, g, t)).astype(np.float32)
    old = (logp + rng.normal(0, 0.4, (b, g, t))).astype(np.float32)
    ref = (logp + rng.normal(0, 0.2, (b, g, t))).astype(np.float32)
    ent = rng.uniform(0, 2, (b, g, t)).astype(np.float32)
    adv = rng.normal(size=(b, g)).astype(np.float32)
    mask = np.arange(t)[None, None] < rng.integers(1, t + 1, (b, g))[..., None]
    loss = losses.GRPOLoss(
        eps_low=0.2, eps_high=0.28, dual_clip_c=2.0, kl_coef=0.3, kl_estimator="k2",
        entropy_coef=0.05,
    )  # fmt: skip
    numerator, sums = losses.grpo_loss(logp, ent, old, adv, mask, ref, loss)
    expected = _numpy_grpo(logp, ent, old, adv, mask, ref, 0.3, 0.05, 0.2, 0.28, 2.0)
    assert float(numerator) == pytest.approx(expected, rel=1e-5)
    assert float(sums["tokens"]) == mask.sum()
    assert float(sums["kl"]) == pytest.approx(
        float(np.sum(0.5 * (logp - ref) ** 2 * mask)), rel=1e-5
    )
    nll, sft_sums = losses.sft_loss(logp, ent, mask)
    assert float(nll) == pytest.approx(float(np.sum(-logp * mask)), rel=1e-6)
    assert float(sft_sums["entropy"]) == pytest.approx(float(np.sum(ent * mask)), rel=1e-6)
    # seq-mean-token-mean: the per-row means, summed
    per_row, _ = losses.sft_loss(logp, ent, mask, "seq-mean-token-mean")
    rows = np.sum(-logp * mask, -1) / mask.sum(-1)
    assert float(per_row) == pytest.approx(float(rows.sum()), rel=1e-5)
