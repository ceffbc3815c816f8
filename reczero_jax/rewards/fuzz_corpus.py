"""A deterministic corpus of responses that exercises every rule of the grammar.

``fuzz_cases(fmt, preset, seed)`` returns a few hundred dicts ``{"response", "target"}``; cases
whose verdict is known by construction also carry ``expect_valid`` (and, when valid,
``expect_rating`` and ``expect_reward``, computed from the constructed rating, not by the
parser). Used by ``reczero_jax.tools.check_tokenizer`` and the tests.
"""

from __future__ import annotations

import random
from decimal import Decimal

from reczero_jax.rewards.grammar import FORMATS, preset_constants
from reczero_jax.rewards.reference import round_half_up

__all__ = ["BAD_RATINGS", "OUT_OF_RANGE", "VALID_RATINGS", "fuzz_cases"]

VALID_RATINGS = (
    "1", "2", "3", "4", "5", "3.5", "4.25", "5.0", "05", "1.0000", "004.500", "1.999999",
    "2.5", " 4 ", "\n3\n", "\t2.75\r\n", "4.123456789012", "4.999999999999", "1.00000000001",
    "3.4999", "2.05",
)  # fmt: skip
BAD_RATINGS = (
    "1.", ".5", "+4", "-4", "4e0", "4,5", "\uff11", "\uff14.\uff15", "four", "", "   ", "4 5",
    "4..5", "4.5.1", "0x4", "4/5", "~4", "4.5 stars", "[4]", "\u0664", "4.5\u00a0", "\x0b4",
    "4 .5", "4. 5", "rating: 4", "4\n\n5", "5!", "٣",
)  # fmt: skip
OUT_OF_RANGE = (
    "0", "0.99", "5.5", "6", "10", "5.0001", "0.5", "00000.5", "50", "100", "5.000000000001",
    "99999999999999999999", "0.0", "9", "15", "5.00000000000000000001",
)  # fmt: skip
CONTENTS = (
    "The user likes science fiction and long novels.",
    "x",
    "  padded  ",
    "line one\nline two",
    "[pos] catchy songs [neg] short battery",
    "中文内容，喜欢科幻。",
    "émotions 😀 and more",
    "e\u0301 combining",
    "a < b > c",
    "tab\there",
    "4.5 stars elsewhere",
    "</ra te> <rate",
)
SEPARATORS = ("\n", "", "\n\n", " ", "\nSome text in between.\n", "\r\n")
PREFIXES = ("", "Sure! Here is my analysis:\n", "<|im_start|>assistant\n", "  \n", "Okay. ")
SUFFIXES = ("", "\n", "<|im_end|>", "\n<|im_end|>", "<|endoftext|>", "\nThanks!", " </rate")
TARGETS = (1.0, 2.0, 3.0, 4.0, 5.0, 3.5, 2.5, 4.5, 1.75, 4.25)
BLANK = ("", " ", "\n", "\n\t \r\n")
TAG_VARIANTS = {
    "<rate>": ("<Rate>", "< rate>", "<rate >", "＜rate＞", "<rate/>"),
    "</rate>": ("</Rate>", "</ rate>", "<rate/>", "< /rate>"),
    "<analyze user>": ("<analyze  user>", "<analyze_user>", "<analyzeuser>", "<Analyze user>"),
    "<match>": ("<Match>", "<matc h>", "<matching>"),
    "<think>": ("<Think>", "<thinking>"),
}
FRAGMENTS = ("<", ">", "</", "\n", " ", "4", ".", "5", "rate", "<rate>", "</rate>", "<match>")


def _expected_reward(rating: str, target: float, preset: str) -> float:
    offset, scale, _ = preset_constants(preset)
    value = Decimal(rating.strip(" \t\n\r"))
    if preset == "exact":
        return offset + (1.0 if round_half_up(value) == round_half_up(target) else 0.0)
    return offset + (1.0 - abs(float(value) - target) / scale)


class _Builder:
    def __init__(self, fmt: str, preset: str, seed: int):
        self.pairs = FORMATS[fmt]
        self.preset = preset
        self.rng = random.Random(seed)
        self.cases: list[dict] = []

    def blocks(self, rating: str, contents=None) -> list[list[str]]:
        """Per block [open, content, close]; contents default to random ones."""
        out = []
        for j, (open_tag, close_tag) in enumerate(self.pairs):
            if j == len(self.pairs) - 1:
                content = rating
            elif contents is not None:
                content = contents[j]
            else:
                content = self.rng.choice(CONTENTS)
                content = self.rng.choice(("{}", "\n{}\n", " {} ")).format(content)
            out.append([open_tag, content, close_tag])
        return out

    def join(self, blocks, prefix=None, suffix=None) -> str:
        rng = self.rng
        parts = [rng.choice(PREFIXES) if prefix is None else prefix]
        for k, block in enumerate(blocks):
            if k:
                parts.append(rng.choice(SEPARATORS))
            parts.append("".join(block))
        parts.append(rng.choice(SUFFIXES) if suffix is None else suffix)
        return "".join(parts)

    def add(self, response: str, valid: bool | None, rating: str | None = None) -> None:
        target = self.rng.choice(TARGETS)
        case = {"response": response, "target": target}
        if valid is not None:
            case["expect_valid"] = valid
        if valid and rating is not None:
            case["expect_rating"] = float(Decimal(rating.strip(" \t\n\r")))
            case["expect_reward"] = _expected_reward(rating, target, self.preset)
        self.cases.append(case)

    def valid_rating(self) -> str:
        return self.rng.choice(VALID_RATINGS)


def _rules(b: _Builder) -> None:
    rng, n_tags = b.rng, 2 * len(b.pairs)
    for rating in VALID_RATINGS:
        for _ in range(3):
            b.add(b.join(b.blocks(rating)), True, rating)
    for rating in BAD_RATINGS + OUT_OF_RANGE:
        b.add(b.join(b.blocks(rating)), False)
    for k in range(n_tags):  # missing tag k / duplicated tag k / a variant spelling of tag k
        for where in ("prefix", "inside", "suffix"):
            blocks = b.blocks(b.valid_rating())
            flat = [t for block in blocks for t in (block[0], block[2])]
            tag = flat[k]
            missing = [list(block) for block in blocks]
            missing[k // 2][0 if k % 2 == 0 else 2] = ""
            b.add(b.join(missing), False)
            if where == "prefix":
                b.add(b.join(blocks, prefix=f"Plan: {tag}\n"), False)
            elif where == "suffix":
                b.add(b.join(blocks, suffix=f"\n{tag}"), False)
            else:
                dup = [list(block) for block in blocks]
                dup[rng.randrange(len(dup))][1] += tag
                b.add(b.join(dup), False)
            for variant in TAG_VARIANTS.get(tag, ()):
                changed = [list(block) for block in blocks]
                changed[k // 2][0 if k % 2 == 0 else 2] = variant
                b.add(b.join(changed), False)
    for _ in range(4):  # order: swapped blocks, swapped open/close
        blocks = b.blocks(b.valid_rating())
        if len(blocks) > 1:
            i, j = rng.sample(range(len(blocks)), 2)
            blocks[i], blocks[j] = blocks[j], blocks[i]
            b.add(b.join(blocks), False)
        blocks = b.blocks(b.valid_rating())
        block = blocks[rng.randrange(len(blocks))]
        block[0], block[2] = block[2], block[0]
        b.add(b.join(blocks), False)
    for j in range(len(b.pairs) - 1):  # whitespace-only sections
        for blank in BLANK:
            contents = [rng.choice(CONTENTS) for _ in b.pairs]
            contents[j] = blank
            b.add(b.join(b.blocks(b.valid_rating(), contents)), False)
    # nested blocks: a whole rating block inside another section, or the first block inside.
    if len(b.pairs) > 1:
        blocks = b.blocks("4")
        blocks[0][1] += "".join(blocks[-1])
        b.add(b.join(blocks), False)
    blocks = b.blocks("3")
    b.add(b.join(blocks, prefix="".join(blocks[0])), False)


def _layout(b: _Builder) -> None:
    """Valid answers with odd but legal layouts, unicode and long content."""
    rng = b.rng
    for rating in ("4", "3.5", "5.0", "1"):
        blocks = b.blocks(rating)
        b.add("".join("".join(block) for block in blocks), True, rating)  # no separators
        b.add("\n".join("".join(block) for block in blocks) + ">\n\n", True, rating)
        b.add(b.join(blocks, suffix="</rate\n<|im_end|>"), True, rating)
        b.add(b.join(blocks, prefix="<rate <rate/ </rat ", suffix=""), True, rating)
    for size in (300, 1000, 2500, 6000):
        filler = " ".join(rng.choice(CONTENTS) for _ in range(size // 30))[:size]
        contents = [filler for _ in b.pairs]
        rating = b.valid_rating()
        b.add(b.join(b.blocks(rating, contents)), True, rating)
        b.add(b.join(b.blocks(rating), suffix="\n" + filler), True, rating)


def _mutations(b: _Builder, count: int) -> None:
    """Random edits of valid answers; no expectation (the two implementations must agree)."""
    rng = b.rng
    for _ in range(count):
        text = b.join(b.blocks(rng.choice(VALID_RATINGS + BAD_RATINGS + OUT_OF_RANGE)))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text) + 1)
            j = min(len(text), i + rng.randint(0, 8))
            op = rng.randrange(3)
            if op == 0:
                text = text[:i] + text[j:]
            elif op == 1:
                text = text[:i] + rng.choice(FRAGMENTS) + text[i:]
            else:
                text = text[:i] + text[i:j] + text[i:]
        b.add(text, None)


def fuzz_cases(fmt: str = "four_step", preset: str = "paper", seed: int = 0) -> list[dict]:
    """The built-in corpus for ``fmt`` / ``preset`` (deterministic for a given seed)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; expected one of {sorted(FORMATS)}")
    preset_constants(preset)
    b = _Builder(fmt, preset, seed)
    _rules(b)
    _layout(b)
    _mutations(b, 150)
    return b.cases
