"""Reasoning traces for the RecOne cold start: (prompt ids, response ids) pairs.

Sources:

* ``teacher``: the synthetic world's weak teacher (right analysis, rating
  round((user_avg + item_avg) / 2) plus noise in the traces); on real data, without a
  world, the review teacher of :mod:`reczero_jax.data.review_teacher` (an analysis of what
  the prompt shows, the same rating rule);
* ``file``: a JSONL file written by any teacher LLM. Each line is either
  ``{"prompt": str, "response": str}`` (the prompt text used as is) or
  ``{"user_id": str, "item_id": str, "response": str}`` (the prompt built from the train
  example with those ids). Bad lines are counted per reason and skipped;
* ``self``: sampled from the current model; answers whose rating is right are kept, and
  for wrong ones the model is asked again with the true rating given as a hint, keeping
  the rewritten answer (paired with the ORIGINAL prompt) when it is right.

Every response ends with the end-of-answer id ``eos_id``.
"""

from __future__ import annotations

import collections
import io
import json

import jax
import numpy as np

from reczero_jax.config_parsing import ConfigError
from reczero_jax.data.prompt_set import PromptSet
from reczero_jax.data.prompts import INSTRUCTIONS, format_inputs, render
from reczero_jax.data.review_teacher import review_trace
from reczero_jax.data.synthetic import World
from reczero_jax.data.teacher import round_rating, teacher_trace
from reczero_jax.multihost import to_host
from reczero_jax.observe import Progress
from reczero_jax.paths import as_path
from reczero_jax.rewards.reference import parse
from reczero_jax.sampling.sampler import GroupSampler

Trace = tuple[list[int], list[int]]


def encode_response(tokenizer, text: str, eos_id: int) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [eos_id]


def teacher_answer(world: World | None, noise: float, variant: str, rewrite: bool = False):
    """``answer(example, rng, num_dropped) -> text``: the synthetic world's teacher, or,
    without a world (real data), the review teacher, whose analysis states what a prompt
    with ``num_dropped`` history entries left out shows. Rating noise ``noise`` stars."""
    if world is not None:
        return lambda e, rng, num_dropped: teacher_trace(e, world, rng, noise, variant, rewrite)
    return lambda e, rng, num_dropped: review_trace(e, rng, noise, variant, num_dropped, rewrite)


def teacher_traces(
    train: PromptSet,
    world: World | None,
    num: int,
    seed: int,
    noise: float,
    eos_id: int,
    rewrite: bool = False,
) -> tuple[list[Trace], dict]:
    """``num`` random training prompts answered by the teacher of ``world``
    (:func:`teacher_answer`; rating noise ``noise`` stars; ``rewrite``: a wrong rating is
    written again as the true one, RecOne's rewrite) and their statistics:
    ``rating_right``, the share of traces whose rating is the example's true one."""
    rng = np.random.default_rng([seed, 7])
    idx = rng.choice(len(train), size=min(num, len(train)), replace=False)
    answer = teacher_answer(world, noise, train.prompt_cfg.variant, rewrite)
    out, right = [], 0
    progress = Progress(len(idx), "teacher traces", every=max(1, len(idx) // 4), unit="trace")
    for i in idx:
        prompt = train.prompt(int(i))  # built once: its ids and what it dropped
        example = train.example(int(i))
        text = answer(example, rng, prompt.num_history_dropped)
        right += parse(text, train.prompt_cfg.variant).rating == round_rating(example.rating)
        out.append((list(prompt.token_ids), encode_response(train.tokenizer, text, eos_id)))
        progress.update(len(out))
    progress.close()
    return out, {"rating_right": round(right / max(1, len(out)), 4)}


def file_traces(path: str, train: PromptSet, eos_id: int) -> tuple[list[Trace], dict[str, int]]:
    """The traces of a JSONL file (local or remote; module docstring) and the count of
    skipped lines."""
    file = as_path(path)
    if not file.is_file():
        raise ConfigError(f"config.sft.traces_path: {file} does not exist")
    by_ids: dict[tuple[str, str], int] | None = None  # read only if a line names ids
    skipped: collections.Counter[str] = collections.Counter()
    traces: list[Trace] = []
    with file.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                skipped["malformed_line"] += 1
                continue
            if not isinstance(row, dict) or not isinstance(row.get("response"), str):
                skipped["missing_field:response"] += 1
                continue
            if isinstance(row.get("prompt"), str):
                prompt = list(train.tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
            else:
                by_ids = _index_by_ids(train) if by_ids is None else by_ids
                key = (row.get("user_id"), row.get("item_id"))
                if key not in by_ids:
                    skipped["unknown_example"] += 1
                    continue
                prompt = train.ids(by_ids[key])
            traces.append((prompt, encode_response(train.tokenizer, row["response"], eos_id)))
    if not traces:
        raise ConfigError(f"config.sft.traces_path: {file} holds no usable trace ({dict(skipped)})")
    return traces, dict(skipped)


def _index_by_ids(train: PromptSet) -> dict[tuple[str, str], int]:
    """{(user_id, item_id): index} of the training examples (reads every one)."""
    return {(e.user_id, e.item_id): i for i, e in enumerate(train.examples)}


def _hint_prompt(train: PromptSet, example, target: float) -> list[int]:
    cfg = train.prompt_cfg
    inputs = (
        format_inputs(example) + f"\nHint: this user's actual rating of the item is {target:g}."
    )
    text = render(INSTRUCTIONS[cfg.variant], inputs, cfg, train.tokenizer)
    return list(train.tokenizer(text, add_special_tokens=False)["input_ids"])


def self_traces(
    sampler: GroupSampler, params, train: PromptSet, reward_fn, num: int, seed: int, batch: int
) -> tuple[list[Trace], dict]:
    """Self-generated traces with the rewrite step (module docstring); ``sampler``
    samples one answer per prompt, ``reward_fn`` parses it."""
    idx = np.random.default_rng([seed, 11]).choice(
        len(train), size=min(num, len(train)), replace=False
    )
    stats = collections.Counter()
    traces: list[Trace] = []

    def answer(prompts, targets, key):
        pad = (-len(prompts)) % batch
        out = sampler.sample(params, prompts + prompts[:1] * pad, 1, key=key)
        t = np.concatenate([targets, targets[:1].repeat(pad)]).astype(np.float32)[:, None]
        rew = reward_fn(out.tokens, out.lengths, t)
        # "right" = the same star after rounding half up
        ok = to_host(rew.valid) & (
            np.floor(to_host(rew.rating).astype(np.float64) + 0.5) == np.floor(t + 0.5)
        )
        tokens, lengths = to_host(out.tokens), to_host(out.lengths)
        return [
            (bool(ok[r, 0]), tokens[r, 0, : lengths[r, 0]].tolist()) for r in range(len(prompts))
        ]

    for lo in range(0, len(idx), batch):
        chunk = [int(i) for i in idx[lo : lo + batch]]
        targets = train.targets_of(chunk)
        key = jax.random.fold_in(jax.random.key(seed), lo)
        first = answer([train.ids(i) for i in chunk], targets, key)
        wrong = [(i, t) for (ok, _), i, t in zip(first, chunk, targets) if not ok]
        for (ok, resp), i in zip(first, chunk):
            if ok:
                traces.append((train.ids(i), resp))
        stats["kept_first_try"] += sum(ok for ok, _ in first)
        if wrong:
            hinted = [_hint_prompt(train, train.example(i), float(t)) for i, t in wrong]
            second = answer(hinted, np.asarray([t for _, t in wrong]), jax.random.fold_in(key, 1))
            for (ok, resp), (i, _) in zip(second, wrong):
                if ok:
                    traces.append((train.ids(i), resp))
            stats["kept_after_rewrite"] += sum(ok for ok, _ in second)
            stats["dropped"] += sum(not ok for ok, _ in second)
    if not traces:
        raise ConfigError("config.sft.traces='self': the model produced no usable trace")
    return traces, dict(stats)
