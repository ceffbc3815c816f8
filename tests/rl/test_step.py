"""The one train step: exact micro-batch accumulation for both objectives, the NaN guard,
sharded == unsharded, one compilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reczero_jax import sharding
from reczero_jax.model import ModelConfig
from reczero_jax.model.params import init_params
from reczero_jax.rl.losses import GRPOLoss
from reczero_jax.rl.objectives import Forward, GRPOBatch, GRPOObjective, SFTBatch, SFTObjective
from reczero_jax.rl.step import init_train_state, jit_train_step, make_optimizer
from reczero_jax.settings import OptimSettings

CONFIG = ModelConfig(
    model_type="qwen2",
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    qkv_bias=True,
    tie_word_embeddings=True,
)
FORWARD = Forward(CONFIG)


def make_batch(b=4, g=2, p=6, t=5, seed=0, kind="grpo"):
    rng = np.random.default_rng(seed)
    prompt_len = rng.integers(2, p + 1, b)
    prompt = rng.integers(1, 64, (b, p)).astype(np.int32)
    prompt_valid = np.arange(p)[None] >= (p - prompt_len)[:, None]
    prompt = np.where(prompt_valid, prompt, 0)
    resp_len = rng.integers(1, t + 1, (b, g))
    resp_mask = np.arange(t)[None, None] < resp_len[..., None]
    resp = np.where(resp_mask, rng.integers(1, 64, (b, g, t)), 0).astype(np.int32)
    seqs = dict(
        prompt=jnp.asarray(prompt),
        prompt_valid=jnp.asarray(prompt_valid),
        resp=jnp.asarray(resp),
        resp_mask=jnp.asarray(resp_mask),
    )
    if kind == "sft":
        return SFTBatch(**seqs)
    return GRPOBatch(
        **seqs,
        old_logp=jnp.asarray(rng.normal(-3.0, 0.3, (b, g, t)), jnp.float32),
        advantages=jnp.asarray(rng.normal(size=(b, g)), jnp.float32),
        ref_logp=jnp.asarray(rng.normal(-3.0, 0.3, (b, g, t)), jnp.float32),
    )


def run_step(mesh, objective, micro_groups, batch, tx=None, steps=1):
    params = init_params(CONFIG, mesh, sharding.TRAIN_RULES, jax.random.key(0))
    params_host = jax.device_get(params)  # the state (and these arrays) are donated
    state = init_train_state(params, tx or optax.sgd(1.0))
    step = jit_train_step(state, mesh, objective, micro_groups)
    for _ in range(steps):
        state, metrics = step(state, batch)
    assert step._cache_size() == 1  # one compilation for repeated steps
    return jax.device_get(state), jax.device_get(metrics), params_host


def mesh1():
    return sharding.make_mesh((1, 1, 1), jax.devices()[:1])


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "dr_grpo"])
@pytest.mark.parametrize("kind", ["grpo", "sft"])
def test_gradients_equal_for_micro_batch_sizes_1_2_and_full(aggregation, kind):
    if kind == "sft":
        objective = SFTObjective(FORWARD, aggregation)
        batch = make_batch(g=1, kind="sft")
    else:
        loss = GRPOLoss(aggregation=aggregation, kl_coef=0.1, entropy_coef=0.01)
        objective, batch = GRPOObjective(FORWARD, loss), make_batch()
    states = [run_step(mesh1(), objective, m, batch)[0] for m in (1, 2, 4)]
    for other in states[1:]:
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5),
            states[0].params,
            other.params,
        )


def test_sgd_update_equals_minus_gradient_of_the_mean_loss():
    """With SGD(1), params move by exactly -grad of token-mean(-logp) (SFT)."""
    batch = make_batch(g=1, kind="sft")
    state, metrics, params0 = run_step(mesh1(), SFTObjective(FORWARD), 2, batch)

    def loss(p):
        logp, _ = FORWARD(p, batch)
        return -jnp.sum(logp * batch.resp_mask) / jnp.sum(batch.resp_mask)

    grads = jax.grad(loss)(params0)
    expected = jax.tree.map(lambda p, g: p - g, params0, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6), state.params, expected)
    assert metrics["loss"] == pytest.approx(float(loss(params0)), rel=1e-5)
    assert metrics["sft/nll"] == pytest.approx(float(loss(params0)), rel=1e-5)


def test_grpo_objective_without_kl_needs_no_reference():
    batch = make_batch().replace(ref_logp=None)
    state, metrics, params0 = run_step(mesh1(), GRPOObjective(FORWARD, GRPOLoss()), 2, batch)
    assert "policy/kl" not in metrics and metrics["update/skipped"] == 0.0
    with pytest.raises(ValueError, match="reference log-probs"):
        run_step(mesh1(), GRPOObjective(FORWARD, GRPOLoss(kl_coef=0.1)), 2, batch)


@pytest.mark.parametrize("micro_groups", [4, 2])  # one micro-batch (no loop), two
def test_non_finite_loss_skips_the_update(micro_groups):
    batch = make_batch()
    batch = batch.replace(advantages=batch.advantages.at[0, 0].set(jnp.nan))
    tx = make_optimizer(OptimSettings(learning_rate=1e-2))
    objective = GRPOObjective(FORWARD, GRPOLoss())
    params = init_params(CONFIG, mesh1(), sharding.TRAIN_RULES, jax.random.key(0))
    opt_before = jax.device_get(tx.init(params))
    state, metrics, params0 = run_step(mesh1(), objective, micro_groups, batch, tx=tx)
    assert metrics["update/skipped"] == 1.0
    assert int(state.step) == 0
    jax.tree.map(np.testing.assert_array_equal, state.params, params0)
    jax.tree.map(np.testing.assert_array_equal, state.opt_state, opt_before)


def test_sharded_step_equals_unsharded():
    batch = make_batch(b=8)
    objective = GRPOObjective(FORWARD, GRPOLoss(kl_coef=0.05))
    tx = make_optimizer(OptimSettings(learning_rate=1e-2))
    one, m1, _ = run_step(mesh1(), objective, 4, batch, tx=tx, steps=2)
    eight, m8, _ = run_step(sharding.make_mesh((2, 2, 2)), objective, 4, batch, tx=tx, steps=2)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4),
        one.params,
        eight.params,
    )
    assert m1["loss"] == pytest.approx(m8["loss"], rel=1e-5, abs=1e-6)


def test_minibatches_split_the_groups_once_each_and_pass_one_batch_through():
    from reczero_jax.rl.grpo import minibatches

    batch = make_batch(b=8)
    assert minibatches(batch, 1, jax.random.key(0))[0] is batch  # no copy for one
    parts = minibatches(batch, 4, jax.random.key(0))
    assert [p.prompt.shape[0] for p in parts] == [2, 2, 2, 2]
    rows = np.concatenate([np.asarray(p.advantages) for p in parts])
    order = [int(np.flatnonzero((np.asarray(batch.advantages) == r).all(-1))[0]) for r in rows]
    assert sorted(order) == list(range(8)) and order != list(range(8))
    for p, i in zip(parts, np.reshape(order, (4, 2)), strict=True):
        np.testing.assert_array_equal(p.resp, np.asarray(batch.resp)[i])
