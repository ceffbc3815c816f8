"""Greedy evaluation with strict metrics.

Every prompt of a :class:`~reczero_jax.data.prompt_set.PromptSet` is answered greedily and
the answers are parsed on the device by the reward function. Reported (see
:mod:`reczero_jax.metrics`):

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

from reczero_jax.data.prompt_set import PromptSet
from reczero_jax.metrics import lenient_rating_metrics, strict_rating_metrics
from reczero_jax.multihost import to_host
from reczero_jax.sampling.sampler import GroupSampler


def evaluate(
    sampler: GroupSampler,
    params,
    prompts: PromptSet,
    reward_fn,
    batch_size: int,
    keep_texts: int = 0,
) -> dict:
    """Strict metrics of ``sampler``'s answers (greedy for evaluation) to every prompt.

    ``reward_fn(tokens [B, 1, T], lengths [B, 1], targets [B, 1]) -> RewardOut`` parses
    the answers. The last batch is padded with repeats of its first prompt so that every
    batch has one shape (one compilation). ``keep_texts`` answers are decoded and kept
    under ``samples``.
    """
    n = len(prompts)
    start = time.perf_counter()
    valid, rating, lengths, texts = [], [], [], []
    for lo in range(0, n, batch_size):
        idx = list(range(lo, min(lo + batch_size, n)))
        idx_padded = idx + [idx[0]] * (batch_size - len(idx))
        out = sampler.sample(params, prompts.rows(idx_padded), 1, key=jax.random.key(0))
        rew = reward_fn(out.tokens, out.lengths, prompts.targets_of(idx_padded)[:, None])
        real = len(idx)
        valid.append(to_host(rew.valid)[:real, 0])
        rating.append(to_host(rew.rating)[:real, 0])
        lengths.append(to_host(out.lengths)[:real, 0])
        if len(texts) < keep_texts:
            tokens = to_host(out.tokens)
            for r in range(min(real, keep_texts - len(texts))):
                answer = tokens[r, 0, : int(lengths[-1][r])].tolist()
                texts.append(prompts.tokenizer.decode(answer))
    valid, rating, lengths = map(np.concatenate, (valid, rating, lengths))
    targets = prompts.targets_of(range(n))  # every example evaluated: read already
    strict = strict_rating_metrics(rating, valid, targets, prompts.fallbacks_of(range(n)))
    lenient = lenient_rating_metrics(rating, valid, targets)
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
