"""The synthetic world: determinism, the Bayes floor, the teacher's traces."""

import re

import numpy as np
import pytest

from reczero_jax.data.data_config import DataConfig, SyntheticConfig
from reczero_jax.data.loader import load_data
from reczero_jax.data.synthetic import bayes_floor, make_world
from reczero_jax.data.teacher import teacher_rating, teacher_trace

SMALL = SyntheticConfig(num_users=150, num_items=40, interactions_per_user=12)


def test_deterministic_and_seeded():
    a, b = make_world(SMALL), make_world(SMALL)
    np.testing.assert_array_equal(a.data.ratings.rating, b.data.ratings.rating)
    assert list(a.data.ratings.review) == list(b.data.ratings.review)
    c = make_world(SyntheticConfig(num_users=150, num_items=40, interactions_per_user=12, seed=1))
    assert not np.array_equal(a.data.ratings.rating, c.data.ratings.rating)


def test_world_shape_and_vocabulary():
    w = make_world(SMALL)
    r = w.data.ratings
    assert (len(r), r.num_users, r.num_items) == (150 * 12, 150, 40)
    assert set(np.unique(r.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    words = {tok for text in r.review for tok in text.split()}
    assert len(words) < 40  # a small, formulaic vocabulary
    assert max(len(t.split()) for t in r.review) <= 14


def test_pmf_and_floor_match_simulation():
    w = make_world(SMALL)
    u = np.repeat(np.arange(20), 2)
    i = np.arange(40)
    pmf = w.rating_pmf(u, i)
    np.testing.assert_allclose(pmf.sum(1), 1.0, atol=1e-12)
    # simulate the model many times for these pairs and compare the exact floor
    rng = np.random.default_rng(0)
    z = w.latent_mean(u, i)
    draws = np.clip(np.floor(z + rng.normal(0, SMALL.noise, (20000, 40)) + 0.5), 1, 5)
    median = 1 + np.argmax(np.cumsum(pmf, 1) >= 0.5, 1)
    exact_abs = (pmf * np.abs(np.arange(1, 6) - median[:, None])).sum(1)
    np.testing.assert_allclose(np.abs(draws - median).mean(0), exact_abs, atol=0.03)
    np.testing.assert_allclose(draws.mean(0), pmf @ np.arange(1, 6), atol=0.03)


def test_floor_beats_teacher_and_is_beaten_by_nothing_simple():
    data = load_data(DataConfig(synthetic=SMALL), splits=("test",))
    test = data.examples["test"]
    floor = bayes_floor(data.world, test)
    target = np.array([e.rating for e in test])
    teacher = teacher_rating([e.user_avg_rating for e in test], [e.item_avg_rating for e in test])
    assert 0.2 < floor["mae"] < np.abs(teacher - target).mean()
    assert floor["rmse"] > 0.3


def test_teacher_rule_and_traces():
    assert teacher_rating([3.4, 1.0, 5.0], [4.6, 1.0, 4.0]).tolist() == [4.0, 1.0, 5.0]
    data = load_data(DataConfig(synthetic=SMALL), splits=("test",))
    rng = np.random.default_rng(0)
    ratings = []
    for e in data.examples["test"][:40]:
        trace = teacher_trace(e, data.world, rng, noise=0.5)
        tags = re.findall(r"</?(?:analyze user|analyze item|match|rate)>", trace)
        assert tags == [
            "<analyze user>", "</analyze user>", "<analyze item>", "</analyze item>",
            "<match>", "</match>", "<rate>", "</rate>",
        ]  # fmt: skip
        ratings.append(float(re.search(r"<rate> (\S+) </rate>", trace).group(1)))
        assert 1 <= ratings[-1] <= 5
        for section in re.findall(r">([^<]*)</", trace):
            assert section.strip()
    rules = teacher_rating(
        *zip(*[(e.user_avg_rating, e.item_avg_rating) for e in data.examples["test"][:40]])
    )
    assert np.mean(np.array(ratings) != rules) > 0.1  # noise reaches the traces
    e = data.examples["test"][0]
    assert teacher_trace(e, data.world, rng, 0.0, "rating_only").startswith("<rate>")
    single = teacher_trace(e, data.world, rng, 0.0, "single_think")
    assert single.startswith("<think>") and "</think>\n<rate>" in single


@pytest.mark.parametrize("noise", [0.0])
def test_noise_free_trace_equals_rule(noise):
    data = load_data(DataConfig(synthetic=SMALL), splits=("test",))
    rng = np.random.default_rng(0)
    for e in data.examples["test"][:20]:
        trace = teacher_trace(e, data.world, rng, noise)
        rule = teacher_rating(e.user_avg_rating, e.item_avg_rating)
        assert f"<rate> {int(rule)} </rate>" in trace


def test_teacher_analysis_is_what_the_prompt_shows():
    """Every mark of the analysis can be read off the prompt's text."""
    from reczero_jax.data.prompts import format_inputs
    from reczero_jax.data.teacher import visible_evidence

    data = load_data(DataConfig(synthetic=SMALL), splits=("test",))
    marks_seen = set()
    for e in data.examples["test"][:60]:
        text = format_inputs(e)
        user_part, item_part = text.split("Earlier reviews")
        ev = visible_evidence(e, data.world)
        for genre, mark in ev["stances"]:
            expected = (
                "pos" if f"love{genre}" in user_part
                else "neg" if f"hate{genre}" in user_part
                else "ok" if f"okay{genre}" in user_part
                else "new"
            )  # fmt: skip
            assert mark == expected, (genre, user_part)
            marks_seen.add(mark)
        assert ev["cares_price"] == ("too pricey" in user_part or "good value" in user_part)
        stance = dict(ev["stances"])
        categories = re.search(r"Categories: (\w+), (\w+)", item_part).groups()
        aspects = dict(ev["aspects"])
        assert list(aspects)[:2] == list(categories)
        assert all(aspects[g] == stance[g] for g in categories)
        review = item_part.split("Target item:")[0]
        good = "well made" in review or "high quality" in review
        bad = "badly made" in review or "low quality" in review
        assert aspects["quality"] == ("pos" if good else "neg" if bad else "ok")
        price = re.search(r"Price: (\w+)", item_part).group(1)
        expected_price = {"cheap": "pos", "pricey": "neg"}.get(price, "ok")
        assert aspects["price"] == (expected_price if ev["cares_price"] else "ok")
        trace = teacher_trace(e, data.world, np.random.default_rng(0), 0.0)
        assert " ".join(f"{n} {m}" for n, m in ev["aspects"]) in trace
    assert marks_seen == {"pos", "neg", "ok", "new"}


def test_teacher_match_ends_with_the_rating_its_analysis_points_to():
    """<match>: verdict, the midpoint (= the rating), then midpoint + #pos - #neg in [1, 5]."""
    from reczero_jax.data.teacher import visible_evidence

    data = load_data(DataConfig(synthetic=SMALL), splits=("test",))
    differs = 0
    for e in data.examples["test"][:80]:
        trace = teacher_trace(e, data.world, np.random.default_rng(0), 0.0)
        marks = [m for _, m in visible_evidence(e, data.world)["aspects"]]
        m = re.search(r"midpoint of the averages (\d) ; by the aspects (\d) </match>", trace)
        midpoint, leaning = int(m.group(1)), int(m.group(2))
        assert midpoint == teacher_rating(e.user_avg_rating, e.item_avg_rating)
        expected = min(5, max(1, midpoint + marks.count("pos") - marks.count("neg")))
        assert leaning == expected
        assert f"<rate> {midpoint} </rate>" in trace  # the rating ignores the leaning
        differs += leaning != midpoint
    assert differs > 10  # the leaning carries information the rule does not use


def test_rewrite_rates_the_true_rating_and_keeps_the_analysis():
    # RecOne's rewrite: a trace whose rating is wrong is written again with the true rating
    # shown; the analysis (a function of the prompt) is the same text
    data = load_data(DataConfig(synthetic=SMALL), splits=("test",))
    changed = 0
    for n, e in enumerate(data.examples["test"][:60]):
        plain = teacher_trace(e, data.world, np.random.default_rng(n), 0.5)
        rewritten = teacher_trace(e, data.world, np.random.default_rng(n), 0.5, rewrite=True)
        assert re.search(r"<rate> (\S+) </rate>", rewritten).group(1) == str(int(e.rating))
        assert plain.split("<rate>")[0] == rewritten.split("<rate>")[0]
        changed += plain != rewritten
    assert changed > 10  # the noisy midpoint rule is wrong often: the rewrite is not a no-op
