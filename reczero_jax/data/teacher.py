"""The weak teacher of the RecOne cold start on the synthetic world.

Its analysis is right and is a function of the prompt alone (the world's latents,
restricted to what the prompt shows: :func:`visible_evidence`), but its rating ignores
the analysis:

    rule(x) = clip(floor((user_avg_rating + item_avg_rating) / 2 + 1/2), 1, 5)

Its ``<match>`` ends with the rating its own analysis points to (the midpoint moved one
star per pos aspect and back per neg one), which its rating then ignores: the cold start
teaches the model to write that estimate, and GRPO must learn to rate by it.

In traces the rating is rule + N(0, teacher_noise) rounded the same way; a noise-free
teacher makes every GRPO group agree and kills exploration (see demo-notes.md). The
noise-free rule is what the baselines table reports as ``teacher``.
"""

from __future__ import annotations

import numpy as np

from reczero_jax.data.examples import Example
from reczero_jax.data.synthetic import GENRES, QUALITY_CUT, World


def round_rating(x) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) + 0.5), 1.0, 5.0)


def teacher_rating(user_avg_rating, item_avg_rating) -> np.ndarray:
    """The noise-free rule on [N] averages -> [N] integer stars (as floats)."""
    return round_rating((np.asarray(user_avg_rating) + np.asarray(item_avg_rating)) / 2)


def rule_ratings(
    example: Example, rng: np.random.Generator, noise: float, rewrite: bool = False
) -> tuple[int, int]:
    """(midpoint, rating) of the teachers' rule on ``example``'s two averages: the
    noise-free midpoint, and the traces' rating with N(0, ``noise``) before the rounding
    (``rng`` is drawn from only when noise > 0).

    ``rewrite``: RecOne's rewrite of a wrong trace (reczero.md: a trace with a wrong rating
    is written again with the true rating shown to the teacher): a rating that is not
    ``example.rating`` becomes it. The analysis, a function of the prompt, stays."""
    rule = (example.user_avg_rating + example.item_avg_rating) / 2
    midpoint = int(round_rating(rule))
    rating = int(round_rating(rule + (rng.normal(0.0, noise) if noise > 0 else 0.0)))
    if rewrite:
        rating = int(round_rating(example.rating))
    return midpoint, rating


def format_answer(user_part: str, item_part: str, match: str, rating: int, variant: str) -> str:
    """A teacher's answer in the format of ``variant``: 'four_step' (the four tags),
    'single_think' (one <think> block then <rate>) or 'rating_only' (<rate> alone)."""
    rate = f"<rate> {rating} </rate>"
    if variant == "rating_only":
        return rate
    if variant == "single_think":
        return f"<think> {user_part} . {item_part} . {match} </think>\n{rate}"
    return (
        f"<analyze user> {user_part} </analyze user>\n"
        f"<analyze item> {item_part} </analyze item>\n"
        f"<match> {match} </match>\n{rate}"
    )


def visible_evidence(example: Example, world: World) -> dict:
    """What the prompt of ``example`` reveals about the user and the target item.

    Returns ``stances``: (genre, mark) for every genre of the world in canonical order, mark
    in {'pos', 'neg', 'ok', 'new'} (the user's shown stance: love / hate / okay; 'new' when
    the shown history never mentions the genre); ``cares_price`` (the history shows a
    price remark, so the user is thrifty); and the item's ``aspects``: four (name, mark)
    pairs with the same marks, for the item's two genres (the user's stance), its quality
    (pos / neg when the shown earlier review of it remarks on it) and its price (pos for
    cheap, neg for pricey, for a user seen to care).
    """
    u = world.user_index[example.user_id]
    i = world.item_index[example.item_id]
    seen: list[int] = []
    cares_price = False
    for e in example.user_history:
        h = world.item_index[e.item_id]
        seen += [int(g) for g in world.item_genres[h] if int(g) not in seen]
        cares_price |= bool(world.user_thrifty[u]) and int(world.item_price[h]) != 0
    marks = {1: "pos", -1: "neg", 0: "ok"}
    stances = [
        (GENRES[g], marks[int(world.user_taste[u, g])] if g in seen else "new")
        for g in range(world.config.num_genres)
    ]
    stance = dict(stances)
    aspects = [(GENRES[g], stance[GENRES[g]]) for g in world.item_genres[i]]
    q = world.item_quality[i]
    visible_q = bool(example.item_history) and abs(q) > QUALITY_CUT
    aspects.append(("quality", ("pos" if q > 0 else "neg") if visible_q else "ok"))
    price = int(world.item_price[i])
    aspects.append(("price", marks[-price] if cares_price else "ok"))
    return {"stances": stances, "cares_price": cares_price, "aspects": aspects}


def teacher_trace(
    example: Example,
    world: World,
    rng: np.random.Generator,
    noise: float,
    variant: str = "four_step",
    rewrite: bool = False,
) -> str:
    """A reasoning trace for ``example`` in the answer format of ``variant``.

    'four_step': the four tags; 'single_think': one <think> block then <rate>;
    'rating_only': <rate> alone. The rating carries N(0, noise) before rounding.
    The analysis is a function of the prompt alone (:func:`visible_evidence`; the two
    averages copied as the prompt prints them), so a model can learn to write it.
    """
    midpoint, rating = rule_ratings(example, rng, noise, rewrite)
    if variant == "rating_only":
        return format_answer("", "", "", rating, variant)
    ev = visible_evidence(example, world)
    stances = " ".join(f"{name} {mark}" for name, mark in ev["stances"])
    price = "cares about price" if ev["cares_price"] else "ignores price"
    user_part = f"{stances} ; {price} ; average {example.user_avg_rating:.2f}"
    aspects = " ".join(f"{name} {mark}" for name, mark in ev["aspects"])
    item_part = f"{aspects} ; average {example.item_avg_rating:.2f}"
    n_pos = sum(mark == "pos" for _, mark in ev["aspects"])
    n_neg = sum(mark == "neg" for _, mark in ev["aspects"])
    verdict = "fits" if n_pos > n_neg else "does not fit" if n_neg > n_pos else "is a mixed fit"
    # The analysis is right: the verdict, the midpoint of the two averages, and the midpoint
    # moved by one star per pos aspect and back per neg one (the rating the analysis points
    # to). Only the rating rule is weak: it ignores the last two steps.
    leaning = int(np.clip(midpoint + n_pos - n_neg, 1, 5))
    match = (
        f"the item {verdict} this user ; midpoint of the averages {midpoint} ; "
        f"by the aspects {leaning}"
    )
    return format_answer(user_part, item_part, match, rating, variant)
