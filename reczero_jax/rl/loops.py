"""The training loops: supervised cold start (SFT) and GRPO, with checkpoints and metrics.

Each loop reads top to bottom in phases: state (fresh or restored), step function, then
for each step: data (a pure function of seed and step) -> [rollout -> reward -> advantage]
-> update -> metrics -> evaluation / checkpoint. All randomness derives from the config
seed and the step, so a run stopped at step k and resumed reaches step n with the same
parameters as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from reczero_jax.checkpointing import Checkpointer
from reczero_jax.metrics import strict_rating_metrics
from reczero_jax.observe import MetricWriter, PhaseTimer, Progress
from reczero_jax.rewards import compute_rewards
from reczero_jax.rl.advantages import group_advantages, zero_std_fraction
from reczero_jax.rl.evaluation import evaluate
from reczero_jax.rl.setup import Run, batch_indices, make_sampler
from reczero_jax.rl.update import (
    LossSettings,
    TrainBatch,
    TrainState,
    batch_shardings,
    init_train_state,
    jit_train_step,
    make_optimizer,
    response_logprobs,
)
from reczero_jax.sampling.sampler import GroupSampler


def _optimizer(optim):
    return make_optimizer(
        optim.learning_rate,
        optim.weight_decay,
        optim.grad_clip,
        optim.warmup_steps,
        optim.decay_steps,
        optim.b1,
        optim.b2,
    )


def _as_dict(state: TrainState) -> dict:
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


def _restore(ckpt: Checkpointer, step: int, state: TrainState) -> tuple[TrainState, dict]:
    restored, meta = ckpt.restore(step, _as_dict(state))
    return TrainState(restored["params"], restored["opt_state"], restored["step"]), meta


def _meta(run: Run, phase: str, step: int) -> dict:
    """Checkpoint metadata: the phase, the data position (the next step's batch is
    ``batch_indices(..., step, seed)``), the RNG (all keys are folded from this root key
    and the step) and the whole config."""
    root = jax.random.key_data(jax.random.key(run.settings.seed))
    return {
        "phase": phase,
        "data_position": step,
        "rng_root_key": np.asarray(root).tolist(),
        "config": dataclasses.asdict(run.settings),
    }


def _host_metrics(metrics) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _mean_metrics(items: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in items])) for k in items[0]} if items else {}


@dataclasses.dataclass
class PhaseResult:
    params: object
    step: int
    history: list[dict]


# ------------------------------------------------------------------------------------ SFT
def sft_batch(traces, idx, prompt_len: int, resp_len: int, pad_id: int) -> TrainBatch:
    """B traces as a G = 1 TrainBatch (prompts left-padded, responses right-padded/cut)."""
    b = len(idx)
    prompt = np.full((b, prompt_len), pad_id, np.int32)
    prompt_valid = np.zeros((b, prompt_len), bool)
    resp = np.full((b, 1, resp_len), pad_id, np.int32)
    mask = np.zeros((b, 1, resp_len), bool)
    for row, i in enumerate(idx):
        p, r = traces[i]
        p = p[-prompt_len:]
        r = r[:resp_len]
        prompt[row, prompt_len - len(p) :] = p
        prompt_valid[row, prompt_len - len(p) :] = True
        resp[row, 0, : len(r)] = r
        mask[row, 0, : len(r)] = True
    zeros = np.zeros((b, 1, resp_len), np.float32)
    return TrainBatch(prompt, prompt_valid, resp, mask, zeros, zeros, np.zeros((b, 1), np.float32))


def run_sft(
    run: Run, params, traces, ckpt_dir: pathlib.Path, writer: MetricWriter, log_every: int = 10
) -> PhaseResult:
    s = run.settings
    cfg = s.sft
    optimizer = _optimizer(cfg.optim)
    state = init_train_state(params, optimizer)
    ckpt = Checkpointer(
        ckpt_dir, s.checkpoint.save_every, s.checkpoint.max_to_keep, best_metric=None
    )
    start = ckpt.latest_step() or 0
    if start:
        state, _ = _restore(ckpt, start, state)
        print(f"sft: resumed from step {start} ({ckpt_dir})")
    settings = LossSettings(kind="sft", logprob_chunk=64)
    step_fn = jit_train_step(
        state,
        run.mesh,
        config=run.model_config,
        optimizer=optimizer,
        settings=settings,
        micro_groups=cfg.micro_groups or cfg.batch_size,
        dtype=run.dtype,
        remat=s.model.remat,
    )
    prompt_len = max(len(p) for p, _ in traces)
    prompt_len = next((b for b in s.sampling.prompt_buckets if b >= prompt_len), prompt_len)
    history, window = [], []
    progress = Progress(cfg.steps, desc="sft", initial=start)
    tick = time.perf_counter()
    for step in range(start, cfg.steps):
        idx = batch_indices(len(traces), cfg.batch_size, step, s.seed)
        batch = sft_batch(traces, idx, prompt_len, cfg.max_response_tokens, run.pad_id)
        state, metrics = step_fn(state, jax.device_put(batch, batch_shardings(run.mesh)))
        window.append(_host_metrics(metrics))
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            m = _mean_metrics(window)
            m["perf/step_s"] = (time.perf_counter() - tick) / len(window)
            tick, window = time.perf_counter(), []
            writer.write(step + 1, {"sft/" + k.replace("/", "_"): v for k, v in m.items()})
            history.append({"step": step + 1, **m})
            progress.update(step + 1, loss=m["loss"])
            if not progress.enabled and (step + 1) % (log_every * 5) == 0:
                print(
                    f"sft {step + 1}/{cfg.steps}: loss {m['loss']:.4f} "
                    f"({m['perf/step_s']:.2f} s/step)",
                    flush=True,
                )
            if m["update/skipped"] > 0:
                print(f"sft step {step + 1}: non-finite loss or gradient, update skipped")
        ckpt.maybe_save(
            step + 1,
            _as_dict(state),
            _meta(run, "sft", step + 1),
            force=step + 1 == cfg.steps,
        )
    progress.close()
    ckpt.close()
    return PhaseResult(state.params, cfg.steps, history)


# ----------------------------------------------------------------------------------- GRPO
def rollout(run: Run, sampler: GroupSampler, params, idx, key, ref_fn=None, ref_params=None):
    """Samples G answers for the prompts ``idx`` of the train split and scores them.

    Returns (TrainBatch [B groups], metrics)."""
    s = run.settings
    train = run.splits["train"]
    g = s.sampling.num_samples
    prompts = [train.ids(int(i)) for i in idx]
    tick = time.perf_counter()
    out = jax.block_until_ready(sampler.sample(params, prompts, g, key=key))
    sample_s = time.perf_counter() - tick
    b, t = len(prompts), out.tokens.shape[1]
    targets = np.repeat(train.targets[idx], g)
    rew = compute_rewards(
        run.reward_table, out.tokens, out.lengths, jnp.asarray(targets), run.reward_spec
    )
    rewards_bg = rew.reward.reshape(b, g)
    adv = jax.block_until_ready(group_advantages(rewards_bg, s.grpo.advantage_std))
    reward_s = time.perf_counter() - tick - sample_s
    prompt_np, valid_np = sampler.pad_prompts(prompts)
    mask = jnp.arange(t)[None, :] < out.lengths[:, None]
    batch = TrainBatch(
        prompt=jnp.asarray(prompt_np),
        prompt_valid=jnp.asarray(valid_np),
        resp=out.tokens.reshape(b, g, t),
        resp_mask=mask.reshape(b, g, t),
        old_logp=out.logprobs.reshape(b, g, t),
        ref_logp=jnp.zeros((b, g, t), jnp.float32),
        advantages=adv,
    )
    if ref_fn is not None:
        batch = batch.replace(ref_logp=ref_fn(ref_params, batch))
    valid = np.asarray(rew.valid)
    rating = np.asarray(rew.rating)
    strict = strict_rating_metrics(rating, valid, targets, np.repeat(train.fallbacks[idx], g))
    lengths = np.asarray(out.lengths)
    metrics = {
        "reward/mean": float(jnp.mean(rew.reward)),
        "reward/std": float(jnp.std(rew.reward)),
        "format/valid_frac": float(valid.mean()),
        "batch/mae": strict["mae"],
        "groups/frac_reward_zero_std": float(zero_std_fraction(rewards_bg)),
        "response/length_mean": float(lengths.mean()),
        "response/length_max": float(lengths.max()),
        "response/stopped_frac": float(np.asarray(out.stopped).mean()),
        "rollout/tokens": float(lengths.sum()),
        "time/sample_s": sample_s,
        "time/reward_s": reward_s,
        "perf/rollout_tokens_per_s": float(lengths.sum()) / max(sample_s, 1e-9),
    }
    return batch, metrics


def _minibatches(batch: TrainBatch, n: int, key) -> list[TrainBatch]:
    b = batch.prompt.shape[0]
    order = np.asarray(jax.random.permutation(key, b)) if n > 1 else np.arange(b)
    size = b // n
    return [
        jax.tree.map(lambda x, sel=order[i * size : (i + 1) * size]: x[sel], batch)
        for i in range(n)
    ]


def run_grpo(
    run: Run, params, ckpt_dir: pathlib.Path, writer: MetricWriter, log_every: int = 5, on_eval=None
) -> PhaseResult:
    s = run.settings
    cfg = s.grpo
    optimizer = _optimizer(cfg.optim)
    state = init_train_state(params, optimizer)
    ckpt = Checkpointer(
        ckpt_dir,
        s.checkpoint.save_every,
        s.checkpoint.max_to_keep,
        best_metric="eval/mae",
        best_mode="min",
    )
    start = ckpt.latest_step() or 0
    if start:
        state, _ = _restore(ckpt, start, state)
        print(f"grpo: resumed from step {start} ({ckpt_dir})")
    settings = LossSettings(
        kind="grpo",
        aggregation=cfg.aggregation,
        eps_low=cfg.eps_low,
        eps_high=cfg.eps_high,
        dual_clip_c=cfg.dual_clip_c,
        kl_coef=cfg.kl_coef,
        kl_estimator=cfg.kl_estimator,
        entropy_coef=cfg.entropy_coef,
        temperature=s.sampling.temperature,
    )
    per_mini = cfg.prompts_per_step // cfg.mini_batches
    step_fn = jit_train_step(
        state,
        run.mesh,
        config=run.model_config,
        optimizer=optimizer,
        settings=settings,
        micro_groups=cfg.micro_groups or per_mini,
        dtype=run.dtype,
        remat=s.model.remat,
    )
    ref_fn = ref_params = None
    if cfg.kl_coef > 0:  # the frozen starting policy; skipped entirely when kl_coef == 0
        ref_params = jax.tree.map(jnp.copy, params)
        ref_fn = jax.jit(
            lambda p, b: response_logprobs(
                run.model_config, p, b, s.sampling.temperature, 64, run.dtype
            )[0]
        )
    batch_sh = batch_shardings(run.mesh)
    sampler = make_sampler(run, False, s.sampling.max_new_tokens)
    eval_sampler = make_sampler(run, True, s.sampling.max_new_tokens)
    root = jax.random.key(s.seed)
    history, window = [], []
    timer = PhaseTimer()
    progress = Progress(cfg.steps, desc="grpo", initial=start)
    for step in range(start, cfg.steps):
        tick = time.perf_counter()
        idx = batch_indices(len(run.splits["train"]), cfg.prompts_per_step, step, s.seed)
        step_key = jax.random.fold_in(root, step)
        with timer.phase("rollout"):
            batch, m = rollout(
                run, sampler, state.params, idx, jax.random.fold_in(step_key, 0), ref_fn, ref_params
            )
        with timer.phase("update"):
            updates = []
            for epoch in range(cfg.epochs):
                for mb in _minibatches(
                    batch, cfg.mini_batches, jax.random.fold_in(step_key, 1 + epoch)
                ):
                    state, um = step_fn(state, jax.device_put(mb, batch_sh))
                    updates.append(_host_metrics(um))
        m.update(_mean_metrics(updates))
        m.update(timer.pop())
        m["perf/step_s"] = time.perf_counter() - tick
        if m["update/skipped"] > 0:
            print(f"grpo step {step + 1}: non-finite loss or gradient, update skipped")
        window.append(m)
        done = step + 1
        if done % log_every == 0 or done == cfg.steps:
            mean = _mean_metrics(window)
            window = []
            writer.write(done, {f"grpo/{k}": v for k, v in mean.items()})
            history.append({"step": done, **mean})
            progress.update(done, reward=mean["reward/mean"], mae=mean["batch/mae"])
            if not progress.enabled and done % (log_every * 5) == 0:
                print(
                    f"grpo {done}/{cfg.steps}: reward {mean['reward/mean']:.3f} batch MAE "
                    f"{mean['batch/mae']:.3f} valid {mean['format/valid_frac']:.2f} entropy "
                    f"{mean['policy/entropy']:.3f} zero-std groups "
                    f"{mean['groups/frac_reward_zero_std']:.2f} ({mean['perf/step_s']:.2f} s/step)",
                    flush=True,
                )
        if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps):
            result = evaluate(
                run,
                state.params,
                run.splits["validation"],
                cfg.eval_examples,
                s.eval.batch_size,
                eval_sampler,
            )
            writer.write(
                done, {f"eval/{k}": v for k, v in result.items() if isinstance(v, int | float)}
            )
            history.append({"step": done, **{f"eval/{k}": v for k, v in result.items()}})
            print(
                f"grpo {done}: validation strict MAE {result['mae']:.4f} "
                f"(valid {result['format_valid_rate']:.3f})",
                flush=True,
            )
            ckpt.save_best(done, _as_dict(state), _meta(run, "grpo", done), result["mae"])
            if on_eval is not None:
                on_eval(done, result)
        ckpt.maybe_save(done, _as_dict(state), _meta(run, "grpo", done), force=done == cfg.steps)
    progress.close()
    ckpt.close()
    return PhaseResult(state.params, cfg.steps, history)
