"""How well a model trained on the synthetic world *reads* its prompts.

    python -m reczero_jax.tools.reading_probe --workdir /tmp/reczero_demo \
        [--phase sft|grpo] [--examples 256]

Reads the run as it was trained (``workdir/config.json``, overrides included), restores
the latest checkpoint of ``--phase`` from the workdir of a finished run, answers
the first ``--examples`` test prompts greedily and compares each answer field by field with
the teacher's noise-free trace (:func:`reczero_jax.data.teacher.teacher_trace`, whose
analysis is a function of the prompt). Prints one JSON object: per field, the fraction of
answers where the model wrote exactly what the teacher wrote; and the strict MAE of the
answers. A cold start that copies the averages but not the genre marks gives GRPO no
verdict worth conditioning on (README: the CPU demo).
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import numpy as np

# Field name -> pattern whose first group is the field's text in a four-step answer.
FIELDS = {
    "user_stances": r"<analyze user>(.*?) ;",
    "user_price": r"; (\w+ (?:about )?price) ;",
    "user_average": r"average (\S+) </analyze user>",
    "item_aspects": r"<analyze item>(.*?) ;",
    "item_genre_1": r"<analyze item> (\S+ \S+)",
    "item_genre_2": r"<analyze item> \S+ \S+ (\S+ \S+)",
    "item_quality": r"(quality (?:pos|neg|ok|new))",
    "item_price": r"(price (?:pos|neg|ok|new))",
    "item_average": r"average (\S+) </analyze item>",
    "verdict": r"the item (.*?) this user",
    "midpoint": r"midpoint of the averages (\d)",
    "leaning": r"by the aspects (\d)",
    "rating": r"<rate>(.*?)</rate>",
}


def fields(text: str) -> dict[str, str | None]:
    """The answer's fields (stripped), None where a field is missing."""
    out = {}
    for name, pattern in FIELDS.items():
        m = re.search(pattern, text, flags=re.S)
        out[name] = m.group(1).strip() if m else None
    return out


def _same(a: dict, t: dict) -> dict[str, bool]:
    return {k: a[k] is not None and a[k] == t[k] for k in FIELDS}


def compare(answer: str, teacher: str) -> dict[str, bool]:
    """Per field: the answer wrote the teacher's text (a field both lack counts as wrong)."""
    return _same(fields(answer), fields(teacher))


def _fraction(hits: list[bool]) -> float:
    return float(np.mean(hits)) if hits else float("nan")


def summarize(
    answers: list[str], teachers: list[str], targets: np.ndarray | None = None
) -> dict[str, float]:
    """Fraction of answers right per field, and how often an answer rates by its own
    midpoint (``rating_is_own_midpoint``) or by its own leaning (``rating_is_own_leaning``).

    With the true ratings ``targets`` [N]: the MAE of rating every example by the answer's
    own leaning (``own_leaning_mae``: what "rate by your analysis" would score with this
    model's reading; a missing leaning falls back to its midpoint, then to 3) and by the
    teacher's noise-free leaning (``teacher_leaning_mae``, the same rule read perfectly).
    """
    own = [fields(a) for a in answers]  # each answer is parsed once
    theirs = [fields(t) for t in teachers]
    rows = [_same(a, t) for a, t in zip(own, theirs, strict=True)]
    out = {k: _fraction([r[k] for r in rows]) for k in FIELDS}
    for name in ("midpoint", "leaning"):
        hits = [f["rating"] is not None and f["rating"] == f[name] for f in own]
        out[f"rating_is_own_{name}"] = _fraction(hits)
    if targets is not None:
        for name, parsed in (("own", own), ("teacher", theirs)):
            guess = [float(f["leaning"] or f["midpoint"] or 3) for f in parsed]
            out[f"{name}_leaning_mae"] = float(np.mean(np.abs(np.asarray(guess) - targets)))
    return out


def _features(examples, world) -> np.ndarray:
    """float64 [N, 4]: 1, user average, item average, #pos - #neg aspects (as the prompt
    shows them: :func:`reczero_jax.data.teacher.visible_evidence`)."""
    from reczero_jax.data.teacher import visible_evidence

    rows = []
    for e in examples:
        marks = [m for _, m in visible_evidence(e, world)["aspects"]]
        rows.append(
            [1.0, e.user_avg_rating, e.item_avg_rating, marks.count("pos") - marks.count("neg")]
        )
    return np.asarray(rows, np.float64)


def linear_rule_mae(train, test, world, targets: np.ndarray) -> float:
    """MAE on ``test`` of the least-squares rule rating ~ user avg + item avg + (#pos - #neg),
    fitted on the ``train`` examples, rounded and clipped to [1, 5]: what a policy that
    reads the prompt perfectly could reach with a better weighting than the teacher's
    leaning."""
    x = _features(train, world)
    y = np.asarray([e.rating for e in train], np.float64)
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    guess = np.clip(np.floor(_features(test, world) @ coef + 0.5), 1, 5)
    return float(np.mean(np.abs(guess - targets)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the finished run's workdir")
    parser.add_argument("--phase", choices=("sft", "grpo"), default="sft")
    parser.add_argument("--examples", type=int, default=256)
    args = parser.parse_args(argv)

    from reczero_jax.config_parsing import ConfigError
    from reczero_jax.paths import as_path
    from reczero_jax.run_config import read_run_config

    try:
        ckpt_dir = as_path(args.workdir) / "checkpoints" / args.phase  # local or gs://
        if not ckpt_dir.is_dir():
            raise ConfigError(f"--workdir: no {args.phase} checkpoints in {ckpt_dir}")
        settings = read_run_config(args.workdir)  # the run as trained
        if settings.data.source != "synthetic":
            raise ConfigError("--workdir: the probe needs a run on data.source='synthetic'")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from reczero_jax.data.loader import load_data
    from reczero_jax.data.prompt_set import PromptSet
    from reczero_jax.data.teacher import teacher_trace
    from reczero_jax.engine import build_engine, plan_phase
    from reczero_jax.rl.evaluation import evaluate
    from reczero_jax.rl.run import reward_function, scratch_corpus

    data = load_data(settings.data)
    engine = build_engine(settings, corpus=lambda: scratch_corpus(data, settings))
    source = plan_phase(None, [ckpt_dir], "", "").initial  # the phase's latest checkpoint
    params = engine.weights(source)
    n = min(args.examples, len(data.examples["test"]))
    test = PromptSet(data.examples["test"][:n], engine.tokenizer, settings.data.prompt)
    # evaluate() answers greedily in batches and keeps the texts and the strict MAE.
    report = evaluate(
        engine.sampler(greedy=True),
        params,
        test,
        reward_function(settings, engine),
        settings.eval.batch_size,
        keep_texts=n,
    )
    rng = np.random.default_rng(0)  # unused: the traces are noise-free
    teachers = [teacher_trace(e, data.world, rng, 0.0) for e in test.examples]
    targets = np.asarray(test.targets_of(np.arange(n)), np.float64)
    summary = summarize(report["samples"], teachers, targets)
    summary["linear_rule_mae"] = linear_rule_mae(
        data.examples["train"], test.examples, data.world, targets
    )
    result = {k: round(v, 4) for k, v in summary.items()}
    result["mae_of_answers"] = round(report["mae"], 4)
    print(json.dumps({"phase": args.phase, "step": source.step, "examples": n, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
