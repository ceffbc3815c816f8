"""GRPO's variants against group collapse (rl/group_filter.py): their math on small arrays
against plain-Python references, and that each flag reaches the loss through the rollout
(``rl.grpo.rollout`` / ``collect_groups``) and a whole tiny run."""

from __future__ import annotations

import dataclasses
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.data.prompt_set import batch_indices
from reczero_jax.rl import group_filter
from reczero_jax.rl.grpo import Rollout, collect_groups, rollout
from reczero_jax.rl.losses import GRPOLoss, grpo_loss
from reczero_jax.rl.objectives import GRPOBatch
from reczero_jax.sampling.sampler import GroupSamples
from reczero_jax.settings import GRPOSettings

# --- the math, against plain Python -----------------------------------------------------


def test_informative_groups_are_those_with_reward_spread():
    rewards = [[1.0, 1.0, 1.0], [1.0, 0.5, 1.0], [-0.5, -0.5, -0.5], [0.0, 0.0, 1e-6]]
    expected = [len(set(row)) > 1 for row in rewards]
    assert group_filter.informative_groups(rewards).tolist() == expected


@pytest.mark.parametrize("seed", range(5))
def test_select_groups_prefers_informative_then_fills_in_sampling_order(seed):
    rng = np.random.default_rng(seed)
    informative = rng.random(12) < 0.4
    size = 5
    # reference: walk the candidates twice, informative first, then the rest
    picked = [i for i in range(12) if informative[i]][:size]
    picked += [i for i in range(12) if not informative[i]][: size - len(picked)]
    got = group_filter.select_groups(informative, size)
    assert got.tolist() == sorted(picked)
    assert informative[got].sum() == min(size, informative.sum())


def test_select_groups_needs_enough_candidates():
    with pytest.raises(ValueError, match="cannot fill"):
        group_filter.select_groups(np.ones(3, bool), 4)


def _reference_penalty(length, stopped, max_len, buffer, factor):
    if not stopped:
        return -factor
    start = max_len - buffer
    if length <= start:
        return 0.0
    return factor * max((start - length) / buffer, -1.0)


@pytest.mark.parametrize("buffer", [0, 4, 10])
def test_soft_overlong_penalty_matches_the_dapo_formula(buffer):
    max_len, factor = 16, 0.7
    lengths = np.arange(1, max_len + 1)
    for stopped in (True, False):
        got = group_filter.soft_overlong_penalty(
            lengths, np.full(lengths.shape, stopped), max_len, buffer, factor
        )
        want = [_reference_penalty(n, stopped, max_len, buffer, factor) for n in lengths]
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)


def test_overlong_mask_drops_only_cut_answers():
    mask = np.ones((2, 3, 4), bool)
    stopped = np.array([[True, False, True], [False, False, True]])
    got = np.asarray(group_filter.overlong_mask(jnp.asarray(mask), jnp.asarray(stopped)))
    for b in range(2):
        for g in range(3):
            assert got[b, g].all() == stopped[b, g] and got[b, g].any() == stopped[b, g]


def test_further_rounds_draw_other_prompts_and_leave_round_0_alone():
    first = batch_indices(100, 8, step=3, seed=1)
    assert np.array_equal(first, batch_indices(100, 8, step=3, seed=1, round=0))
    extra = batch_indices(100, 8, step=3, seed=1, round=1)
    assert len(set(extra.tolist())) == 8 and not np.array_equal(extra, first)
    assert np.array_equal(extra, batch_indices(100, 8, step=3, seed=1, round=1))


# --- the flags reach the loss -----------------------------------------------------------


class _FixedSampler:
    """A sampler stand-in that returns fixed answers (lengths and stops chosen by the test)."""

    def __init__(self, lengths, stopped, t=6, p=3):
        b, g = lengths.shape
        self.out = GroupSamples(
            tokens=jnp.ones((b, g, t), jnp.int32),
            logprobs=jnp.full((b, g, t), -0.5, jnp.float32),
            lengths=jnp.asarray(lengths, jnp.int32),
            stopped=jnp.asarray(stopped),
            prompt=jnp.ones((b, p), jnp.int32),
            prompt_valid=jnp.ones((b, p), bool),
        )

    def sample(self, params, prompts, g, key):
        return self.out


def _reward_fn(rewards):
    def fn(tokens, lengths, targets):
        r = jnp.asarray(rewards, jnp.float32)
        return types.SimpleNamespace(
            reward=r, valid=jnp.ones(r.shape, bool), rating=jnp.full(r.shape, 3.0)
        )

    return fn


def _loss_of(batch: GRPOBatch):
    logp = batch.old_logp + 0.1  # any policy other than the behaviour one
    entropy = jnp.zeros_like(logp)
    num, _ = grpo_loss(
        logp, entropy, batch.old_logp, batch.advantages, batch.resp_mask, None, GRPOLoss()
    )
    return float(num)


def _rollout(cfg, lengths, stopped, rewards):
    return rollout(
        _FixedSampler(lengths, stopped), None, [[1]] * len(rewards),
        np.full(len(rewards), 3.0, np.float32), np.full(len(rewards), 3.0, np.float32),
        _reward_fn(rewards), cfg, jax.random.key(0),
    )  # fmt: skip


def test_overlong_penalty_reaches_the_advantages_and_the_loss():
    lengths = np.array([[2, 5, 6, 6]])
    stopped = np.array([[True, True, True, False]])
    rewards = np.array([[1.0, 1.0, 1.0, 1.0]])  # equal: only the penalty spreads them
    plain = _rollout(GRPOSettings(num_generations=4), lengths, stopped, rewards)
    cfg = GRPOSettings(num_generations=4, overlong_penalty=0.5, overlong_buffer=2)
    shaped = _rollout(cfg, lengths, stopped, rewards)
    want = rewards + [[_reference_penalty(n, s, 6, 2, 0.5) for n, s in zip(lengths[0], stopped[0])]]
    np.testing.assert_allclose(shaped.rewards, want, rtol=1e-6)
    assert np.all(np.asarray(plain.batch.advantages) == 0)
    assert np.asarray(shaped.batch.advantages)[0, 0] > 0 > np.asarray(shaped.batch.advantages)[0, 3]
    assert _loss_of(plain.batch) == 0.0 and _loss_of(shaped.batch) != 0.0
    assert shaped.metrics["overlong/penalty_mean"] == pytest.approx(np.mean(want) - 1.0)


def test_overlong_filter_masks_cut_answers_out_of_the_loss():
    lengths = np.array([[3, 6, 6, 4]])
    stopped = np.array([[True, False, True, True]])
    rewards = np.array([[1.0, 0.0, 0.5, 0.2]])
    plain = _rollout(GRPOSettings(num_generations=4), lengths, stopped, rewards)
    filtered = _rollout(
        GRPOSettings(num_generations=4, overlong_filter=True), lengths, stopped, rewards
    )
    mask = np.asarray(filtered.batch.resp_mask)
    assert mask[0, 1].sum() == 0 and mask[0, 0].sum() == 3 and mask[0, 2].sum() == 6
    np.testing.assert_array_equal(filtered.batch.advantages, plain.batch.advantages)
    # the loss without answer 1 is the plain loss with answer 1's advantage set to 0
    dropped = plain.batch.replace(advantages=plain.batch.advantages.at[0, 1].set(0.0))
    assert _loss_of(filtered.batch) == pytest.approx(_loss_of(dropped), rel=1e-6)
    assert _loss_of(filtered.batch) != pytest.approx(_loss_of(plain.batch), rel=1e-3)
    assert filtered.metrics["overlong/filtered_frac"] == pytest.approx(0.25)


def _round(rewards, p, tag):
    """A Rollout of B groups whose prompt bucket is ``p`` and whose responses carry ``tag``."""
    b, g = rewards.shape
    batch = GRPOBatch(
        prompt=jnp.full((b, p), tag, jnp.int32),
        prompt_valid=jnp.ones((b, p), bool),
        resp=jnp.broadcast_to(jnp.arange(b)[:, None, None] + 10 * tag, (b, g, 2)),
        resp_mask=jnp.ones((b, g, 2), bool),
        old_logp=jnp.zeros((b, g, 2)),
        advantages=jnp.asarray(rewards - rewards.mean(-1, keepdims=True), jnp.float32),
    )
    return Rollout(batch, rewards, {"reward/mean": float(rewards.mean())})


def test_dynamic_sampling_refills_the_batch_with_informative_groups():
    flat, spread = [1.0, 1.0], [1.0, 0.0]
    rounds = [
        np.array([flat, spread, flat, flat]),  # 1 informative (group 1)
        np.array([spread, flat, spread, flat]),  # 2 more (groups 0 and 2)
        np.array([spread, spread, spread, spread]),
    ]
    drawn = []

    def draw(r):
        drawn.append(r)
        return _round(rounds[r], p=3 + r, tag=r + 1)

    cfg = GRPOSettings(prompts_per_step=4, num_generations=2, dynamic_sampling=True,
                       dynamic_max_rounds=3)  # fmt: skip
    batch, m = collect_groups(draw, cfg)
    assert drawn == [0, 1, 2]
    # round 0 group 1; round 1 groups 0 and 2; round 2 group 0 (the first 4, in order)
    resp_ids = np.asarray(batch.resp[:, 0, 0]).tolist()
    assert resp_ids == [10 + 1, 20 + 0, 20 + 2, 30 + 0]
    assert batch.prompt.shape == (4, 5)  # widened to the largest bucket, on the left
    valid = np.asarray(batch.prompt_valid)
    assert valid[0].tolist() == [False, False, True, True, True]
    assert m["groups/kept_frac"] == 1.0 and m["dynamic/rounds"] == 3
    assert m["dynamic/extra_prompts"] == 8
    assert m["reward/mean"] == pytest.approx(np.mean([r.mean() for r in rounds]))
    assert np.all(np.abs(np.asarray(batch.advantages)).sum(-1) > 0)  # every group teaches


def test_dynamic_sampling_stops_at_the_cap_and_tops_up_with_flat_groups():
    flat = np.ones((4, 2))
    draws = []
    cfg = GRPOSettings(prompts_per_step=4, num_generations=2, dynamic_sampling=True,
                       dynamic_max_rounds=2)  # fmt: skip
    batch, m = collect_groups(lambda r: draws.append(r) or _round(flat, 3, r + 1), cfg)
    assert draws == [0, 1] and batch.prompt.shape == (4, 3)
    assert m["groups/kept_frac"] == 0.0 and m["dynamic/extra_prompts"] == 4
    off = GRPOSettings(prompts_per_step=4, num_generations=2)
    batch_off, m_off = collect_groups(lambda r: _round(flat, 3, 1), off)
    assert "groups/kept_frac" not in m_off and batch_off.prompt.shape == (4, 3)


def test_every_variant_runs_in_a_tiny_run_and_logs_its_metric(tmp_path):
    from reczero_jax.rl.run import run
    from tests.rl.test_training import tiny_settings

    settings = tiny_settings(
        tmp_path, steps=2, dynamic_sampling=True, dynamic_max_rounds=2, overlong_penalty=0.5,
        overlong_buffer=4, overlong_filter=True, eps_high=0.28,
    )  # fmt: skip
    assert dataclasses.asdict(settings)["grpo"]["dynamic_sampling"] is True
    results = run(settings)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    # every shape compiles in the first step, whatever the number of rounds later steps need
    assert results["compiles"]["grpo"]["first_step"] > 0
    assert results["compiles"]["grpo"]["after_first_step"] == 0
    assert (
        sum(r.get("grpo/compile/count", 0) for r in rows)
        == results["compiles"]["grpo"]["first_step"]
    )
    for name in ("groups/kept_frac", "dynamic/rounds", "dynamic/extra_prompts",
                 "overlong/penalty_mean", "overlong/filtered_frac"):  # fmt: skip
        assert f"grpo/{name}" in keys
