"""Greedy evaluation with strict metrics.

Every prompt of the split (or the first ``num_examples``) is answered greedily; the
reward module parses each answer on device. Reported (see :mod:`reczero_jax.metrics`):

* ``mae`` / ``rmse``: STRICT: an answer without a valid rating falls back to the prompt's
  user average rating, and counts;
* ``lenient_mae`` / ``lenient_rmse``: the reference code's figure (an unreadable answer
  counts as a perfect prediction), under that name only;
* ``parse_failure_rate``, ``format_valid_rate``, ``mean_response_tokens``.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from reczero_jax.metrics import lenient_rating_metrics, strict_rating_metrics
from reczero_jax.rewards import compute_rewards
from reczero_jax.rl.setup import PromptSet, Run, make_sampler
from reczero_jax.sampling.sampler import GroupSampler


def evaluate(
    run: Run,
    params,
    prompt_set: PromptSet,
    num_examples: int = 0,
    batch_size: int = 64,
    sampler: GroupSampler | None = None,
    keep_texts: int = 0,
) -> dict:
    """Strict metrics of greedy answers on ``prompt_set`` (see the module docstring)."""
    n = len(prompt_set) if num_examples <= 0 else min(num_examples, len(prompt_set))
    sampler = sampler or make_sampler(run, True, run.settings.sampling.max_new_tokens)
    start = time.perf_counter()
    valid, rating, lengths = [], [], []
    texts = []
    for lo in range(0, n, batch_size):
        idx = list(range(lo, min(lo + batch_size, n)))
        pad = batch_size - len(idx)
        prompts = [prompt_set.ids(i) for i in idx] + [prompt_set.ids(idx[0])] * pad
        out = sampler.sample(params, prompts, 1, key=jax.random.key(0))
        targets = prompt_set.targets[idx + [idx[0]] * pad]
        rew = compute_rewards(run.reward_table, out.tokens, out.lengths, targets, run.reward_spec)
        valid.append(np.asarray(rew.valid)[: len(idx)])
        rating.append(np.asarray(rew.rating)[: len(idx)])
        lengths.append(np.asarray(out.lengths)[: len(idx)])
        if len(texts) < keep_texts:
            tokens = np.asarray(out.tokens)
            for r in range(min(len(idx), keep_texts - len(texts))):
                texts.append(run.tokenizer.decode(tokens[r, : int(out.lengths[r])].tolist()))
    valid = np.concatenate(valid)
    rating = np.concatenate(rating)
    lengths = np.concatenate(lengths)
    target = prompt_set.targets[:n]
    strict = strict_rating_metrics(rating, valid, target, prompt_set.fallbacks[:n])
    lenient = lenient_rating_metrics(rating, valid, target)
    result = {
        "mae": strict["mae"],
        "rmse": strict["rmse"],
        "lenient_mae": lenient["lenient_mae"],
        "lenient_rmse": lenient["lenient_rmse"],
        "parse_failure_rate": float(np.mean(~valid)),
        "format_valid_rate": float(np.mean(valid)),
        "mean_response_tokens": float(np.mean(lengths)),
        "num_examples": int(n),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if keep_texts:
        result["samples"] = texts
    return result
