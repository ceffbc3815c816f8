"""Hand-derived verdicts and rewards, checked on the reference and on the device."""

from __future__ import annotations

import pytest

from reczero_jax.rewards import Parsed, RewardSpec, parse, reason_names, reasons, reward

FOUR = (
    "<analyze user>likes sci-fi</analyze user>\n<analyze item>a space opera</analyze item>\n"
    "<match>good fit</match>\n<rate>{}</rate>"
)
THINK = "<think>hmm</think><rate>{}</rate>"
RATE = "Answer: <rate>{}</rate>"

# (fmt, text, valid, rating, reason)
VERDICTS = [
    ("four_step", FOUR.format("4.5"), True, 4.5, "ok"),
    ("four_step", FOUR.format(" \n05.000\t"), True, 5.0, "ok"),
    ("four_step", FOUR.format("1") + "<|im_end|>", True, 1.0, "ok"),
    ("four_step", "intro " + FOUR.format("3") + " outro", True, 3.0, "ok"),
    ("four_step", FOUR.format("4").replace("<match>", ""), False, None, "missing_tag:<match>"),
    ("four_step", FOUR.format("4") + "</rate>", False, None, "duplicate_tag:</rate>"),
    ("four_step", "<match>" + FOUR.format("4"), False, None, "duplicate_tag:<match>"),
    (
        "four_step",
        FOUR.format("4").replace("<match>good fit</match>", "")
        .replace("<analyze user>", "<match>good fit</match><analyze user>"),
        False,
        None,
        "order",
    ),
    ("four_step", FOUR.format("4").replace("good fit", " \n\t\r"), False, None,
     "empty_section:<match>"),
    ("four_step", FOUR.format("4").replace("likes sci-fi", ""), False, None,
     "empty_section:<analyze user>"),
    ("four_step", FOUR.format("4").replace("<rate>", "<Rate>"), False, None, "missing_tag:<rate>"),
    ("four_step", FOUR.format("4").replace("</analyze user>", "</analyze  user>"), False, None,
     "missing_tag:</analyze user>"),
    ("four_step", FOUR.format("1."), False, None, "bad_rating"),
    ("four_step", FOUR.format(".5"), False, None, "bad_rating"),
    ("four_step", FOUR.format("+4"), False, None, "bad_rating"),
    ("four_step", FOUR.format("4e0"), False, None, "bad_rating"),
    ("four_step", FOUR.format("4,5"), False, None, "bad_rating"),
    ("four_step", FOUR.format("\uff11"), False, None, "bad_rating"),
    ("four_step", FOUR.format("4 5"), False, None, "bad_rating"),
    ("four_step", FOUR.format(""), False, None, "bad_rating"),
    ("four_step", FOUR.format("5.5"), False, None, "rating_out_of_range"),
    ("four_step", FOUR.format("0.99"), False, None, "rating_out_of_range"),
    ("four_step", FOUR.format("5.0000000001"), False, None, "rating_out_of_range"),
    ("four_step", FOUR.format("0"), False, None, "rating_out_of_range"),
    ("rating_only", RATE.format("4"), True, 4.0, "ok"),
    ("rating_only", "<think></think>" + RATE.format("2.25"), True, 2.25, "ok"),
    ("rating_only", "</rate>" + RATE.format("4"), False, None, "duplicate_tag:</rate>"),
    ("rating_only", "</rate>4<rate>", False, None, "order"),
    ("rating_only", "no tags", False, None, "missing_tag:<rate>"),
    ("single_think", THINK.format("3.5"), True, 3.5, "ok"),
    ("single_think", THINK.format("3.5").replace("hmm", " "), False, None,
     "empty_section:<think>"),
    ("single_think", RATE.format("3"), False, None, "missing_tag:<think>"),
    ("single_think", "<rate>3</rate><think>x</think>", False, None, "order"),
    ("single_think", FOUR.format("3"), False, None, "missing_tag:<think>"),
]  # fmt: skip

# (fmt, rating text or None for an invalid answer, target, {preset: reward})
REWARDS = [
    ("four_step", "4.5", 3.0, {"paper": 1.125, "reference_code": 1.25, "exact": 0.5}),
    ("four_step", "4.4", 4.0, {"paper": 1.4, "reference_code": 1.8, "exact": 1.5}),
    ("four_step", "5", 1.0, {"paper": 0.5, "reference_code": 0.0, "exact": 0.5}),
    ("four_step", "3", 3.0, {"paper": 1.5, "reference_code": 2.0, "exact": 1.5}),
    ("four_step", "2.5", 3.0, {"paper": 1.375, "reference_code": 1.75, "exact": 1.5}),
    ("four_step", "2.49", 2.5, {"paper": 1.4975, "reference_code": 1.995, "exact": 0.5}),
    ("four_step", None, 3.0, {"paper": -0.5, "reference_code": -1.0, "exact": -0.5}),
    ("rating_only", "4", 3.5, {"paper": 1.375, "reference_code": 1.75, "exact": 1.5}),
    ("rating_only", None, 3.5, {"paper": -0.5, "reference_code": -1.0, "exact": -0.5}),
    ("single_think", "1", 5.0, {"paper": 0.5, "reference_code": 0.0, "exact": 0.5}),
    ("single_think", "1.5", 1.0, {"paper": 1.375, "reference_code": 1.75, "exact": 0.5}),
    ("single_think", None, 1.0, {"paper": -0.5, "reference_code": -1.0, "exact": -0.5}),
]
TEMPLATE = {"four_step": FOUR, "rating_only": RATE, "single_think": THINK}


def _answer(fmt, rating):
    return TEMPLATE[fmt].format("6" if rating is None else rating)


@pytest.mark.parametrize("fmt,text,valid,rating,reason", VERDICTS)
def test_reference_verdicts(fmt, text, valid, rating, reason):
    parsed = parse(text, fmt)
    assert (parsed.valid, parsed.rating, parsed.reason) == (valid, rating, reason)
    assert parse(text.encode(), fmt) == parsed
    assert reason in reasons(fmt)


@pytest.mark.parametrize("fmt", ["four_step", "rating_only", "single_think"])
def test_device_verdicts(tiny, fmt):
    _check_device_verdicts(tiny, fmt)


def test_device_verdicts_qwen(qwen):
    _check_device_verdicts(qwen, "four_step")


def _check_device_verdicts(scorer, fmt):
    cases = [c for c in VERDICTS if c[0] == fmt]
    for lo in range(0, len(cases), 8):
        chunk = cases[lo : lo + 8]
        got = scorer.score([scorer.encode(c[1]) for c in chunk], [3.0] * len(chunk),
                           RewardSpec(fmt))  # fmt: skip
        for (_, text, valid, rating, reason), dev in zip(chunk, got):
            assert (dev["valid"], dev["reason"]) == (valid, reason), text
            assert dev["rating"] == pytest.approx(rating or 0.0, abs=1e-6)
            assert not dev["overflow"]


@pytest.mark.parametrize("preset", ["paper", "reference_code", "exact"])
def test_rewards(tiny, preset):
    for fmt in TEMPLATE:
        cases = [c for c in REWARDS if c[0] == fmt]
        texts = [_answer(fmt, rating) for _, rating, _, _ in cases]
        targets = [target for _, _, target, _ in cases]
        got = tiny.score([tiny.encode(t) for t in texts], targets, RewardSpec(fmt, preset))
        for (_, _, target, want), text, dev in zip(cases, texts, got):
            assert reward(parse(text, fmt), target, preset) == pytest.approx(
                want[preset], abs=1e-12
            )
            assert dev["reward"] == pytest.approx(want[preset], abs=1e-6), (text, preset)


def test_reward_of_a_hand_made_parse():
    assert reward(Parsed(True, 4.0, "ok"), 3.0, "paper") == 1.25
    assert reward(Parsed(False, None, "order"), 3.0, "reference_code") == -1.0


def test_reason_names_and_errors():
    assert reason_names("rating_only") == (
        "ok", "overflow", "missing_tag:<rate>", "duplicate_tag:<rate>", "missing_tag:</rate>",
        "duplicate_tag:</rate>", "order", "bad_rating", "rating_out_of_range",
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown answer format"):
        RewardSpec(fmt="five_step")
    with pytest.raises(ValueError, match="unknown reward preset"):
        RewardSpec(preset="nice")
    with pytest.raises(ValueError, match="max_bytes"):
        RewardSpec(max_bytes=0)
    with pytest.raises(ValueError, match="unknown answer format"):
        parse("x", "five_step")
    with pytest.raises(TypeError, match="str or bytes"):
        parse(3)
    assert hash(RewardSpec()) == hash(RewardSpec("four_step", "paper", None))
