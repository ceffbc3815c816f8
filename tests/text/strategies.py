"""Hypothesis strategies shared by the text tests."""

from __future__ import annotations

from hypothesis import strategies as st

FRAGMENTS = (
    "</rate>",
    "<rate>",
    "</",
    "rate",
    ">",
    ">\n",
    "\n",
    "\n\n",
    " ",
    "4.5",
    "3",
    "<analyze user>",
    "</analyze user>",
    "<analyze item>",
    "</analyze item>",
    "<match>",
    "</match>",
    "<|im_end|>",
    "<|im_",
    "end|>",
    "<|endoftext|>",
    "</ra",
    "te>",
    "é",
    "中文",
    "中文!",
    "!",
    "😀",
    "The user liked the movie.",
    " great",
)

texts = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), min_size=0, max_size=12
).map("".join)
