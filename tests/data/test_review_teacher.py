"""The review teacher (cold-start traces on real data from an Example alone) and the
Amazon Musical Instruments config that uses it."""

from __future__ import annotations

import dataclasses
import gzip
import json
import pathlib
import re

import numpy as np
import pytest

from reczero_jax.data.data_config import DataConfig, PromptConfig
from reczero_jax.data.examples import Example, HistoryEntry, ItemReview
from reczero_jax.data.loader import load_raw
from reczero_jax.data.prompt_set import PromptSet
from reczero_jax.data.prompts import build_prompt, format_inputs
from reczero_jax.data.review_teacher import (
    item_categories,
    review_trace,
    shown_histories,
)
from reczero_jax.rewards.reference import parse
from reczero_jax.rl import traces
from reczero_jax.settings import default_config, load_settings
from reczero_jax.text.tiny_tokenizer import build_tiny_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED_FILE = ROOT.parent / "shared/data/reviews_Musical_Instruments_5.json.gz"
NUMBER = re.compile(r"\d+(?:\.\d+)?")
SECTION = re.compile(r"<(analyze user|analyze item|match)> (.*?) </\1>")
ENTRY = {  # a shown history line of the prompt and its rating
    "analyze user": re.compile(r"\d+\. [^|]* \| rating (\S+)"),
    "analyze item": re.compile(r"\d+\. rating (\S+)"),
}


def midpoint_rule(user_avg: float, item_avg: float, z: float = 0.0) -> int:
    """The reference: clip(floor((u + i) / 2 + 1/2 + z), 1, 5) in numpy."""
    return int(np.clip(np.floor((user_avg + item_avg) / 2 + 0.5 + z), 1, 5))


def make_example(user_ratings, item_ratings, user_avg, item_avg, info="", reviews=None):
    """An Example whose histories hold the given ratings (oldest first, interleaved in
    time: user entry k at day 2k, item review k at day 2k + 1)."""
    reviews = reviews or {}
    user = tuple(
        HistoryEntry(f"I{k}", f"item {k}", float(r), reviews.get(("u", k), f"text {k}"), 2 * k)
        for k, r in enumerate(user_ratings)
    )
    item = tuple(
        ItemReview(f"U{k}", float(r), reviews.get(("i", k), f"said {k}"), 2 * k + 1)
        for k, r in enumerate(item_ratings)
    )
    return Example(
        user_id="U", item_id="T", rating=4.0, timestamp=100, split="train",
        item_title="Target", item_info=info, user_history=user,
        user_avg_rating=user_avg, user_num_ratings=len(user) + 3, item_history=item,
        item_avg_rating=item_avg, item_num_ratings=len(item) + 2,
    )  # fmt: skip


EXAMPLES = [
    make_example([5, 5, 4], [1, 5], 4.6666667, 3.0),
    make_example([1, 2], [2, 1, 3], 1.5, 2.25),  # midpoint 1.875 -> 2
    make_example([3], [4], 2.5, 3.5),  # exactly 3.0
    make_example([2, 4], [5], 2.75, 4.25),  # 3.5 rounds half up -> 4
    make_example([1], [1], 1.0, 1.0),
    make_example([5, 5], [5, 5], 5.0, 5.0),
    make_example(
        [4.5, 2],
        [5, 3],
        4.2,
        3.9,
        info="Categories: Guitars, Strings; Brand: Acme; Price: $9",
        reviews={("i", 0): "Great strings, works fine", ("i", 1): "Broke in a week. Junk."},
    ),
    make_example(
        [5, 3, 1],
        [4, 4],
        3.3,
        4.4,
        info="Summaries of earlier reviews: Good picks | Disappointed",
        reviews={("i", 1): "Noisy and cheap but nice"},
    ),
]


def check_facts(trace: str, example: Example, prompt: str) -> None:
    """Every fact of the trace's analysis is in ``prompt`` (the text the model reads)."""
    sections = dict(SECTION.findall(trace))
    assert set(sections) == {"analyze user", "analyze item", "match"}
    midpoint = midpoint_rule(example.user_avg_rating, example.item_avg_rating)
    prompt_numbers = set(NUMBER.findall(prompt))
    lines = prompt.splitlines()
    split = lines.index("Earlier reviews of the target item by other users (oldest first):")
    user_lines, item_lines = lines[1:split], lines[split + 1 :]
    for name, shown_lines in (("analyze user", user_lines), ("analyze item", item_lines)):
        text = sections[name]
        # the shown ratings, in order, and their high / low counts
        entry = ENTRY[name]
        shown = [float(m[1]) for m in map(entry.match, shown_lines) if m is not None]
        listed = re.search(r"ratings (.*?) ; high (\d+) low (\d+)", text)
        assert listed is not None, text
        stated = [] if listed[1] == "none shown" else [float(x) for x in listed[1].split()]
        assert stated == shown, (name, text, shown_lines)
        assert int(listed[2]) == sum(r >= 4 for r in shown)
        assert int(listed[3]) == sum(r <= 2 for r in shown)
        # the rest of its numbers are printed in the prompt (averages and counts)
        rest = text.replace(listed[0], "")
        for number in NUMBER.findall(rest):
            assert number in prompt_numbers, (name, number, rest)
    # the averages as printed
    assert (
        f"average {example.user_avg_rating:.2f} over {example.user_num_ratings}"
        in (sections["analyze user"])
    )
    assert (
        f"average {example.item_avg_rating:.2f} over {example.item_num_ratings}"
        in (sections["analyze item"])
    )
    assert f"User average rating: {example.user_avg_rating:.2f}" in prompt
    # the item's words and categories are in the item's part of the prompt
    item_text = "\n".join(item_lines).lower()
    words = re.search(r"\[pos\] (.*?) \[neg\] (.*?) ;", sections["analyze item"])
    assert words is not None
    for word in (words[1] + " " + words[2]).split():
        assert word == "none" or re.search(rf"\b{word}\b", item_text), word
    cats = re.search(r"categories (.*?) ;", sections["analyze item"])
    assert (cats is not None) == example.item_info.startswith("Categories: ")
    if cats:
        assert f"Categories: {cats[1]}" in prompt
    # the match: the printed averages compared, then the rule's own output
    u, i = round(example.user_avg_rating, 2), round(example.item_avg_rating, 2)
    side = "above" if i > u else "below" if i < u else "the same as"
    assert f"the item is rated {side} this user's average" in sections["match"]
    assert sections["match"].endswith(f"midpoint of the averages {midpoint}")


@pytest.mark.parametrize("example", EXAMPLES)
def test_trace_parses_and_rates_by_the_midpoint_rule(example):
    trace = review_trace(example, np.random.default_rng(0), 0.0)
    parsed = parse(trace)
    assert parsed.valid, (parsed.reason, trace)
    assert parsed.rating == midpoint_rule(example.user_avg_rating, example.item_avg_rating)


@pytest.mark.parametrize("seed", range(20))
def test_noisy_rating_is_the_rule_plus_one_normal_draw(seed):
    example = EXAMPLES[seed % len(EXAMPLES)]
    trace = review_trace(example, np.random.default_rng(seed), 0.7)
    z = np.random.default_rng(seed).normal(0.0, 0.7)
    parsed = parse(trace)
    assert parsed.valid
    assert parsed.rating == midpoint_rule(example.user_avg_rating, example.item_avg_rating, z)


@pytest.mark.parametrize("seed", range(len(EXAMPLES)))
def test_rewrite_rates_the_true_rating(seed):
    example = EXAMPLES[seed]
    plain = review_trace(example, np.random.default_rng(seed), 0.7)
    rewritten = review_trace(example, np.random.default_rng(seed), 0.7, rewrite=True)
    assert parse(rewritten).rating == example.rating
    assert plain.split("<rate>")[0] == rewritten.split("<rate>")[0]


@pytest.mark.parametrize("variant", ["single_think", "rating_only"])
def test_other_answer_formats_parse(variant):
    for example in EXAMPLES:
        parsed = parse(review_trace(example, np.random.default_rng(0), 0.0, variant), variant)
        assert parsed.valid
        assert parsed.rating == midpoint_rule(example.user_avg_rating, example.item_avg_rating)


@pytest.mark.parametrize("example", EXAMPLES)
def test_analysis_states_only_what_the_prompt_shows(example):
    trace = review_trace(example, np.random.default_rng(0), 0.0)
    check_facts(trace, example, format_inputs(example))


def test_analysis_follows_the_entries_the_prompt_dropped():
    example = EXAMPLES[7]
    total = len(example.user_history) + len(example.item_history)
    for dropped in range(total + 1):
        trace = review_trace(example, np.random.default_rng(0), 0.0, num_dropped=dropped)
        check_facts(trace, example, format_inputs(example, dropped))
        user, item = shown_histories(example, dropped)
        assert len(user) + len(item) == total - dropped


def test_categories_come_from_the_information_line_only():
    assert item_categories("Categories: Guitars, Strings; Brand: Acme") == ["Guitars", "Strings"]
    assert item_categories("Summaries of earlier reviews: Categories: x") == []
    assert item_categories("") == []
    trace = review_trace(EXAMPLES[6], np.random.default_rng(0), 0.0)
    assert "categories Guitars, Strings ;" in trace
    assert "[pos] great works [neg] broke junk" in trace
    assert "categories" not in review_trace(EXAMPLES[0], np.random.default_rng(0), 0.0)


def write_amazon2014(path: pathlib.Path, num_users=12, num_items=6) -> pathlib.Path:
    """A tiny 5-core-like reviews file in the Amazon 2014 format (no meta file)."""
    rng = np.random.default_rng(3)
    words = ["great sound", "broke fast", "works well", "cheap junk", "nice", "ok tuner"]
    rows = []
    for u in range(num_users):
        for k, i in enumerate(rng.choice(num_items, size=5, replace=False)):
            rows.append(
                {
                    "reviewerID": f"U{u}",
                    "asin": f"B000{i:02d}",
                    "overall": float(rng.integers(1, 6)),
                    "summary": words[(u + k) % len(words)].title(),
                    "reviewText": f"This {words[(u * 7 + k) % len(words)]} thing, {u}/{k}.",
                    "unixReviewTime": 1_300_000_000 + 86400 * (10 * k + u % 3 + int(i)),
                }
            )
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode(), mtime=0))
    return path


@pytest.fixture(scope="module")
def amazon_examples(tmp_path_factory):
    path = write_amazon2014(tmp_path_factory.mktemp("amz") / "reviews_Toys_5.json.gz")
    cfg = DataConfig(source="amazon2014", path=str(path), history_len=3, item_history_len=2)
    data = load_raw(cfg)
    assert data.world is None and data.examples["train"]
    return data


def test_traces_of_an_amazon_2014_file(amazon_examples):
    for split, examples in amazon_examples.examples.items():
        for n, example in enumerate(examples):
            trace = review_trace(example, np.random.default_rng(n), 0.0)
            parsed = parse(trace)
            assert parsed.valid, (split, trace)
            assert parsed.rating == midpoint_rule(example.user_avg_rating, example.item_avg_rating)
            check_facts(trace, example, format_inputs(example))


def test_review_traces_follow_each_prompt_and_its_drops(amazon_examples, tmp_path):
    tokenizer_dir = build_tiny_tokenizer(tmp_path / "tok")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    examples = amazon_examples.examples["train"]
    cfg = PromptConfig(mode="raw", raw_template="{inputs}\n")
    lengths = [len(build_prompt(e, tokenizer, cfg).token_ids) for e in examples]
    cfg = dataclasses.replace(cfg, max_prompt_tokens=int(np.median(lengths)))
    train = PromptSet(examples, tokenizer, cfg)
    found, _ = traces.teacher_traces(train, None, 1000, seed=0, noise=0.0, eos_id=7)
    assert len(found) == len(examples)
    by_ids = {tuple(train.ids(i)): i for i in range(len(train))}
    drops = 0
    for prompt_ids, response in found:
        assert response[-1] == 7
        i = by_ids[tuple(prompt_ids)]
        example = train.example(i)
        built = build_prompt(example, tokenizer, cfg)
        drops += built.num_history_dropped > 0
        trace = tokenizer.decode(response[:-1])
        assert parse(trace).valid
        check_facts(trace, example, built.text)
    assert drops > 0  # the budget made some prompts drop entries


def _amazon_config(arg=None):
    from reczero_jax.settings import load_config_file

    return load_config_file(str(ROOT / "configs" / "amazon_music.py") + (f":{arg}" if arg else ""))


@pytest.mark.parametrize("arg", [None, "quick"])
def test_amazon_music_config_validates(arg):
    config = _amazon_config(arg)
    settings = load_settings(config, num_devices=8)
    assert settings.mode == "recone" and settings.sft.traces == "teacher"
    assert settings.data.source == "amazon2014"
    assert pathlib.Path(settings.data.path) == SHARED_FILE.resolve()


def test_teacher_traces_are_allowed_on_real_data():
    config = default_config()
    config.mode = "recone"
    config.workdir = "/tmp/unused"
    config.data.update({"source": "amazon2014", "path": "/x.json.gz"})
    assert load_settings(config, num_devices=1).sft.traces == "teacher"


@pytest.mark.slow
def test_amazon_music_quick_runs_end_to_end(tmp_path):
    if not SHARED_FILE.is_file():
        pytest.skip(f"{SHARED_FILE} is absent")
    from reczero_jax.rl.run import run

    config = _amazon_config("quick")
    config.workdir = str(tmp_path / "run")
    config.mesh.shape = (1, 1, 1)  # one of the test platform's 8 fake devices
    config.checkpoint.export_hf = False
    results = run(load_settings(config, num_devices=8))
    assert results["sft_traces"]["teacher"] == "review"
    assert results["sft_traces"]["num"] == 128
    for phase in ("sft", "grpo"):
        assert results[phase]["num_examples"] == 64
        assert np.isfinite(results[phase]["mae"])
    assert {"teacher", "user_mean", "mf"} <= set(results["baselines"])
    assert json.loads((tmp_path / "run" / "results.json").read_text())["mode"] == "recone"


def test_the_module_docstring_example_is_what_the_teacher_writes():
    if not SHARED_FILE.is_file():
        pytest.skip(f"{SHARED_FILE} is absent")
    from reczero_jax.data import review_teacher

    data = load_raw(load_settings(_amazon_config(), num_devices=8).data)
    doc = review_teacher.__doc__
    block = doc[doc.index("    User history") : doc.index("(The user rated it")]
    lines = [line[4:] for line in block.strip("\n").splitlines()]
    prompt, trace = "\n".join(lines[: lines.index("")]), "\n".join(lines[lines.index("") + 1 :])
    found = [e for e in data.examples["train"] if format_inputs(e) == prompt]
    assert len(found) == 1
    assert review_trace(found[0], np.random.default_rng(0), 0.0) == trace
    assert found[0].rating == 5.0
