"""The review teacher: RecOne cold-start traces for real review data, from an Example alone.

The synthetic world's teacher (:mod:`reczero_jax.data.teacher`) reads the world's latents;
real data has none. This teacher states only what the prompt (``prompts.format_inputs``)
shows, and rates by the same midpoint rule:

    rule(x) = clip(floor((user_avg_rating + item_avg_rating) / 2 + 1/2), 1, 5)

plus N(0, noise) before the rounding in traces (a noise-free teacher makes every GRPO group
agree; ``../shared/docs/demo-notes.md``). Its analysis:

* user: the user's shown ratings (oldest first, as printed), how many of them are high
  (4 or more stars) and low (2 or fewer), the average and count as printed. The prompt shows
  no categories of the history's items (only their titles), so no per-category figure;
* item: the item's categories when its information line shows them (``Categories: ...``,
  Amazon with a meta file), the other users' shown earlier ratings of it with their high
  and low counts, up to two ``[pos]`` and two ``[neg]`` words of a small fixed lexicon
  found in its shown reviews and review summaries, the average and count as printed;
* match: whether the item's printed average is above, the same as or below the user's,
  which kind of word the item's shown texts hold more of, and the midpoint of the averages.

The [pos] / [neg] marks are a fixed lexicon's, not a reading of the text ("very cheap" in
a 5-star review is marked [neg]); the rating ignores them, as the synthetic teacher's
rating ignores its analysis: the cold start teaches the format and the reading, GRPO on the
rating alone decides what to make of them.

A training prompt of ``configs/amazon_music.py`` and its noise-free trace:

    User history (oldest first):
    1. B0002E1G5C | rating 5 | Works great for changing guitar strings. Good build and does
    2. B0002GYW4C | rating 5 | Very soft gray microfiber cleaning cloth. Big and wide enoug
    3. B0002H0A3S | rating 2 | Bought these to try them out the medium gauge and brand. Med
    Earlier reviews of the target item by other users (oldest first):
    1. rating 5 | Used this on my mandolin and it brought back the new instrum
    2. rating 5 | I love this product! It is very cheap and the spray bottle m
    Target item: B000EELB8W
    Item information: Summaries of earlier reviews: Works well | Helps to maintain shine on guitar
    User average rating: 4.00 (over 3 ratings)
    Target item average rating: 4.90 (over 10 ratings)

    <analyze user> ratings 5 5 2 ; high 2 low 1 ; average 4.00 over 3 </analyze user>
    <analyze item> ratings 5 5 ; high 2 low 0 ; [pos] love works [neg] cheap ; average 4.90 over 10 </analyze item>
    <match> the item is rated above this user's average ; more [pos] words ; midpoint of the averages 4 </match>
    <rate> 4 </rate>

(The user rated it 5.)

Pure functions of their arguments; ``rl.traces.teacher_traces`` draws the traces of a
cold start with it when there is no synthetic world.
"""  # noqa: E501

from __future__ import annotations

import re

import numpy as np

from reczero_jax.data.examples import Example, HistoryEntry, ItemReview
from reczero_jax.data.teacher import format_answer, rule_ratings

HIGH, LOW = 4.0, 2.0  # a shown rating >= HIGH is high, <= LOW is low
MAX_WORDS = 2  # at most this many [pos] and this many [neg] words
POS_WORDS = frozenset({
    "great", "good", "love", "loved", "nice", "excellent", "perfect", "best", "easy", "works",
    "well", "solid", "sturdy", "awesome", "recommended", "recommend", "happy", "fine",
    "pleased", "amazing", "beautiful",
})  # fmt: skip
NEG_WORDS = frozenset({
    "bad", "poor", "broke", "broken", "disappointed", "disappointing", "cheap", "problem",
    "problems", "worst", "returned", "return", "junk", "flimsy", "terrible", "useless",
    "noisy", "waste", "failed", "hate", "hated",
})  # fmt: skip
_WORD = re.compile(r"[a-z]+")


def shown_histories(
    example: Example, num_dropped: int = 0
) -> tuple[list[HistoryEntry], list[ItemReview]]:
    """The user and item history entries the prompt shows when its ``num_dropped`` oldest
    entries are left out (the rule of ``prompts.format_inputs``: oldest first across both
    histories, an item review before a user entry of the same time)."""
    entries = [(e.timestamp, 0, n) for n, e in enumerate(example.item_history)]
    entries += [(e.timestamp, 1, n) for n, e in enumerate(example.user_history)]
    dropped = {(kind, n) for _, kind, n in sorted(entries)[:num_dropped]}
    user = [e for n, e in enumerate(example.user_history) if (1, n) not in dropped]
    item = [e for n, e in enumerate(example.item_history) if (0, n) not in dropped]
    return user, item


def item_categories(item_info: str) -> list[str]:
    """The categories the item's information line shows (``Categories: a, b; Brand: ...``,
    ``examples.item_text``); [] when it shows none (e.g. Amazon 2014 without a meta file,
    whose information line holds earlier reviews' summaries)."""
    if not item_info.startswith("Categories: "):
        return []
    head = item_info[len("Categories: ") :].split("; ")[0]
    return [c.strip() for c in head.split(", ") if c.strip()]


def lexicon_words(texts: list[str]) -> tuple[list[str], list[str]]:
    """([pos] words, [neg] words): the distinct lexicon words of ``texts`` (lower-cased),
    in order of first appearance, at most MAX_WORDS of each."""
    pos: list[str] = []
    neg: list[str] = []
    for text in texts:
        for w in _WORD.findall(text.lower()):
            for found, lexicon in ((pos, POS_WORDS), (neg, NEG_WORDS)):
                if w in lexicon and w not in found and len(found) < MAX_WORDS:
                    found.append(w)
    return pos, neg


def _stars(x: float) -> str:
    return f"{x:g}"  # as the prompt prints a rating


def _ratings_part(ratings: list[float]) -> str:
    shown = " ".join(_stars(r) for r in ratings) if ratings else "none shown"
    high = sum(r >= HIGH for r in ratings)
    low = sum(r <= LOW for r in ratings)
    return f"ratings {shown} ; high {high} low {low}"


def review_analysis(example: Example, num_dropped: int = 0) -> tuple[str, str, str]:
    """(user part, item part, match part without the midpoint): the facts of the prompt
    of ``example`` with ``num_dropped`` history entries left out."""
    user, item = shown_histories(example, num_dropped)
    user_part = (
        f"{_ratings_part([e.rating for e in user])} ; "
        f"average {example.user_avg_rating:.2f} over {example.user_num_ratings}"
    )
    cats = item_categories(example.item_info)
    pos, neg = lexicon_words([e.review for e in item] + [example.item_info])
    words = f"[pos] {' '.join(pos) or 'none'} [neg] {' '.join(neg) or 'none'}"
    item_part = (
        (f"categories {', '.join(cats)} ; " if cats else "")
        + f"{_ratings_part([e.rating for e in item])} ; {words} ; "
        f"average {example.item_avg_rating:.2f} over {example.item_num_ratings}"
    )
    # compared as printed, so the model can check it against the prompt
    u, i = round(example.user_avg_rating, 2), round(example.item_avg_rating, 2)
    side = "above" if i > u else "below" if i < u else "the same as"
    if len(pos) != len(neg):
        lean = f"more {'[pos]' if len(pos) > len(neg) else '[neg]'} words"
    else:
        lean = "as many [pos] as [neg] words"
    return user_part, item_part, f"the item is rated {side} this user's average ; {lean}"


def review_trace(
    example: Example,
    rng: np.random.Generator,
    noise: float,
    variant: str = "four_step",
    num_dropped: int = 0,
    rewrite: bool = False,
) -> str:
    """A reasoning trace for ``example`` in the answer format of ``variant`` ('four_step',
    'single_think' or 'rating_only', as :func:`reczero_jax.data.teacher.teacher_trace`).

    The rating is the midpoint rule on the two averages plus N(0, ``noise``) before the
    rounding (``rng`` is drawn from only when noise > 0); the analysis states what the
    prompt with ``num_dropped`` history entries left out shows (module docstring).
    """
    midpoint, rating = rule_ratings(example, rng, noise, rewrite)
    if variant == "rating_only":
        return format_answer("", "", "", rating, variant)
    user_part, item_part, match = review_analysis(example, num_dropped)
    match = f"{match} ; midpoint of the averages {midpoint}"
    return format_answer(user_part, item_part, match, rating, variant)
