"""Reasoning traces for the RecOne cold start: (prompt ids, response ids) pairs.

Sources:

* ``teacher``: the synthetic world's weak teacher (right analysis, rating
  round((user_avg + item_avg) / 2) plus noise in the traces);
* ``file``: a JSONL file written by any teacher LLM. Each line is either
  ``{"prompt": str, "response": str}`` (the prompt text used as is) or
  ``{"user_id": str, "item_id": str, "response": str}`` (the prompt built from the train
  example with those ids). Bad lines are counted per reason and skipped;
* ``self``: sampled from the current model; answers whose rating is right are kept, and
  for wrong ones the model is asked again with the true rating given as a hint, keeping
  the rewritten answer (paired with the ORIGINAL prompt) when it is right.

Every response ends with the tokenizer's EOS id.
"""

from __future__ import annotations

import collections
import json
import pathlib

import jax
import numpy as np

from reczero_jax.config_parsing import ConfigError
from reczero_jax.data.prompts import INSTRUCTIONS, format_inputs, render
from reczero_jax.rewards import compute_rewards
from reczero_jax.rl.setup import Run, make_sampler

Trace = tuple[list[int], list[int]]


def _encode_response(run: Run, text: str) -> list[int]:
    ids = run.tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids) + [run.eos_ids[0]]


def teacher_traces(run: Run, num: int, seed: int) -> list[Trace]:
    from reczero_jax.data.teacher import teacher_trace

    if run.data.world is None:
        raise ConfigError(
            "config.sft.traces: 'teacher' needs data.source='synthetic' (the teacher reads the "
            "world's latents); use sft.traces='file' or 'self' for real data"
        )
    train = run.splits["train"]
    rng = np.random.default_rng([seed, 7])
    idx = rng.choice(len(train), size=min(num, len(train)), replace=False)
    noise = run.settings.data.synthetic.teacher_noise
    variant = run.settings.data.prompt.variant
    return [
        (
            train.ids(int(i)),
            _encode_response(
                run, teacher_trace(train.examples[int(i)], run.data.world, rng, noise, variant)
            ),
        )
        for i in idx
    ]


def file_traces(run: Run, path: str) -> tuple[list[Trace], dict[str, int]]:
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"config.sft.traces_path: {file} does not exist")
    train = run.splits["train"]
    by_ids = {(e.user_id, e.item_id): i for i, e in enumerate(train.examples)}
    skipped: collections.Counter[str] = collections.Counter()
    traces: list[Trace] = []
    with file.open(encoding="utf-8", errors="replace") as f:
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
                prompt = list(run.tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
            elif (row.get("user_id"), row.get("item_id")) in by_ids:
                prompt = train.ids(by_ids[(row["user_id"], row["item_id"])])
            else:
                skipped["unknown_example"] += 1
                continue
            traces.append((prompt, _encode_response(run, row["response"])))
    if not traces:
        raise ConfigError(f"config.sft.traces_path: {file} holds no usable trace ({dict(skipped)})")
    return traces, dict(skipped)


def _hint_prompt(run: Run, example, target: float) -> list[int]:
    cfg = run.settings.data.prompt
    inputs = (
        format_inputs(example) + f"\nHint: this user's actual rating of the item is {target:g}."
    )
    text = render(INSTRUCTIONS[cfg.variant], inputs, cfg, run.tokenizer)
    return list(run.tokenizer(text, add_special_tokens=False)["input_ids"])


def self_traces(run: Run, params, num: int, seed: int, batch: int) -> tuple[list[Trace], dict]:
    """Self-generated traces with the rewrite step (module docstring)."""
    s = run.settings
    sampler = make_sampler(run, False, s.sft.max_response_tokens, seed=seed)
    train = run.splits["train"]
    idx = np.random.default_rng([seed, 11]).choice(
        len(train), size=min(num, len(train)), replace=False
    )
    stats = collections.Counter()
    traces: list[Trace] = []

    def answer(prompts, targets, key):
        pad = (-len(prompts)) % batch
        out = sampler.sample(params, prompts + prompts[:1] * pad, 1, key=key)
        t = np.concatenate([targets, targets[:1].repeat(pad)]).astype(np.float32)
        rew = compute_rewards(run.reward_table, out.tokens, out.lengths, t, run.reward_spec)
        # "right" = the same star after rounding half up
        ok = np.asarray(rew.valid) & (
            np.floor(np.asarray(rew.rating, np.float64) + 0.5)
            == np.floor(t.astype(np.float64) + 0.5)
        )
        tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
        return [(bool(ok[r]), tokens[r, : lengths[r]].tolist()) for r in range(len(prompts))]

    for lo in range(0, len(idx), batch):
        chunk = [int(i) for i in idx[lo : lo + batch]]
        targets = train.targets[chunk]
        key = jax.random.fold_in(jax.random.key(seed), lo)
        first = answer([train.ids(i) for i in chunk], targets, key)
        wrong = [(i, t) for (ok, _), i, t in zip(first, chunk, targets) if not ok]
        for (ok, resp), i in zip(first, chunk):
            if ok:
                traces.append((train.ids(i), resp))
        stats["kept_first_try"] += sum(ok for ok, _ in first)
        if wrong:
            hinted = [_hint_prompt(run, train.examples[i], float(t)) for i, t in wrong]
            second = answer(hinted, np.asarray([t for _, t in wrong]), jax.random.fold_in(key, 1))
            for (ok, resp), (i, _) in zip(second, wrong):
                if ok:
                    traces.append((train.ids(i), resp))
            stats["kept_after_rewrite"] += sum(ok for ok, _ in second)
            stats["dropped"] += sum(not ok for ok, _ in second)
    if not traces:
        raise ConfigError("config.sft.traces='self': the model produced no usable trace")
    return traces, dict(stats)
