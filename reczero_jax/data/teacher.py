"""The weak teacher of the RecOne cold start on the synthetic world.

Its analysis is right (it reads the world's latents, restricted to what the prompt
shows), but its rating ignores the analysis:

    rule(x) = clip(floor((user_avg_rating + item_avg_rating) / 2 + 1/2), 1, 5)

In traces the rating is rule + N(0, teacher_noise) rounded the same way; a noise-free
teacher makes every GRPO group agree and kills exploration (see demo-notes.md). The
noise-free rule is what the baselines table reports as ``teacher``.
"""

from __future__ import annotations

import numpy as np

from reczero_jax.data.examples import Example
from reczero_jax.data.synthetic import GENRES, PRICE_WORDS, QUALITY_CUT, World


def _round_rating(x) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) + 0.5), 1.0, 5.0)


def teacher_rating(user_avg_rating, item_avg_rating) -> np.ndarray:
    """The noise-free rule on [N] averages -> [N] integer stars (as floats)."""
    return _round_rating((np.asarray(user_avg_rating) + np.asarray(item_avg_rating)) / 2)


def teacher_trace(
    example: Example,
    world: World,
    rng: np.random.Generator,
    noise: float,
    variant: str = "four_step",
) -> str:
    """A reasoning trace for ``example`` in the answer format of ``variant``.

    'four_step': the four tags; 'single_think': one <think> block then <rate>;
    'rating_only': <rate> alone. The rating carries N(0, noise) before rounding.
    """
    rule = (example.user_avg_rating + example.item_avg_rating) / 2
    midpoint = int(_round_rating(rule))
    rating = int(_round_rating(rule + (rng.normal(0.0, noise) if noise > 0 else 0.0)))
    rate = f"<rate> {rating} </rate>"
    if variant == "rating_only":
        return rate
    u = world.user_index[example.user_id]
    i = world.item_index[example.item_id]
    seen = sorted(
        {g for e in example.user_history for g in world.item_genres[world.item_index[e.item_id]]}
    )
    likes = [GENRES[g] for g in seen if world.user_taste[u, g] > 0]
    dislikes = [GENRES[g] for g in seen if world.user_taste[u, g] < 0]
    user_part = (
        f"likes {', '.join(likes) or 'nothing special'}"
        f" ; dislikes {', '.join(dislikes) or 'nothing'}"
        f" ; {'cares about price' if world.user_thrifty[u] else 'ignores price'}"
        f" ; average {example.user_avg_rating:.1f}"
    )
    points = []
    for g in world.item_genres[i]:
        if world.user_taste[u, g] > 0 and g in seen:
            points.append(f"[pos] {GENRES[g]}")
        elif world.user_taste[u, g] < 0 and g in seen:
            points.append(f"[neg] {GENRES[g]}")
    q = world.item_quality[i]
    if q > QUALITY_CUT:
        points.append("[pos] well made")
    elif q < -QUALITY_CUT:
        points.append("[neg] badly made")
    price = PRICE_WORDS[world.item_price[i] + 1]
    if world.user_thrifty[u] and price != "mid":
        points.append(f"[{'neg' if price == 'pricey' else 'pos'}] {price}")
    item_part = f"{' ; '.join(points) or 'nothing notable'} ; average {example.item_avg_rating:.1f}"
    n_pos = sum(p.startswith("[pos]") for p in points)
    n_neg = len(points) - n_pos
    verdict = "fits" if n_pos > n_neg else "does not fit" if n_neg > n_pos else "is a mixed fit"
    # The analysis is right (the verdict, and the midpoint of the two averages written out);
    # only the rating rule is weak: it ignores the verdict.
    match = f"the item {verdict} this user ; midpoint of the averages {midpoint}"
    if variant == "single_think":
        return f"<think> {user_part} . {item_part} . {match} </think>\n{rate}"
    return (
        f"<analyze user> {user_part} </analyze user>\n"
        f"<analyze item> {item_part} </analyze item>\n"
        f"<match> {match} </match>\n{rate}"
    )
