"""Modes 'sft', 'grpo' (RecZero), 'recone' (SFT then GRPO) and 'eval'.

Every run writes ``workdir/results.json``; metrics go to ``workdir/metrics.jsonl`` and
``workdir/tensorboard``; checkpoints to ``workdir/checkpoints/{sft,grpo}``. Where the
weights start from is decided once (:func:`reczero_jax.checkpointing.resolve_start`): a
checkpoint in the workdir > ``checkpoint.resume_from`` > ``model.hf_dir`` > scratch.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax

from reczero_jax.checkpointing import checkpoint_steps, resolve_start, restore_checkpoint
from reczero_jax.engine import device_summary
from reczero_jax.observe import MetricWriter
from reczero_jax.rl import loops, traces
from reczero_jax.rl.evaluation import evaluate
from reczero_jax.rl.setup import Run, initial_params, prepare_run
from reczero_jax.settings import Settings


def _baselines(run: Run) -> dict:
    """The classical baselines, and for the synthetic world its Bayes floor and teacher,
    on the test split (the same metric module as the LLM evaluation)."""
    from reczero_jax.data.synthetic import bayes_floor
    from reczero_jax.modes.baselines import evaluate_baselines

    out = {
        "baselines": evaluate_baselines(run.data, run.settings.baselines, run.settings.seed),
        "data": {"source": run.settings.data.source, **run.data.counts()},
    }
    if run.data.world is not None:
        out["bayes_optimal"] = bayes_floor(run.data.world, run.data.examples["test"])
        out["teacher"] = out["baselines"]["teacher"]
    return out


def _start_params(run: Run):
    """Initial weights by the resume precedence (a workdir checkpoint is handled by the
    phase loops themselves, which resume their own step)."""
    s = run.settings
    start = resolve_start(
        run.workdir / "checkpoints" / "none", s.checkpoint.resume_from, s.model.hf_dir
    )
    params = initial_params(run, jax.random.key(s.seed))
    if start.kind == "resume_from":  # the weights only; the optimizer starts afresh
        restored, _ = restore_checkpoint(start.path, start.step, {"params": params}, partial=True)
        params = restored["params"]
    print(f"weights: {start.kind}{'' if start.path is None else f' ({start.path})'}")
    return params


def _print_table(results: dict) -> None:
    print(f"{'':<16}{'MAE':>8}{'RMSE':>8}{'valid':>8}")
    for name in ("teacher", "bayes_optimal", "sft", "grpo", "eval"):
        r = results.get(name)
        if isinstance(r, dict) and "mae" in r:
            valid = r.get("format_valid_rate")
            print(
                f"{name:<16}{r['mae']:>8.4f}{r['rmse']:>8.4f}"
                f"{'' if valid is None else f'{valid:>8.3f}'}"
            )
    for name, r in results.get("baselines", {}).items():
        print(f"  {name:<14}{r['mae']:>8.4f}{r['rmse']:>8.4f}")


def run(settings: Settings) -> dict:
    t0 = time.perf_counter()
    run_ = prepare_run(settings)
    s = settings
    workdir = run_.workdir
    print(f"{s.mode}: {run_.model_config.num_params():,} parameters on {device_summary(run_.mesh)}")
    results: dict = {"mode": s.mode}
    base = _baselines(run_)
    results["baselines"] = base["baselines"]
    for key in ("teacher", "bayes_optimal"):
        if key in base:
            results[key] = base[key]
    results["data"] = base.get("data", {})
    test = run_.splits[s.eval.split]
    writer = MetricWriter(workdir)
    ckpts = workdir / "checkpoints"
    params = _start_params(run_)
    timings = {}

    def final_eval(name, p):
        tick = time.perf_counter()
        results[name] = evaluate(
            run_, p, test, s.eval.num_examples, s.eval.batch_size, keep_texts=3
        )
        timings[f"eval_{name}_s"] = time.perf_counter() - tick
        writer.write(
            0,
            {
                f"final/{name}_{k}": v
                for k, v in results[name].items()
                if isinstance(v, int | float)
            },
        )

    if s.mode in ("sft", "recone"):
        grpo_started = bool(checkpoint_steps(ckpts / "grpo"))
        if not grpo_started:
            tick = time.perf_counter()
            if s.sft.traces == "teacher":
                trace_set, stats = traces.teacher_traces(run_, s.sft.num_traces, s.seed), {}
            elif s.sft.traces == "file":
                trace_set, stats = traces.file_traces(run_, s.sft.traces_path)
            else:
                trace_set, stats = traces.self_traces(
                    run_, params, s.sft.num_traces, s.seed, s.eval.batch_size
                )
            results["sft_traces"] = {"num": len(trace_set), **stats}
            sft = loops.run_sft(run_, params, trace_set, ckpts / "sft", writer)
            params = sft.params
            timings["sft_s"] = time.perf_counter() - tick
            results["sft_history"] = sft.history[-1:] if sft.history else []
        if s.mode == "sft" or not grpo_started:
            final_eval("sft", params)
    if s.mode in ("grpo", "recone"):
        tick = time.perf_counter()
        grpo = loops.run_grpo(run_, params, ckpts / "grpo", writer)
        params = grpo.params
        timings["grpo_s"] = time.perf_counter() - tick
        results["grpo_history"] = [h for h in grpo.history if "eval/mae" in h]
        final_eval("grpo", params)
    if s.mode == "eval":
        final_eval("eval", params)
    results["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    results["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    if s.checkpoint.export_hf and s.mode != "eval":
        from reczero_jax.hf.checkpoint import export_hf

        export_hf(
            params, run_.model_config, workdir / "hf_export", tokenizer_dir=run_.tokenizer_dir
        )
    writer.close()
    _print_table(results)
    out = pathlib.Path(workdir) / "results.json"
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {out}")
    return results
