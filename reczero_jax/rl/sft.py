"""RecOne's cold start: supervised fine-tuning on (prompt, response) traces.

Each loop step: the batch (``batch_indices`` of seed and step) -> one train step with the
cross-entropy objective -> metrics -> checkpoint.
"""

from __future__ import annotations

import jax
import numpy as np

from reczero_jax.data.prompt_set import batch_indices
from reczero_jax.multihost import global_array, local_rows
from reczero_jax.observe.compiles import CompileLog
from reczero_jax.observe.logs import log
from reczero_jax.rl.objectives import SFTBatch, SFTObjective
from reczero_jax.rl.phase import (
    PhaseResult,
    PhaseRuntime,
    StepLog,
    checkpoint_meta,
    host_metrics,
    start_state,
    stop_if_preempted,
)
from reczero_jax.rl.step import batch_sharding, jit_train_step, make_optimizer
from reczero_jax.settings import SFTSettings


def sft_batch(traces, idx, prompt_len: int, resp_len: int, pad_id: int) -> SFTBatch:
    """B traces as groups of one (numpy): prompts left-padded (cut from the left to
    ``prompt_len``), responses right-padded and cut at ``resp_len``."""
    b = len(idx)
    prompt = np.full((b, prompt_len), pad_id, np.int32)
    prompt_valid = np.zeros((b, prompt_len), bool)
    resp = np.full((b, 1, resp_len), pad_id, np.int32)
    mask = np.zeros((b, 1, resp_len), bool)
    for row, i in enumerate(idx):
        p, r = traces[i]
        p, r = p[-prompt_len:], r[:resp_len]
        prompt[row, prompt_len - len(p) :] = p
        prompt_valid[row, prompt_len - len(p) :] = True
        resp[row, 0, : len(r)] = r
        mask[row, 0, : len(r)] = True
    return SFTBatch(prompt, prompt_valid, resp, mask)


def run_sft(
    params,
    traces,
    cfg: SFTSettings,
    *,
    objective: SFTObjective,
    pad_id: int,
    buckets: tuple[int, ...],
    rt: PhaseRuntime,
    log_every: int = 10,
) -> PhaseResult:
    """``cfg.steps`` steps of ``cfg.batch_size`` traces from ``params`` (or from the
    phase's checkpoint at ``rt.resume_step``, read into the layout of ``params``, which
    may then be abstract); ``rt.watch`` may stop it at a step boundary
    (:mod:`reczero_jax.rl.preemption`). Prompts are padded to the smallest of
    ``buckets`` that holds the longest trace prompt."""
    mesh, ckpt, writer, seed, meta = rt.mesh, rt.ckpt, rt.writer, rt.seed, rt.meta
    tx = make_optimizer(cfg.optim)
    state, start = start_state(params, tx, ckpt, rt.resume_step, "sft")
    step_fn = jit_train_step(state, mesh, objective, cfg.micro_groups or cfg.batch_size)
    sharding = batch_sharding(mesh)
    rows = local_rows(sharding, cfg.batch_size)  # the batch rows this process builds
    longest = max(len(p) for p, _ in traces)
    prompt_len = next((b for b in buckets if b >= longest), longest)
    step_log = StepLog(
        writer, "sft", cfg.steps, start, log_every,
        line=lambda m: f"loss {m['loss']:.4f} ({m['perf/step_s']:.2f} s/step)",
        shown=("loss",),
    )  # fmt: skip
    compiles = CompileLog("sft")
    if start < cfg.steps:
        log.info("sft: compiling the train step (%d traces per step, prompt bucket %d, responses "
                 "of %d tokens)", cfg.batch_size, prompt_len, cfg.max_response_tokens)  # fmt: skip
    for step in range(start, cfg.steps):
        with compiles.step(prompt_len, step + 1) as counted:  # one shape for the phase
            idx = batch_indices(len(traces), cfg.batch_size, step, seed)[rows]  # this process's
            mine = sft_batch(traces, idx, prompt_len, cfg.max_response_tokens, pad_id)
            batch = jax.tree.map(lambda x: global_array(sharding, x, cfg.batch_size), mine)
            state, metrics = step_fn(state, batch)
            metrics = host_metrics(metrics)
        step_log.add(step + 1, {**metrics, **counted})
        last = step + 1 == cfg.steps
        ckpt.save(step + 1, state.as_dict(), checkpoint_meta(meta, "sft", step + 1), force=last)
        stop_if_preempted(rt.watch, ckpt, step + 1, cfg.steps, state, meta, "sft")
    step_log.close()
    ckpt.close()
    return PhaseResult(state.params, step_log.history, compiles.summary())
