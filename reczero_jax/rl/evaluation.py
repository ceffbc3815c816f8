"""Greedy evaluation with strict metrics.

Every prompt of a :class:`~reczero_jax.data.prompt_set.PromptSet` is answered greedily and
the answers are parsed on the device by the reward function. Reported (see
:mod:`reczero_jax.metrics`):

* ``mae`` / ``rmse``: STRICT: an answer without a valid rating falls back to the prompt's
  user average rating, and counts;
* ``lenient_mae`` / ``lenient_rmse``: the reference code's figure (an unreadable answer
  counts as a perfect prediction), under that name only;
* ``parse_failure_rate``, ``format_valid_rate``, ``mean_response_tokens``.

With ``predictions=True`` the result also holds ``predictions``: one record per example
(:func:`prediction_records`), what ``workdir/predictions.jsonl`` keeps.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from reczero_jax.data.prompt_set import PromptSet
from reczero_jax.metrics import lenient_rating_metrics, strict_rating_metrics
from reczero_jax.multihost import to_host
from reczero_jax.observe import Progress
from reczero_jax.paths import as_path
from reczero_jax.rewards.reference import sections
from reczero_jax.sampling.sampler import GroupSampler


def evaluate(
    sampler: GroupSampler,
    params,
    prompts: PromptSet,
    reward_fn,
    batch_size: int,
    keep_texts: int = 0,
    predictions: bool = False,
    desc: str = "eval",
) -> dict:
    """Strict metrics of ``sampler``'s answers (greedy for evaluation) to every prompt.

    ``reward_fn(tokens [B, 1, T], lengths [B, 1], targets [B, 1]) -> RewardOut`` parses
    the answers. The last batch is padded with repeats of its first prompt so that every
    batch has one shape (one compilation). ``keep_texts`` answers are decoded and kept
    under ``samples``; ``predictions`` keeps every answer's record (module docstring).
    A progress bar (or a plain line per fifth of the batches) shows the running figures.
    """
    n = len(prompts)
    start = time.perf_counter()
    valid, rating, lengths, texts, answers = [], [], [], [], []
    num_batches = -(-n // batch_size)
    progress = Progress(num_batches, desc, every=max(1, num_batches // 5), unit="batch")
    for lo in range(0, n, batch_size):
        idx = list(range(lo, min(lo + batch_size, n)))
        idx_padded = idx + [idx[0]] * (batch_size - len(idx))
        out = sampler.sample(params, prompts.rows(idx_padded), 1, key=jax.random.key(0))
        rew = reward_fn(out.tokens, out.lengths, prompts.targets_of(idx_padded)[:, None])
        real = len(idx)
        valid.append(to_host(rew.valid)[:real, 0])
        rating.append(to_host(rew.rating)[:real, 0])
        lengths.append(to_host(out.lengths)[:real, 0])
        if len(texts) < keep_texts or predictions:
            tokens = to_host(out.tokens)
            for r in range(real if predictions else min(real, keep_texts - len(texts))):
                text = prompts.tokenizer.decode(tokens[r, 0, : int(lengths[-1][r])].tolist())
                (answers if predictions else texts).append(text)
        done_valid = np.concatenate(valid)
        progress.update(
            lo // batch_size + 1,
            valid=float(done_valid.mean()),
            tokens_per_s=float(sum(x.sum() for x in lengths)) / (time.perf_counter() - start),
        )
    progress.close()
    if predictions:
        texts = answers[:keep_texts]
    valid, rating, lengths = map(np.concatenate, (valid, rating, lengths))
    targets = prompts.targets_of(range(n))  # every example evaluated: read already
    fallbacks = prompts.fallbacks_of(range(n))
    strict = strict_rating_metrics(rating, valid, targets, fallbacks)
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
    if predictions:
        result["predictions"] = prediction_records(
            prompts, rating, valid, answers, targets, fallbacks
        )
    return result


def prediction_records(
    prompts: PromptSet, rating, valid, answers: list[str], targets, fallbacks
) -> list[dict]:
    """One record per example: split, user, item, true ``rating`` (``targets``),
    ``predicted`` (None when the answer has no valid rating), ``valid``, ``strict_error``
    (against ``fallbacks``, the user average, when invalid), ``lenient_error`` (0 when
    invalid: the reference code's convention), the reasoning ``sections`` of the answer
    format and the full ``answer``."""
    fmt = prompts.prompt_cfg.variant
    out = []
    for i in range(len(prompts)):
        e, ok, target = prompts.example(i), bool(valid[i]), float(targets[i])
        predicted = float(rating[i]) if ok else None
        strict = predicted if ok else float(fallbacks[i])
        out.append({
            "split": e.split,
            "user": e.user_id,
            "item": e.item_id,
            "rating": target,
            "predicted": predicted,
            "valid": ok,
            "strict_error": abs(strict - target),
            "lenient_error": abs(predicted - target) if ok else 0.0,
            "sections": sections(answers[i], fmt),
            "answer": answers[i],
        })  # fmt: skip
    return out


PREDICTIONS_FILE = "predictions.jsonl"


def write_predictions(workdir, model: str, records: list[dict]) -> None:
    """``workdir/predictions.jsonl``: the records of ``model`` (e.g. 'sft', 'grpo') replace
    that model's earlier ones; every record is tagged with its ``model``."""
    path = as_path(workdir) / PREDICTIONS_FILE
    kept = [r for r in read_predictions(workdir) if r.get("model") != model]
    rows = kept + [{"model": model, **r} for r in records]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_predictions(run_dir, model: str | None = None) -> list[dict]:
    """The records of ``run_dir/predictions.jsonl`` (all models, or ``model``'s); [] when
    the run has none."""
    path = as_path(run_dir) / PREDICTIONS_FILE
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if model is None or r.get("model") == model]
