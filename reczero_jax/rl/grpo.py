"""RecZero's RL stage: GRPO.

Each loop step reads top to bottom: the prompts (``batch_indices`` of seed and step) ->
rollout (G = ``grpo.num_generations`` answers per prompt, [B, G, T] from the sampler) ->
rewards [B, G] on the token ids (+ the soft overlong penalty) -> group advantages [B, G]
(with dynamic sampling: further rounds of prompts until B groups have reward spread,
:func:`collect_groups`) -> ``epochs`` passes of
``mini_batches`` train steps with the GRPO objective -> metrics -> validation and
checkpoint. Every key is folded from (seed, step), so a resumed run is exact.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from reczero_jax.data.prompt_set import PromptSet, batch_indices
from reczero_jax.metrics import strict_rating_metrics
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.multihost import to_host
from reczero_jax.observe import PhaseTimer
from reczero_jax.observe.compiles import CompileLog
from reczero_jax.observe.logs import log
from reczero_jax.rl import group_filter
from reczero_jax.rl.advantages import group_advantages
from reczero_jax.rl.evaluation import evaluate
from reczero_jax.rl.losses import GRPOLoss
from reczero_jax.rl.objectives import GRPOBatch, GRPOObjective, training_forward
from reczero_jax.rl.phase import (
    PhaseResult,
    PhaseRuntime,
    StepLog,
    checkpoint_meta,
    host_metrics,
    mean_metrics,
    start_state,
    stop_if_preempted,
)
from reczero_jax.rl.step import batch_sharding, jit_train_step, make_optimizer
from reczero_jax.sampling.sampler import GroupSampler
from reczero_jax.settings import GRPOSettings, Settings

EXTRA_ROUND_KEY = 1_000_000  # folded with a dynamic-sampling round r > 0 into the step key


def grpo_objective(settings: Settings, config: ModelConfig) -> GRPOObjective:
    """The objective GRPO trains with (the one translation of the ``grpo`` section into a
    loss; training and ``tools/lower_config`` both call it). Its log-probs use the
    sampling temperature, the distribution the answers were drawn from."""
    # every field of the loss is the grpo key of the same name (no hand-kept copy to drift)
    loss = GRPOLoss(
        **{f.name: getattr(settings.grpo, f.name) for f in dataclasses.fields(GRPOLoss)}
    )
    forward = training_forward(settings.model, config, settings.sampling.temperature)
    return GRPOObjective(forward, loss)


@dataclasses.dataclass(frozen=True)
class Rollout:
    """One rollout of B prompts: the batch, its rewards (host float32 [B, G], after any
    overlong penalty) and its metrics."""

    batch: GRPOBatch
    rewards: np.ndarray
    metrics: dict[str, float]

    @property
    def informative(self) -> np.ndarray:
        """bool [B]: the groups whose rewards differ (:func:`group_filter.informative_groups`)."""
        return group_filter.informative_groups(self.rewards)


def rollout(
    sampler: GroupSampler,
    params,
    prompts,
    targets: np.ndarray,
    fallbacks: np.ndarray,
    reward_fn,
    cfg: GRPOSettings,
    key: jax.Array,
) -> Rollout:
    """G answers to each of B prompts, their rewards and advantages.

    Args:
      prompts: a sequence of B prompts' token ids (each process reads only the rows it
        holds); targets / fallbacks: float32 [B] true ratings and the strict metric's
        stand-ins.
      reward_fn: ``(tokens [B, G, T], lengths [B, G], targets [B, G]) -> RewardOut``.
    The soft overlong penalty (``cfg.overlong_penalty``) is added to the rewards before the
    advantages; ``cfg.overlong_filter`` masks the cut answers out of the loss.
    Returns the Rollout (its batch has no reference log-probs).
    """
    tick = time.perf_counter()
    out = jax.block_until_ready(sampler.sample(params, prompts, cfg.num_generations, key=key))
    sample_s = time.perf_counter() - tick
    b, g, t = out.tokens.shape
    targets_bg = np.broadcast_to(targets[:, None], (b, g))
    rew = reward_fn(out.tokens, out.lengths, np.ascontiguousarray(targets_bg, np.float32))
    reward = rew.reward
    if cfg.overlong_penalty > 0:
        penalty = group_filter.soft_overlong_penalty(
            out.lengths, out.stopped, t, cfg.overlong_buffer, cfg.overlong_penalty
        )
        reward = reward + penalty
    adv = jax.block_until_ready(group_advantages(reward, cfg.advantage_std))
    reward_s = time.perf_counter() - tick - sample_s
    resp_mask = jnp.arange(t) < out.lengths[..., None]
    if cfg.overlong_filter:
        resp_mask = group_filter.overlong_mask(resp_mask, out.stopped)
    batch = GRPOBatch(
        prompt=out.prompt,
        prompt_valid=out.prompt_valid,
        resp=out.tokens,
        resp_mask=resp_mask,
        old_logp=out.logprobs,
        advantages=adv,
    )
    valid, rating, reward = to_host(rew.valid), to_host(rew.rating), to_host(reward)
    fallbacks_bg = np.broadcast_to(fallbacks[:, None], (b, g))
    strict = strict_rating_metrics(
        rating.ravel(), valid.ravel(), targets_bg.ravel(), fallbacks_bg.ravel()
    )
    lengths, stopped = to_host(out.lengths), to_host(out.stopped)
    metrics = {
        "reward/mean": float(reward.mean()),
        "reward/std": float(reward.std()),
        "format/valid_frac": float(valid.mean()),
        "batch/mae": strict["mae"],
        "groups/frac_reward_zero_std": float(1.0 - group_filter.informative_groups(reward).mean()),
        "response/length_mean": float(lengths.mean()),
        "response/length_max": float(lengths.max()),
        "response/stopped_frac": float(stopped.mean()),
        "rollout/tokens": float(lengths.sum()),
        "time/sample_s": sample_s,
        "time/reward_s": reward_s,
        "perf/rollout_tokens_per_s": float(lengths.sum()) / max(sample_s, 1e-9),
    }
    if cfg.overlong_penalty > 0:
        metrics["overlong/penalty_mean"] = float(to_host(penalty).mean())
    if cfg.overlong_filter:
        metrics["overlong/filtered_frac"] = float(1.0 - stopped.mean())
    return Rollout(batch, reward, metrics)


def _pad_prompts(batch: GRPOBatch, p: int) -> GRPOBatch:
    """``batch`` with its left-padded prompts widened to ``p`` columns (more left padding)."""
    extra = p - batch.prompt.shape[1]
    if extra == 0:
        return batch
    widen = lambda x, fill: jnp.pad(x, ((0, 0), (extra, 0)), constant_values=fill)  # noqa: E731
    # the pad value of the token ids is irrelevant: prompt_valid masks it out
    return batch.replace(
        prompt=widen(batch.prompt, 0), prompt_valid=widen(batch.prompt_valid, False)
    )


@functools.partial(jax.jit, static_argnames=("p",))
def _merge_rounds(batches: tuple[GRPOBatch, ...], keep: jax.Array, p: int) -> GRPOBatch:
    """The groups ``keep`` int32 [B] of the rounds' batches concatenated, prompts widened
    to the bucket ``p``."""
    batches = [_pad_prompts(b, p) for b in batches]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs)[keep], *batches)


def collect_groups(draw, cfg: GRPOSettings) -> tuple[GRPOBatch, dict[str, float]]:
    """The step's batch of B = ``cfg.prompts_per_step`` groups.

    ``draw(r)`` samples rollout round r (round 0: the step's own prompts; later rounds:
    further prompts). Without ``cfg.dynamic_sampling`` the batch is round 0. With it,
    rounds are drawn until B groups have reward spread or ``cfg.dynamic_max_rounds``
    rounds were drawn; :func:`group_filter.select_groups` picks the batch. Rollout metrics
    are means over every round (what the policy did), plus ``groups/kept_frac`` (the
    informative share of the batch), ``dynamic/rounds`` and ``dynamic/extra_prompts``.
    """
    size = cfg.prompts_per_step
    rounds = [draw(0)]
    while (
        cfg.dynamic_sampling
        and len(rounds) < cfg.dynamic_max_rounds
        and sum(int(r.informative.sum()) for r in rounds) < size
    ):
        rounds.append(draw(len(rounds)))
    metrics = mean_metrics([r.metrics for r in rounds])
    if not cfg.dynamic_sampling:
        return rounds[0].batch, metrics
    informative = np.concatenate([r.informative for r in rounds])
    keep = group_filter.select_groups(informative, size)
    # One merge shape whatever the number of rounds (no compilation when it changes):
    # the missing rounds are stand-ins (round 0 again) that ``keep`` never picks.
    batches = [r.batch for r in rounds] + [rounds[0].batch] * (cfg.dynamic_max_rounds - len(rounds))
    p = max(b.prompt.shape[1] for b in batches)
    merged = _merge_rounds(tuple(batches), jnp.asarray(keep, jnp.int32), p)
    metrics.update({
        "groups/kept_frac": float(informative[keep].mean()),
        "dynamic/rounds": float(len(rounds)),
        "dynamic/extra_prompts": float((len(rounds) - 1) * size),
    })  # fmt: skip
    return merged, metrics


def minibatches(batch: GRPOBatch, n: int, key: jax.Array) -> list[GRPOBatch]:
    """The B groups split into ``n`` mini-batches (in a random order of ``key`` when n > 1;
    with n == 1, the batch itself: no copy)."""
    if n == 1:
        return [batch]
    b = batch.prompt.shape[0]
    order = np.asarray(jax.random.permutation(key, b))
    size = b // n
    return [
        jax.tree.map(lambda x, sel=order[i * size : (i + 1) * size]: x[sel], batch)
        for i in range(n)
    ]


def _line(m: dict) -> str:
    return (
        f"reward {m['reward/mean']:.3f} batch MAE {m['batch/mae']:.3f} valid "
        f"{m['format/valid_frac']:.2f} entropy {m['policy/entropy']:.3f} zero-std groups "
        f"{m['groups/frac_reward_zero_std']:.2f} ({m['perf/step_s']:.2f} s/step)"
    )


def run_grpo(
    params,
    ref_params,
    cfg: GRPOSettings,
    *,
    objective: GRPOObjective,
    train: PromptSet,
    validation: PromptSet | None,
    sampler: GroupSampler,
    eval_sampler: GroupSampler,
    reward_fn,
    eval_batch_size: int,
    rt: PhaseRuntime,
    log_every: int = 5,
) -> PhaseResult:
    """``cfg.steps`` GRPO steps from ``params`` (or the phase's checkpoint at
    ``rt.resume_step``, read into the layout of ``params``, which may then be abstract).
    ``ref_params``: the KL reference (the weights the phase started from), used only when
    ``cfg.kl_coef > 0``. Every ``cfg.eval_every`` steps, greedy strict MAE on
    ``validation`` (a fixed random sample); checkpoints carry it so the best is kept.
    ``rt.watch`` may stop the phase at a step boundary (:mod:`reczero_jax.rl.preemption`).
    """
    mesh, ckpt, writer, seed, meta = rt.mesh, rt.ckpt, rt.writer, rt.seed, rt.meta
    tx = make_optimizer(cfg.optim)
    state, start = start_state(params, tx, ckpt, rt.resume_step, "grpo")
    per_mini = cfg.prompts_per_step // cfg.mini_batches
    step_fn = jit_train_step(state, mesh, objective, cfg.micro_groups or per_mini)
    ref_fn = None
    if objective.loss.kl_coef > 0:  # the reference forward is skipped entirely without KL
        ref_fn = jax.jit(lambda p, b: objective.forward(p, b)[0])
    root = jax.random.key(seed)
    timer = PhaseTimer()
    step_log = StepLog(
        writer, "grpo", cfg.steps, start, log_every, line=_line, shown=("reward/mean", "batch/mae")
    )
    compiles = CompileLog("grpo")
    if start < cfg.steps:
        log.info("grpo: step %d compiles the rollout, the rewards and the train step (%d prompts x "
                 "%d answers)", start + 1, cfg.prompts_per_step, cfg.num_generations)  # fmt: skip
    for step in range(start, cfg.steps):
        tick = time.perf_counter()
        step_key = jax.random.fold_in(root, step)
        buckets: set[int] = set()  # the prompt buckets this step's rollouts used

        def draw(r, step=step, step_key=step_key, params=state.params, buckets=buckets):
            idx = batch_indices(len(train), cfg.prompts_per_step, step, seed, r)
            key = jax.random.fold_in(step_key, 0 if r == 0 else EXTRA_ROUND_KEY + r)
            out = rollout(
                sampler, params, train.rows(idx), train.targets_of(idx),
                train.fallbacks_of(idx), reward_fn, cfg, key,
            )  # fmt: skip
            buckets.add(out.batch.prompt.shape[1])
            return out

        with compiles.step(buckets, step + 1) as counted:
            with timer.phase("rollout"):
                batch, m = collect_groups(draw, cfg)
                if ref_fn is not None:
                    batch = batch.replace(ref_logp=ref_fn(ref_params, batch))
            with timer.phase("update"):
                updates = []
                for epoch in range(cfg.epochs):
                    key = jax.random.fold_in(step_key, 1 + epoch)
                    for mb in minibatches(batch, cfg.mini_batches, key):
                        state, um = step_fn(state, jax.device_put(mb, batch_sharding(mesh)))
                        updates.append(host_metrics(um))
        m.update(mean_metrics(updates))
        m.update(counted)
        m.update(timer.pop())
        m["perf/step_s"] = time.perf_counter() - tick
        done = step + 1
        step_log.add(done, m)
        metrics = None
        if (
            validation is not None
            and cfg.eval_every
            and (done % cfg.eval_every == 0 or done == cfg.steps)
        ):
            result = evaluate(eval_sampler, state.params, validation, reward_fn, eval_batch_size)
            scalars = {f"eval/{k}": v for k, v in result.items() if isinstance(v, int | float)}
            writer.write(done, scalars)
            step_log.history.append({"step": done, **scalars})
            log.info("grpo %d: validation strict MAE %.4f (valid %.3f)", done, result["mae"],
                     result["format_valid_rate"])  # fmt: skip
            metrics = {"eval/mae": result["mae"]}
        meta_now = checkpoint_meta(meta, "grpo", done)
        ckpt.save(done, state.as_dict(), meta_now, metrics=metrics, force=done == cfg.steps)
        stop_if_preempted(rt.watch, ckpt, done, cfg.steps, state, meta, "grpo")
    step_log.close()
    ckpt.close()
    return PhaseResult(state.params, step_log.history, compiles.summary())
