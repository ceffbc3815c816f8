"""Plain-Python reference implementation of the answer grammar and rewards (on bytes).

It is the specification in code (see ``grammar`` for the rules): slow, obvious, exact. Ratings
are read as exact decimals (``decimal.Decimal``) so that the range test ``1 <= p <= 5`` and the
rounding of the ``exact`` preset do not depend on float rounding; ``Parsed.rating`` is the
nearest Python float.
"""

from __future__ import annotations

import dataclasses
import math
import re
from decimal import Decimal

from reczero_jax.rewards.grammar import (
    FORMATS,
    WHITESPACE,
    format_pairs,
    preset_constants,
)

__all__ = ["Parsed", "parse", "reward", "round_half_up", "sections"]

_RATING = re.compile(rb"[ \t\n\r]*([0-9]+(?:\.[0-9]+)?)[ \t\n\r]*")


@dataclasses.dataclass(frozen=True)
class Parsed:
    """Result of ``parse``.

    Attributes:
      valid: the answer follows the format.
      rating: the parsed rating as a float when valid, else None.
      reason: 'ok' when valid, else the first failed rule (e.g. 'missing_tag:<match>').
      exact: the rating as an exact Decimal when valid, else None.
    """

    valid: bool
    rating: float | None
    reason: str
    exact: Decimal | None = None


def _invalid(reason: str) -> Parsed:
    return Parsed(False, None, reason)


def _count(data: bytes, tag: bytes) -> int:
    """Occurrences of ``tag`` starting at any position (overlapping allowed)."""
    count, at = 0, data.find(tag)
    while at != -1:
        count, at = count + 1, data.find(tag, at + 1)
    return count


def parse(text: str | bytes, fmt: str = "four_step", max_bytes: int | None = None) -> Parsed:
    """Check ``text`` against format ``fmt`` and read its rating.

    Args:
      text: the response; a str is encoded as UTF-8.
      fmt: 'four_step', 'rating_only' or 'single_think'.
      max_bytes: when set, a text longer than this many bytes is invalid ('overflow'),
        mirroring the device byte-stream capacity.
    """
    if isinstance(text, str):
        data = text.encode("utf-8")
    elif isinstance(text, bytes | bytearray | memoryview):
        data = bytes(text)
    else:
        raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
    pairs = format_pairs(fmt)
    if max_bytes is not None and len(data) > max_bytes:
        return _invalid("overflow")
    tags = [tag for pair in pairs for tag in pair]
    for tag in tags:
        count = _count(data, tag)
        if count != 1:
            kind = "missing_tag" if count == 0 else "duplicate_tag"
            return _invalid(f"{kind}:{tag.decode()}")
    positions = [data.find(tag) for tag in tags]
    for k in range(len(tags) - 1):
        if positions[k] + len(tags[k]) > positions[k + 1]:
            return _invalid("order")
    sections = [
        data[positions[2 * j] + len(open_tag) : positions[2 * j + 1]]
        for j, (open_tag, _) in enumerate(pairs)
    ]
    for (open_tag, _), content in zip(pairs[:-1], sections[:-1]):
        if not content.strip(WHITESPACE):
            return _invalid(f"empty_section:{open_tag.decode()}")
    match = _RATING.fullmatch(sections[-1])
    if match is None:
        return _invalid("bad_rating")
    value = Decimal(match.group(1).decode("ascii"))
    if not 1 <= value <= 5:
        return _invalid("rating_out_of_range")
    return Parsed(True, float(value), "ok", value)


def round_half_up(x: float | Decimal) -> int:
    """floor(x + 1/2) on the exact value of ``x`` (a float is taken at its exact binary value)."""
    return math.floor(Decimal(x) + Decimal("0.5"))


def reward(parsed: Parsed, target: float, preset: str = "paper") -> float:
    """The reward of one parsed response for target rating ``target`` (formulas in ``grammar``)."""
    offset, scale, invalid = preset_constants(preset)
    if not parsed.valid:
        return invalid
    exact = parsed.exact if parsed.exact is not None else Decimal(parsed.rating)
    if preset == "exact":
        return offset + (1.0 if round_half_up(exact) == round_half_up(target) else 0.0)
    return offset + (1.0 - abs(float(exact) - float(target)) / scale)


def sections(text: str, fmt: str = "four_step") -> dict[str, str]:
    """The text inside each tag pair of ``fmt`` (keyed by the tag's name, e.g.
    'analyze user', 'rate'), stripped; '' for a pair that is missing or unclosed. For
    showing an answer's reasoning: whether it is valid is :func:`parse`'s verdict."""
    out = {}
    for open_tag, close_tag in FORMATS[fmt]:
        start = text.find(open_tag)
        end = text.find(close_tag, start + len(open_tag)) if start >= 0 else -1
        name = open_tag.strip("<>")
        out[name] = text[start + len(open_tag) : end].strip() if end >= 0 else ""
    return out
