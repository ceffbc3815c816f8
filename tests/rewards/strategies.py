"""Hypothesis strategies: well-formed answers with random perturbations, and segmentations."""

from __future__ import annotations

from hypothesis import strategies as st

from reczero_jax.rewards.fuzz_corpus import BAD_RATINGS, CONTENTS, OUT_OF_RANGE, VALID_RATINGS
from reczero_jax.rewards.grammar import FORMATS

FILLER = ("", "\n", " ", "\n\n", "Ok.", "<|im_end|>", "中", "</ra", "te>", "<", ">\n")
ALL_TAGS = tuple(tag for pairs in FORMATS.values() for pair in pairs for tag in pair)

ratings = st.one_of(
    st.sampled_from(VALID_RATINGS),
    st.from_regex(r"\A[ \t\n\r]{0,2}0{0,3}([1-4](\.[0-9]{1,12})?|5(\.0{1,5})?)[ \n]{0,2}\Z"),
    st.from_regex(r"\A[ \t\n\r]{0,2}[0-9]{1,12}(\.[0-9]{1,14})?[ \t\n\r]{0,2}\Z"),
    st.sampled_from(BAD_RATINGS + OUT_OF_RANGE),
    st.from_regex(r"\A[0-9.+\-eE, ]{0,6}\Z"),
)
contents = st.one_of(
    st.sampled_from(CONTENTS),
    st.sampled_from(CONTENTS),
    st.text(min_size=1, max_size=8),
    st.sampled_from(("", " ", "\n\t\r ")),
)


@st.composite
def answers(draw, fmt: str) -> str:
    """A well-formed answer for ``fmt`` with 0-3 random perturbations."""
    blocks = []
    pairs = FORMATS[fmt]
    for j, (open_tag, close_tag) in enumerate(pairs):
        body = draw(ratings) if j == len(pairs) - 1 else draw(contents)
        blocks.append([open_tag, body, close_tag])
    for _ in range(draw(st.sampled_from((0, 0, 1, 1, 2, 3)))):
        op = draw(st.sampled_from(["drop", "duplicate", "swap", "blank", "insert", "other_tag"]))
        j = draw(st.integers(0, len(blocks) - 1))
        side = draw(st.sampled_from([0, 2]))
        if op == "drop":
            blocks[j][side] = ""
        elif op == "duplicate":
            blocks[draw(st.integers(0, len(blocks) - 1))][1] += draw(st.sampled_from(blocks[j]))
        elif op == "swap":
            k = draw(st.integers(0, len(blocks) - 1))
            blocks[j], blocks[k] = blocks[k], blocks[j]
        elif op == "blank":
            blocks[j][1] = draw(st.sampled_from(("", " ", "\n", "\r\n\t")))
        elif op == "insert":
            blocks[j][1] += draw(st.sampled_from(FILLER))
        else:
            blocks[j][1] += draw(st.sampled_from(ALL_TAGS))
    seps = st.sampled_from(FILLER)
    return draw(seps) + "".join(draw(seps) + "".join(b) for b in blocks) + draw(seps)


def segmented(tokenizer, text: str, cuts: list[int]) -> list[int]:
    """Encode ``text`` piece by piece at the given character cut points."""
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    ids: list[int] = []
    for a, b in zip(points, points[1:]):
        ids += tokenizer.encode(text[a:b], add_special_tokens=False)
    return ids
