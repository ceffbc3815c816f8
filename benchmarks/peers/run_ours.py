"""This project's GRPO step, driven as ``reczero_jax.rl.grpo.run_grpo`` drives it.

Built by the real builder (``reczero_jax.engine.build_engine`` on the shared checkpoint
folder, ``Engine.weights`` / ``Engine.sampler``), then per step the body of
``run_grpo``'s loop: ``rl.grpo.collect_groups`` of one ``rl.grpo.rollout`` (the group
sampler: each prompt prefilled once for its G answers; the reward on the token ids in
jnp; group advantages) and one jitted ``rl.step`` train step with
``rl.grpo.grpo_objective`` (the grouped training forward: each prompt processed once per
group). Only checkpointing, logging and validation are left out. EOS and stop strings
are disabled, so every answer has exactly T tokens. The process starts as
``python -m reczero_jax.main`` does: ``reczero_jax.huge_pages`` restarts it once with
glibc's malloc on transparent huge pages.

    python benchmarks/peers/run_ours.py --spec SPEC.json --out RESULT.json
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import peer_common  # noqa: E402


def settings_for(spec: dict):
    """The run Settings of the benchmark: the shared checkpoint, sampling at temperature 1
    with no truncation and no stop strings, GRPO without KL / entropy terms."""
    from reczero_jax.settings import default_config, load_settings

    shape = spec["shape"]
    c = default_config()
    c.mode = "grpo"
    c.seed = spec["seed"]
    c.workdir = str(pathlib.Path(spec["model_dir"]).parent / "ours_workdir")  # nothing written
    c.model.hf_dir = spec["model_dir"]
    c.model.tokenizer_dir = spec["tokenizer_dir"]
    c.model.dtype = "float32"
    c.model.param_dtype = "float32"
    # Nothing recomputed (the tiny model's activations and [rows, T, 4096] logits are
    # small) and its 4 layers unrolled in the training forward (README: benchmarks).
    c.model.remat = "none"
    c.model.logits_remat = False
    c.model.scan_layers = False
    c.mesh.shape = (1, -1, 1)
    c.sampling.max_new_tokens = shape["new_tokens"]
    c.sampling.method = "sample"
    c.sampling.temperature = 1.0
    c.sampling.top_k = 0
    c.sampling.top_p = 1.0
    c.sampling.stop_strings = ()
    c.sampling.prompt_buckets = (shape["prompt_len"],)
    c.grpo.num_generations = shape["generations"]
    c.grpo.prompts_per_step = shape["prompts"]
    c.grpo.steps = spec["warmup"] + spec["steps"]
    c.grpo.micro_groups = 0  # the whole mini-batch in one micro-batch
    c.grpo.aggregation = "seq-mean-token-mean"  # TRL's loss_type="grpo", tunix's default
    c.grpo.eps_low = c.grpo.eps_high = spec["epsilon"]
    c.grpo.dual_clip_c = 0.0  # off, like the peers
    c.grpo.kl_coef = 0.0
    c.grpo.entropy_coef = 0.0
    c.grpo.eval_every = 0
    c.grpo.optim.learning_rate = spec["learning_rate"]
    c.grpo.optim.weight_decay = 0.0
    c.grpo.optim.grad_clip = spec["grad_clip"]
    return load_settings(c)


def make_reward_fn(reward: dict):
    """``reward_fn(tokens [B, G, T], lengths [B, G], targets) -> RewardOut`` of
    ``peer_common.reward_of_ids``, vectorised in jnp on the token ids (jitted)."""
    import jax
    import jax.numpy as jnp

    from reczero_jax.rewards.device import RewardOut

    first, mod, res, target = (reward[k] for k in ("first_word", "modulus", "residue", "target"))

    @jax.jit
    def fn(tokens, lengths, targets):
        t = tokens.shape[-1]
        real = jnp.arange(t) < lengths[..., None]
        hit = real & (tokens >= first) & (tokens % mod == res)
        r = -jnp.abs(hit.sum(-1).astype(jnp.float32) - target)
        ones = jnp.ones(r.shape, bool)
        return RewardOut(
            valid=ones, rating=jnp.zeros_like(r), reward=r, overflow=~ones,
            reason=jnp.zeros(r.shape, jnp.int32),
        )  # fmt: skip

    return fn


def main() -> int:
    args = peer_common.parse_args(__doc__.split("\n\n")[0])
    from reczero_jax.huge_pages import reexec_with_huge_pages, status

    reexec_with_huge_pages()  # as ``python -m reczero_jax.main`` starts (restarts once)
    spec = peer_common.load_spec(args.spec)

    import jax
    import numpy as np

    from reczero_jax.engine import WeightSource, build_engine
    from reczero_jax.model.decoder import compute_logits
    from reczero_jax.observe import PhaseTimer
    from reczero_jax.rl.grpo import collect_groups, grpo_objective, minibatches, rollout
    from reczero_jax.rl.phase import host_metrics
    from reczero_jax.rl.step import batch_sharding, init_train_state, jit_train_step, make_optimizer

    shape = spec["shape"]
    b, g, t = shape["prompts"], shape["generations"], shape["new_tokens"]
    settings = settings_for(spec)
    cfg = settings.grpo
    engine = build_engine(settings)
    # EOS disabled: every answer runs to max_new_tokens (the one change to the builder's
    # sampler; the tokenizer's EOS id is otherwise an end-of-answer id)
    engine = dataclasses.replace(engine, eos_ids=())
    params = engine.weights(WeightSource("hf", pathlib.Path(spec["model_dir"])))

    probe = np.load(spec["parity"]["ids"])
    logits = compute_logits(engine.model_config, params, probe)
    diff = peer_common.parity_diff(logits, spec)
    peer_common.check_parity("ours", diff)

    sampler = engine.sampler()
    reward_fn = make_reward_fn(spec["reward"])
    objective = grpo_objective(settings, engine.model_config)
    state = init_train_state(params, make_optimizer(cfg.optim))
    step_fn = jit_train_step(state, engine.mesh, objective, cfg.micro_groups or b)
    prompts = spec["prompt_ids"]
    targets = np.zeros(b, np.float32)
    root = jax.random.key(settings.seed)
    times = peer_common.StepTimes()
    timer = PhaseTimer()
    checked_reward = False
    for step in range(spec["warmup"] + spec["steps"]):
        times.begin()
        step_key = jax.random.fold_in(root, step)
        rounds = []

        def draw(r, params=state.params, step_key=step_key, rounds=rounds):
            key = jax.random.fold_in(step_key, r)
            rounds.append(rollout(sampler, params, prompts, targets, targets, reward_fn, cfg, key))
            return rounds[-1]

        with timer.phase("rollout"):
            batch, _ = collect_groups(draw, cfg)
        with timer.phase("update"):
            for mb in minibatches(batch, cfg.mini_batches, jax.random.fold_in(step_key, 1)):
                state, um = step_fn(state, jax.device_put(mb, batch_sharding(engine.mesh)))
                um = host_metrics(um)
        r = rounds[0]
        for phase, seconds in timer.pop().items():
            times.add(phase.removeprefix("time/").removesuffix("_s"), seconds)
        times.add("generate", r.metrics["time/sample_s"])
        times.end()
        if not checked_reward:  # the jnp reward == the peers' Python reward, answer by answer
            resp = np.asarray(r.batch.resp).reshape(b * g, t)
            want = np.array([peer_common.reward_of_ids(x, spec["reward"]) for x in resp])
            if not np.array_equal(want.reshape(b, g), r.rewards):
                raise SystemExit("ours: the jnp reward differs from the Python reward")
            if not np.asarray(r.batch.resp_mask).all():
                raise SystemExit("ours: an answer ended before max_new_tokens")
            checked_reward = True
        if not np.isfinite(um["loss"]) or um["update/skipped"]:
            raise SystemExit(f"ours: step {step} skipped its update (loss {um['loss']})")
    summary = times.summary(spec["warmup"])
    result = {
        "system": "ours",
        "parity_max_abs_diff": diff,
        "compiles": sampler.compiles,
        "rollout_tokens": b * g * t,
        # the settings that differ from the project's defaults (README: benchmarks)
        "settings": {
            "model.remat": settings.model.remat,
            "model.logits_remat": settings.model.logits_remat,
            "model.scan_layers": settings.model.scan_layers,
            "huge_pages": status(),
        },
        # the sampler's decode loop as the project's defaults decide it on this machine
        "sampler": {
            "unroll_layers": sampler.spec.unroll_layers,
            "cache_phases": sampler.spec.cache_phases,
        },
        **summary,
    }
    if "generate_s" in summary:
        result["rollout_tokens_per_s"] = round(b * g * t / summary["generate_s"], 1)
    result["versions"] = {"jax": jax.__version__, "device": jax.devices()[0].device_kind}
    peer_common.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
