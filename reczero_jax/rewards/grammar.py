"""The answer grammar and reward presets shared by the reference and the device implementation.

A format is an ordered tuple of tag pairs ``(open, close)``. An answer is valid for a format iff
(rules checked in this order; the first that fails names the reason):

1. ``overflow``: the answer is at most ``max_bytes`` bytes long (when a cap is set).
2. ``missing_tag:<t>`` / ``duplicate_tag:<t>``: every tag of the format occurs exactly once,
   counted as byte-exact, case-sensitive substring matches anywhere in the text (tags are
   checked in format order, open before close).
3. ``order``: the occurrences come in format order without overlap:
   ``pos[k] + len(tag[k]) <= pos[k + 1]`` for consecutive tags.
4. ``empty_section:<open>``: every section but the last (the rating) holds at least one byte
   that is not ASCII whitespace (space, tab, newline, carriage return).
5. ``bad_rating``: the last section matches ``^[ \\t\\n\\r]*[0-9]+(\\.[0-9]+)?[ \\t\\n\\r]*$``.
6. ``rating_out_of_range``: its exact decimal value p lies in [1, 5].

Text before, between and after the blocks is free. Presets map (valid, p, target t) to a reward:

- ``paper``:          valid: 0.5 + (1 - |p - t| / 4);  invalid: -0.5
- ``reference_code``: valid: 1 + (1 - |p - t| / 2);    invalid: -1
- ``exact``:          valid: 0.5 + [rhu(p) == rhu(t)];  invalid: -0.5,
  with rhu(x) = floor(x + 1/2) (round half up) on the exact value of x.
"""

from __future__ import annotations

__all__ = [
    "FORMATS",
    "PRESETS",
    "WHITESPACE",
    "check_preset",
    "format_pairs",
    "format_tags",
    "preset_constants",
    "reasons",
]

FORMATS: dict[str, tuple[tuple[str, str], ...]] = {
    "four_step": (
        ("<analyze user>", "</analyze user>"),
        ("<analyze item>", "</analyze item>"),
        ("<match>", "</match>"),
        ("<rate>", "</rate>"),
    ),
    "rating_only": (("<rate>", "</rate>"),),
    "single_think": (("<think>", "</think>"), ("<rate>", "</rate>")),
}

# preset -> (valid offset c, scale s, invalid reward); valid reward is c + (1 - |p - t| / s),
# except for "exact" whose valid reward is c + [rhu(p) == rhu(t)] (scale unused).
_PRESETS: dict[str, tuple[float, float, float]] = {
    "paper": (0.5, 4.0, -0.5),
    "reference_code": (1.0, 2.0, -1.0),
    "exact": (0.5, 0.0, -0.5),
}
PRESETS: tuple[str, ...] = tuple(_PRESETS)

WHITESPACE = b" \t\n\r"


def format_pairs(fmt: str) -> tuple[tuple[bytes, bytes], ...]:
    """The (open, close) tag pairs of ``fmt`` as UTF-8 bytes; the last pair holds the rating."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; expected one of {sorted(FORMATS)}")
    return tuple((o.encode(), c.encode()) for o, c in FORMATS[fmt])


def format_tags(fmt: str) -> tuple[bytes, ...]:
    """All tags of ``fmt`` in the required order (open_0, close_0, open_1, ...)."""
    return tuple(tag for pair in format_pairs(fmt) for tag in pair)


def check_preset(preset: str) -> str:
    if preset not in _PRESETS:
        raise ValueError(f"unknown reward preset {preset!r}; expected one of {list(PRESETS)}")
    return preset


def preset_constants(preset: str) -> tuple[float, float, float]:
    """(valid offset, distance scale, invalid reward) of ``preset`` (scale 0 for 'exact')."""
    return _PRESETS[check_preset(preset)]


def reasons(fmt: str) -> tuple[str, ...]:
    """Reason names in rule order; index 0 is 'ok'. The device reports indices into this."""
    format_pairs(fmt)  # validates fmt
    pairs = FORMATS[fmt]
    out = ["ok", "overflow"]
    for tag in (t for pair in pairs for t in pair):
        out += [f"missing_tag:{tag}", f"duplicate_tag:{tag}"]
    out.append("order")
    out += [f"empty_section:{open_tag}" for open_tag, _ in pairs[:-1]]
    out += ["bad_rating", "rating_out_of_range"]
    return tuple(out)
