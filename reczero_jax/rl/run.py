"""The training modes: a mode is a list of phases (``settings.MODE_PHASES``), run in order.

    sft    = [sft, eval]          grpo = [grpo, eval]
    recone = [sft, eval, grpo, eval]   eval = [eval]

How a run flows, top to bottom in :func:`run`:

1. data: ratings, splits and leak-free examples (``data.load_data``);
2. model side: ``engine.build_engine`` (mesh, tokenizer, model config; a scratch model's
   tokenizer is trained on the data), the prompt sets, the reward function;
3. the baselines of the same test examples;
4. each phase: :func:`reczero_jax.engine.plan_phase` decides, for the phase's checkpoint
   directory, where its weights come from and whether it resumes; then the phase runs
   (``rl.sft.run_sft``, ``rl.grpo.run_grpo`` or ``rl.evaluation.evaluate``) and the
   next phase starts from its last checkpoint;
5. the final weights as a Hugging Face folder, the table, ``workdir/results.json``.

The workdir may be local or remote (``gs://``): every path under it is an ``epath.Path``
(:mod:`reczero_jax.paths`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from reczero_jax import huge_pages, multihost
from reczero_jax.baselines.evaluate import baseline_results
from reczero_jax.checkpointing import Checkpointer
from reczero_jax.data.loader import LoadedData, load_data
from reczero_jax.data.prompt_set import PromptSet, tokenizer_corpus
from reczero_jax.engine import Engine, build_engine, device_summary, plan_phase
from reczero_jax.observe import MetricWriter
from reczero_jax.observe.logs import log, log_to_workdir
from reczero_jax.paths import as_path
from reczero_jax.rewards import ByteTable, RewardSpec, compute_rewards
from reczero_jax.rl import traces
from reczero_jax.rl.evaluation import evaluate, write_predictions
from reczero_jax.rl.grpo import grpo_objective, run_grpo
from reczero_jax.rl.objectives import SFTObjective, training_forward
from reczero_jax.rl.phase import PhaseRuntime
from reczero_jax.rl.preemption import Preempted, PreemptionWatch
from reczero_jax.rl.sft import run_sft
from reczero_jax.run_config import write_run_config
from reczero_jax.settings import Settings

TRAINING_PHASES = ("sft", "grpo")


def reward_function(s: Settings, engine: Engine):
    """``reward_fn(tokens [..., T], lengths [...], targets [...]) -> RewardOut``: the
    ``grpo.reward_preset`` on the answer format of ``data.prompt.variant`` (the reward
    grammar's formats are named like the prompt variants)."""
    spec = RewardSpec(s.data.prompt.variant, s.grpo.reward_preset)
    return functools.partial(compute_rewards, ByteTable.build(engine.token_bytes), spec=spec)


def scratch_corpus(data: LoadedData, s: Settings) -> list[str]:
    """Texts a scratch model's tokenizer is trained on (with the teacher's answers: the
    synthetic world's, or on real data the review teacher's, so that their tags and words
    are single tokens)."""
    variant = s.data.prompt.variant
    answer = traces.teacher_answer(data.world, 0.0, variant)
    extra = lambda e, rng: answer(e, rng, 0)  # noqa: E731
    return tokenizer_corpus(data.examples["train"], variant, s.seed, extra)


def _traces(s: Settings, data: LoadedData, engine: Engine, train: PromptSet, initial, reward_fn):
    """The cold start's traces (``sft.traces``) and their statistics; ``initial()`` gives
    the weights that write the self-generated traces."""
    eos = engine.eos_ids[0]
    if s.sft.traces == "teacher":
        # The synthetic world's teacher reads its latents; on real data (no world) the
        # review teacher states what each prompt shows. Both rate by the midpoint of the
        # two averages with data.synthetic.teacher_noise stars of noise.
        noise = s.data.synthetic.teacher_noise
        found, stats = traces.teacher_traces(
            train, data.world, s.sft.num_traces, s.seed, noise, eos, s.sft.rewrite_wrong
        )
        stats["teacher"] = "synthetic" if data.world is not None else "review"
    elif s.sft.traces == "file":
        found, stats = traces.file_traces(s.sft.traces_path, train, eos)
    else:
        sampler = engine.sampler(greedy=False, max_new_tokens=s.sft.max_response_tokens)
        found, stats = traces.self_traces(
            sampler, initial(), train, reward_fn, s.sft.num_traces, s.seed, s.eval.batch_size
        )
    cut = sum(len(r) > s.sft.max_response_tokens for _, r in found)
    if cut:
        log.info("sft: %d of %d traces are cut at sft.max_response_tokens=%d", cut, len(found),
                 s.sft.max_response_tokens)  # fmt: skip
    return found, {"num": len(found), "cut_at_max_response_tokens": cut, **stats}


def _evaluate_phase(s: Settings, engine: Engine, plan, test, reward_fn, writer, name) -> dict:
    """Greedy strict evaluation of the weights ``plan`` points to, on ``test``."""
    params = engine.weights(plan.initial)
    log.info("eval of %s weights (%s) on %d %s examples", name, plan.initial, len(test),
             s.eval.split)  # fmt: skip
    sampler = engine.sampler(greedy=True)
    result = evaluate(sampler, params, test, reward_fn, s.eval.batch_size, 3, predictions=True,
                      desc=f"eval {name}")  # fmt: skip
    records = result.pop("predictions")
    if multihost.is_primary():
        write_predictions(s.workdir, name, records)
    scalars = {f"final/{name}_{k}": v for k, v in result.items() if isinstance(v, int | float)}
    writer.write(0, scalars)
    return result


def _train_phase(phase, s, engine, data, splits, reward_fn, plan, own, writer, meta, watch):
    """Runs training phase ``phase`` from ``plan``; returns (PhaseResult, entries for
    results.json). Raises Preempted when ``watch`` stops it."""
    cfg = engine.model_config
    resumed = "" if plan.resume_step is None else f", resuming step {plan.resume_step}"
    log.info("%s: weights from %s%s", phase, plan.initial, resumed)
    # The phase's initial weights are read only where used: to start (not on a resume,
    # which reads its own checkpoint into their layout), as GRPO's KL reference, and by
    # the self-written traces (which must be the same on a resume).
    initial = functools.cache(lambda: engine.weights(plan.initial))
    params = initial() if plan.resume_step is None else engine.abstract_weights()
    ckpt = Checkpointer(
        own,
        save_every=s.checkpoint.save_every,
        keep_latest=s.checkpoint.max_to_keep,
        best_metric="eval/mae" if phase == "grpo" else None,
        async_save=s.checkpoint.async_save,
    )
    rt = PhaseRuntime(engine.mesh, ckpt, plan.resume_step, writer, s.seed, meta, watch)
    if phase == "sft":
        found, stats = _traces(s, data, engine, splits["train"], initial, reward_fn)
        objective = SFTObjective(training_forward(s.model, cfg, 1.0))
        out = run_sft(params, found, s.sft, objective=objective, pad_id=engine.pad_id,
                      buckets=s.sampling.prompt_buckets, rt=rt)  # fmt: skip
        return out, {"sft_traces": stats}
    ref = jax.tree.map(jnp.copy, initial()) if s.grpo.kl_coef > 0 else None  # KL reference
    validation = splits["validation"].sample(s.grpo.eval_examples, s.seed)
    out = run_grpo(
        params, ref, s.grpo, objective=grpo_objective(s, cfg), train=splits["train"],
        validation=validation if len(validation) else None,
        sampler=engine.sampler(greedy=False), eval_sampler=engine.sampler(greedy=True),
        reward_fn=reward_fn, eval_batch_size=s.eval.batch_size, rt=rt,
    )  # fmt: skip
    return out, {}


def _log_table(results: dict) -> None:
    lines = [f"{'':<16}{'MAE':>8}{'RMSE':>8}{'valid':>8}"]
    for name in ("teacher", "bayes_optimal", "sft", "grpo", "eval"):
        r = results.get(name)
        if isinstance(r, dict) and "mae" in r:
            valid = r.get("format_valid_rate")
            lines.append(
                f"{name:<16}{r['mae']:>8.4f}{r['rmse']:>8.4f}"
                f"{'' if valid is None else f'{valid:>8.3f}'}"
            )
    for name, r in results.get("baselines", {}).items():
        lines.append(f"  {name:<14}{r['mae']:>8.4f}{r['rmse']:>8.4f}")
    if "baselines_note" in results:
        lines.append(f"  ({results['baselines_note']})")
    log.info("results (strict test metrics):\n%s", "\n".join(lines))


def run(settings: Settings) -> dict:
    """Runs the mode's phases; writes and returns ``workdir/results.json``'s dict. The
    workdir also gets the resolved config (``config.json``) and the run's log
    (``log.txt``), from process 0."""
    t0 = time.perf_counter()
    workdir = as_path(settings.workdir)
    # --- data (read lazily from a prepared dataset when data.tfds_data_dir is set); a data
    # error ends the run before its workdir exists
    data = load_data(settings.data)
    workdir.mkdir(parents=True, exist_ok=True)
    if not multihost.is_primary():
        return _run(settings, workdir, data, t0)
    write_run_config(workdir, settings)
    with log_to_workdir(workdir):
        return _run(settings, workdir, data, t0)


def _run(s: Settings, workdir: epath.Path, data: LoadedData, t0: float) -> dict:
    # --- model side: mesh, tokenizer, model config; prompts; rewards on token ids
    engine = build_engine(s, corpus=lambda: scratch_corpus(data, s))
    cfg = engine.model_config
    log.info(
        "%s: %s parameters on %s", s.mode, f"{cfg.num_params():,}", device_summary(engine.mesh)
    )
    log.info("host memory: glibc malloc on transparent huge pages %s", huge_pages.status())
    splits = {
        name: PromptSet(examples, engine.tokenizer, s.data.prompt)
        for name, examples in data.examples.items()
    }
    reward_fn = reward_function(s, engine)

    # --- baselines on the same test examples
    results: dict = {"mode": s.mode, **baseline_results(data, s.baselines, s.seed, s.data.source)}
    test = splits[s.eval.split].sample(s.eval.num_examples, s.seed)
    writer = MetricWriter(workdir)
    meta = {
        "seed": s.seed,
        "rng_root_key": np.asarray(jax.random.key_data(jax.random.key(s.seed))).tolist(),
        "config": dataclasses.asdict(s),
    }
    timings: dict[str, float] = {}

    # --- the phases (a SIGTERM or TPU preemption notice stops them at a step boundary)
    done: list[epath.Path] = []  # checkpoint directories of the training phases so far
    last = "eval"  # the name an evaluation reports under: the phase that made the weights
    with PreemptionWatch() as watch:
        for phase in s.phases:
            tick = time.perf_counter()
            own = workdir / "checkpoints" / phase if phase in TRAINING_PHASES else None
            plan = plan_phase(own, done, s.checkpoint.resume_from, s.model.hf_dir)
            if phase == "eval":
                results[last] = _evaluate_phase(s, engine, plan, test, reward_fn, writer, last)
            elif (plan.resume_step or 0) >= getattr(s, phase).steps > 0:
                log.info("%s: complete (%s, step %d), not trained again; another "
                         "workdir trains it anew", phase, own, plan.resume_step)  # fmt: skip
            else:
                try:
                    out, extra = _train_phase(
                        phase, s, engine, data, splits, reward_fn, plan, own, writer, meta, watch
                    )
                except Preempted as e:
                    writer.close()
                    log.warning("%s; relaunch the same command to resume", e)
                    return {"mode": s.mode, "preempted": {"phase": e.phase, "step": e.step}}
                results.update(extra)
                evals = [h for h in out.history if "eval/mae" in h]
                results[f"{phase}_history"] = evals or out.history[-1:]
                results.setdefault("compiles", {})[phase] = out.compiles
                if out.compiles["after_first_step"]:
                    c = out.compiles
                    log.info("%s: %d XLA compilations after the first step (%d sets of prompt "
                             "buckets)", phase, c["after_first_step"], c["signatures"])  # fmt: skip
            if own is not None:
                done.append(own)
                last = phase
            name = f"eval_{last}_s" if phase == "eval" else f"{phase}_s"
            timings[name] = time.perf_counter() - tick

    # --- outputs
    results["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    results["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    if s.checkpoint.export_hf and done:
        from reczero_jax.hf.checkpoint import export_hf

        final = engine.weights(plan_phase(None, done, "", "").initial)
        export_hf(final, cfg, workdir / "hf_export", tokenizer_dir=engine.tokenizer_dir)
    writer.close()
    _log_table(results)
    if multihost.is_primary():  # the other processes print nothing and write no run file
        out_file = workdir / "results.json"
        out_file.write_text(json.dumps(results, indent=2, default=float) + "\n")
        log.info("wrote %s", out_file)
    return results
