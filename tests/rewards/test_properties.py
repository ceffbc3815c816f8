"""Property tests: the device implementation equals the reference, whatever the tokenization."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reczero_jax.rewards import RewardSpec, parse, reward
from reczero_jax.text import decode_bytes
from tests.rewards.scorer import ROWS, TOKENS
from tests.rewards.strategies import answers, segmented

TARGETS = st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0, 2.5, 3.5, 4.25, 1.75])
FMTS = ("four_step", "rating_only", "single_think")


def _assert_agree(scorer, rows, targets, spec, texts=None):
    """Device results vs the reference on the decoded bytes (and on ``texts`` when given)."""
    cap = spec.capacity(TOKENS)
    got = scorer.score(rows, targets, spec)
    for n, (ids, target, dev) in enumerate(zip(rows, targets, got)):
        data = decode_bytes(scorer.table, ids)
        ref = parse(data, spec.fmt, max_bytes=cap)
        if texts is not None:
            assert parse(texts[n], spec.fmt, max_bytes=cap) == ref
        assert (dev["valid"], dev["reason"]) == (ref.valid, ref.reason), data
        assert dev["rating"] == pytest.approx(ref.rating or 0.0, abs=1e-5), data
        assert dev["reward"] == pytest.approx(reward(ref, target, spec.preset), abs=1e-5), data
        assert dev["overflow"] == (len(data) > cap)


def _fit(ids: list[int]) -> list[int]:
    return ids[:TOKENS]


@pytest.mark.parametrize("fmt", FMTS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_perturbed_answers_agree(tiny, fmt, data):
    preset = data.draw(st.sampled_from(["paper", "reference_code", "exact"]))
    texts = [data.draw(answers(fmt)) for _ in range(ROWS)]
    rows = [tiny.encode(t) for t in texts]
    keep = [len(r) <= TOKENS for r in rows]
    texts = [t for t, k in zip(texts, keep) if k]
    rows = [r for r, k in zip(rows, keep) if k]
    targets = [data.draw(TARGETS) for _ in rows]
    _assert_agree(tiny, rows, targets, RewardSpec(fmt, preset), texts)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_any_segmentation_agrees(scorer, data):
    """The same text cut into tokens at random places (down to one char per piece)."""
    text = data.draw(answers("four_step"))
    rows = []
    for _ in range(ROWS):
        kind = data.draw(st.sampled_from(["normal", "cuts", "chars"]))
        if kind == "normal":
            rows.append(scorer.encode(text))
        elif kind == "cuts":
            rows.append(segmented(scorer.tokenizer, text, data.draw(st.lists(st.integers(0, 300)))))
        else:
            rows.append(segmented(scorer.tokenizer, text, list(range(len(text)))))
    rows = [_fit(r) for r in rows]
    if all(len(r) > 0 for r in rows) and all(
        decode_bytes(scorer.table, r) == decode_bytes(scorer.table, rows[0]) for r in rows
    ):
        got = scorer.score(rows, [3.0] * ROWS)
        assert all(g == got[0] for g in got), got
    _assert_agree(scorer, rows, [3.0] * ROWS, RewardSpec())


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_random_ids_and_garbage_after_length(tiny, data):
    """Arbitrary ids (out-of-range ones add no bytes); ids after each length are ignored."""
    vocab = tiny.table.vocab_size
    pieces = [i for tag in ("<rate>", "</rate>", "<match>", "4.5", " x") for i in tiny.encode(tag)]
    ids = st.one_of(st.integers(-3, vocab + 3), st.sampled_from(pieces))
    rows = [_fit(tiny.encode(data.draw(answers("four_step")))) for _ in range(ROWS // 2)]
    rows += [data.draw(st.lists(ids, max_size=TOKENS)) for _ in range(ROWS - len(rows))]
    _assert_agree(tiny, rows, [3.0] * ROWS, RewardSpec())
    garbage = data.draw(st.lists(st.sampled_from(pieces), min_size=1, max_size=20))
    assert tiny.score(rows, [3.0] * ROWS, pad_ids=garbage) == tiny.score(rows, [3.0] * ROWS)
