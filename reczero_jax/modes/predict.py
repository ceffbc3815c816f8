"""Mode 'predict': ask a trained model about users and items, and read its reasoning.

    # one rating of the run's data: the prompt's key facts, the four sections, the rating
    python -m reczero_jax.main --config configs/demo.py --config.mode=predict \\
        --config.predict.run_dir=/tmp/reczero_demo --config.predict.user=U --config.predict.item=I
    # a JSONL file of {history, item} records; the answers go to predict.output (JSONL)
    ... --config.predict.input=requests.jsonl --config.predict.output=answers.jsonl

With ``predict.run_dir`` everything comes from the run: its ``config.json`` (data, prompt,
model, sampling: the run as trained), its tokenizer and its last checkpoint (GRPO's, else
the cold start's). Without it, this config with ``model.hf_dir``'s weights. The prompts,
tokenizer, sampler and answer parsing are the training code's own (``PromptSet``,
``Engine``, :func:`reczero_jax.rl.evaluation.evaluate` and the reward parser).

A record of ``predict.input`` (one JSON object per line)::

    {"user": "u1",                               # optional id
     "history": [{"title": "...", "rating": 4, "review": "..."}, ...],   # oldest first
     "item": {"id": "i9", "title": "...", "info": "...",
              "reviews": [{"rating": 5, "review": "..."}]},               # optional
     "rating": 4}                                 # optional: the true rating, if known

Averages are those of the given ratings unless ``user_avg_rating`` / ``item_avg_rating``
(and ``..._num_ratings``) are given.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from reczero_jax import sharding
from reczero_jax.config_parsing import ConfigError
from reczero_jax.data.examples import Example, HistoryEntry, ItemReview
from reczero_jax.data.loader import load_data
from reczero_jax.data.prompt_set import PromptSet
from reczero_jax.engine import build_engine, plan_phase
from reczero_jax.observe.logs import log
from reczero_jax.paths import as_path
from reczero_jax.rl.evaluation import evaluate
from reczero_jax.run_config import read_run_config
from reczero_jax.settings import Settings

TRAINED_PHASES = ("sft", "grpo")  # in run order: the last one with a checkpoint answers


def run(settings: Settings) -> dict:
    p = settings.predict
    s, source = _run_settings(settings)
    from reczero_jax.rl.run import reward_function  # the training's reward parser

    if p.input:
        examples = read_requests(p.input)
    else:
        examples = [find_rating(load_data(s.data), p.user, p.item)]
    engine = build_engine(s)
    log.info("predict: weights from %s; %d example(s)", source, len(examples))
    prompts = PromptSet(examples, engine.tokenizer, s.data.prompt)
    shards = sharding.batch_shards(engine.mesh)
    batch = shards * -(-min(len(examples), s.eval.batch_size) // shards)
    result = evaluate(
        engine.sampler(greedy=p.greedy),
        engine.weights(source),
        prompts,
        reward_function(s, engine),
        batch,
        predictions=True,
        desc="predict",
    )
    records = [_with_facts(r, e) for r, e in zip(result["predictions"], examples)]
    if p.input:
        out = as_path(p.output or f"{settings.workdir}/predict.jsonl")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in records))
        log.info("wrote %d predictions to %s", len(records), out)
    else:
        print(readable(records[0]))
    return {"mode": "predict", "predictions": records}


def _run_settings(settings: Settings):
    """(the settings to predict with, the weights' source)."""
    p = settings.predict
    if not p.run_dir:
        return settings, plan_phase(None, [], "", settings.model.hf_dir).initial
    run_dir = as_path(p.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(
            f"config.predict.run_dir: {run_dir} is not a directory (expected a "
            "training run's workdir: config.json, tokenizer/, checkpoints/)"
        )
    s = read_run_config(run_dir)
    s = dataclasses.replace(s, mode="predict", predict=p, workdir=str(run_dir))
    phases = [run_dir / "checkpoints" / name for name in TRAINED_PHASES]
    if not any(d.exists() for d in phases):
        raise ConfigError(
            f"config.predict.run_dir: {run_dir} holds no checkpoints/sft or "
            "checkpoints/grpo: was the run trained?"
        )
    return s, plan_phase(None, [d for d in phases if d.exists()], "", "").initial


def find_rating(data, user: str, item: str) -> Example:
    """The example of ``user``'s rating of ``item`` (test, then validation, then train)."""
    seen_user = []
    for split in ("test", "validation", "train"):
        examples = data.examples.get(split, [])
        for i in range(len(examples)):
            e = examples[i]
            if e.user_id == user:
                if e.item_id == item:
                    return e
                seen_user.append(e.item_id)
    if seen_user:
        raise ConfigError(
            f"config.predict.item: user {user!r} has no rating of {item!r} in the "
            f"data; the user's rated items include {sorted(seen_user)[:8]} (for "
            "a new pair, write a predict.input record)"
        )
    raise ConfigError(
        f"config.predict.user: no user {user!r} in the data (ids as the data "
        "writes them, e.g. a user of workdir/predictions.jsonl)"
    )


def _mean(values, default: float) -> float:
    return float(np.mean(values)) if len(values) else default


def request_example(record: dict, line: int) -> Example:
    """The Example of one ``predict.input`` record (module docstring)."""
    where = f"line {line}"
    if not isinstance(record, dict) or not isinstance(record.get("item"), dict):
        raise ConfigError(
            f"config.predict.input {where}: expected an object with an 'item' "
            "object (and a 'history' list)"
        )
    item, history = record["item"], record.get("history", [])
    try:
        entries = tuple(
            HistoryEntry(
                str(h.get("item_id", f"h{k}")),
                str(h.get("title", "")),
                float(h["rating"]),
                str(h.get("review", "")),
                k,
            )
            for k, h in enumerate(history)
        )
        reviews = tuple(
            ItemReview(str(r.get("user", f"r{k}")), float(r["rating"]), str(r.get("review", "")), k)
            for k, r in enumerate(item.get("reviews", []))
        )
        rating = float(record["rating"]) if record.get("rating") is not None else math.nan
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(
            f"config.predict.input {where}: every history entry and item review "
            f"needs a numeric 'rating' ({type(e).__name__}: {e})"
        ) from None
    user_avg = _mean([h.rating for h in entries], 3.0)
    item_avg = _mean([r.rating for r in reviews], user_avg)
    return Example(
        user_id=str(record.get("user", f"request{line}")),
        item_id=str(item.get("id", f"item{line}")),
        rating=rating,
        timestamp=len(entries),
        split="request",
        item_title=str(item.get("title", "")),
        item_info=str(item.get("info", "")),
        user_history=entries,
        user_avg_rating=float(record.get("user_avg_rating", user_avg)),
        user_num_ratings=int(record.get("user_num_ratings", len(entries))),
        item_history=reviews,
        item_avg_rating=float(item.get("avg_rating", item_avg)),
        item_num_ratings=int(item.get("num_ratings", len(reviews))),
    )


def read_requests(path: str) -> list[Example]:
    file = as_path(path)
    if not file.is_file():
        raise ConfigError(
            f"config.predict.input: {file} does not exist (expected a JSONL file "
            "of {history, item} records)"
        )
    examples = []
    for n, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise ConfigError(f"config.predict.input line {n}: not JSON ({e})") from None
        examples.append(request_example(record, n))
    if not examples:
        raise ConfigError(f"config.predict.input: {file} holds no records")
    return examples


def _with_facts(record: dict, e: Example) -> dict:
    """A prediction record with the prompt's key facts; unknown true ratings are None."""
    out = dict(record)
    if math.isnan(out["rating"]):
        out.update(rating=None, strict_error=None, lenient_error=None)
    out["facts"] = {
        "user_average": round(e.user_avg_rating, 3),
        "user_num_ratings": e.user_num_ratings,
        "item_title": e.item_title,
        "item_average": round(e.item_avg_rating, 3),
        "item_num_ratings": e.item_num_ratings,
        "history": [{"title": h.title, "rating": h.rating} for h in e.user_history],
    }
    return out


def readable(record: dict) -> str:
    """The prompt's key facts, the answer's sections and its rating, for the terminal."""
    facts = record["facts"]
    true = "unknown" if record["rating"] is None else f"{record['rating']:g}"
    lines = [
        f"user {record['user']}, item {record['item']} ({record['split']}; true rating {true})",
        f"  the user rated {facts['user_num_ratings']} items, average "
        f"{facts['user_average']:.2f}; shown:",
        *[
            f"    {k}. {h['title']} | rating {h['rating']:g}"
            for k, h in enumerate(facts["history"], 1)
        ],
        f"  target item: {facts['item_title']} (average {facts['item_average']:.2f} over "
        f"{facts['item_num_ratings']} ratings)",
        "",
    ]
    for name, text in record["sections"].items():
        lines.append(f"[{name}]\n  {text or '(missing)'}")
    if record["valid"]:
        rating = f"{record['predicted']:g}"
        error = "" if record["strict_error"] is None else f" (error {record['strict_error']:g})"
        lines.append(f"\nrating: {rating}{error}")
    else:
        lines.append("\nrating: none: the answer does not follow the format; full answer:")
        lines.append(record["answer"])
    return "\n".join(lines)
