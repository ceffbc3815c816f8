"""Splits and histories: the no-leak property, checked against brute force."""

import numpy as np
import pytest

from reczero_jax.data.examples import build_examples
from reczero_jax.data.splits import TEST, TRAIN, VALID, assign_splits
from reczero_jax.data.tables import Item, Ratings


def random_ratings(seed: int, n: int = 400, users: int = 25, items: int = 15) -> Ratings:
    """Ratings with many equal timestamps (times drawn from 30 values)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, n)
    i = rng.integers(0, items, n)
    return Ratings.from_columns(
        [f"u{x}" for x in u],
        [f"i{x}" for x in i],
        rng.integers(1, 6, n).astype(float),
        rng.integers(0, 30, n),
        [f"review {k}" for k in range(n)],
        ["" for _ in range(n)],
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("split_name", ["leave_last_out", "global_time"])
def test_no_example_sees_its_target_or_later(seed, split_name):
    r = random_ratings(seed)
    split = assign_splits(r, split_name, 0.2, 0.2)
    examples, _ = build_examples(r, {}, split, history_len=4, item_history_len=3)
    all_examples = [e for v in examples.values() for e in v]
    assert all_examples
    users = r.user_ids[r.user]
    items = r.item_ids[r.item]
    for e in all_examples:
        t = e.timestamp
        assert all(h.timestamp < t for h in e.user_history)
        assert all(h.timestamp < t for h in e.item_history)
        assert all(h.user_id != e.user_id for h in e.item_history)
        # brute force in canonical order
        u_rows = np.flatnonzero((users == e.user_id) & (r.timestamp < t))
        i_rows = np.flatnonzero((items == e.item_id) & (r.timestamp < t))
        i_other = [k for k in i_rows if users[k] != e.user_id]
        assert [h.review for h in e.user_history] == list(r.review[u_rows[-4:]])
        assert [h.review for h in e.item_history] == [r.review[k] for k in i_other[-3:]]
        assert e.user_avg_rating == pytest.approx(r.rating[u_rows].mean())
        assert e.item_avg_rating == pytest.approx(r.rating[i_rows].mean())
        assert e.user_num_ratings == len(u_rows) and e.item_num_ratings == len(i_rows)


def test_equal_timestamps_never_see_each_other():
    r = Ratings.from_columns(
        ["a", "a", "b", "a"], ["x", "y", "x", "x"], [1, 2, 3, 4], [5, 5, 5, 9], ["", "", "", ""],
        ["", "", "", ""],
    )  # fmt: skip
    split = np.full(4, TRAIN, np.int8)
    ex, stats = build_examples(r, {}, split)
    (only,) = ex["train"]  # a's rating of x at t=9 sees a's two ratings and b's rating at 5
    assert only.timestamp == 9 and len(only.user_history) == 2 and len(only.item_history) == 1
    assert stats["dropped_empty_user_history"] == 3


def test_leave_last_out():
    r = random_ratings(3)
    split = assign_splits(r, "leave_last_out")
    for u in range(r.num_users):
        rows = np.flatnonzero(r.user == u)  # canonical = chronological order
        expected = [TRAIN] * max(0, len(rows) - 2) + [VALID, TEST][-min(2, len(rows)) :]
        assert split[rows].tolist() == expected


def test_global_time_keeps_ties_together():
    r = random_ratings(4)
    split = assign_splits(r, "global_time", 0.1, 0.1)
    for t in np.unique(r.timestamp):
        assert len(set(split[r.timestamp == t].tolist())) == 1
    assert r.timestamp[split == TRAIN].max() < r.timestamp[split == VALID].min()
    assert r.timestamp[split == VALID].max() < r.timestamp[split == TEST].min()


def test_filters_and_item_text():
    r = random_ratings(5)
    split = assign_splits(r, "leave_last_out")
    _, loose = build_examples(r, {}, split)
    ex, strict = build_examples(r, {}, split, min_history_total=5)
    assert strict["dropped_min_history_total"] > 0 and loose["dropped_min_history_total"] == 0
    assert all(len(e.user_history) + len(e.item_history) >= 5 for v in ex.values() for e in v)
    e = ex["test"][0]
    assert e.item_info.startswith("Summaries of earlier reviews:")  # no meta given
    items = {e.item_id: Item(e.item_id, title="Nice thing", categories=("Toys",))}
    ex2, _ = build_examples(r, items, split, min_history_total=5)
    e2 = next(x for x in ex2["test"] if x.item_id == e.item_id)
    assert e2.item_title == "Nice thing" and e2.item_info == "Categories: Toys"


def test_review_cut():
    r = Ratings.from_columns(
        ["a", "b", "a"], ["x", "x", "y"], [1, 2, 3], [1, 2, 3], ["long text " * 50] * 3, [""] * 3
    )
    ex, _ = build_examples(r, {}, np.zeros(3, np.int8), review_chars=7, splits=("train",))
    assert all(len(h.review) <= 7 for e in ex["train"] for h in e.user_history)


def test_item_history_len_zero_shows_no_item_reviews_but_keeps_the_averages():
    r = random_ratings(3)
    split = assign_splits(r, "leave_last_out", 0.2, 0.2)
    with_reviews, _ = build_examples(r, {}, split, history_len=4, item_history_len=3)
    without, _ = build_examples(r, {}, split, history_len=4, item_history_len=0)
    for name in with_reviews:
        key = {(e.user_id, e.item_id, e.timestamp): e for e in without[name]}
        # Every example with shown reviews survives, with the same item average; without
        # reviews an example needs only earlier ratings of the item (any user's).
        for e in with_reviews[name]:
            assert key[(e.user_id, e.item_id, e.timestamp)].item_avg_rating == e.item_avg_rating
        assert all(not e.item_history and e.item_num_ratings >= 1 for e in without[name])
