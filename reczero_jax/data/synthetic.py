"""A generated world with a known rating model: the default source for demos and tests.

Latents (drawn from ``SyntheticConfig.seed``):
  user u: bias b_u ~ N(0, user_bias_std), taste t_ug in {-1, 0, +1} per genre (uniform),
          thrifty_u in {0, 1} (probability 1/2);
  item i: two distinct genres G_i, quality q_i ~ N(0, quality_std), price level
          p_i in {-1, 0, +1} (cheap / mid / pricey).
Rating model:
  z_ui = 3 + b_u + q_i + taste_weight * sum_{g in G_i} t_ug - price_weight * thrifty_u * p_i
  r_ui = clip(floor(z_ui + eps + 1/2), 1, 5),   eps ~ N(0, noise).
Each user rates ``interactions_per_user`` distinct uniform items at distinct random times.

Reviews are short formulaic sentences from a vocabulary of a few dozen words (the
summary is a word for the rating): the user's stance on each of the item's genres as one
word ("loveaction", "hatedrama", "okaydrama": a word a byte-level BPE learns as one token,
so a small model finds a genre's stance in one attention hop), the item's quality when it
is clearly good or bad, and the price for thrifty users. A reader of the history can thus
infer t_ug, thrifty_u and (from other users' reviews) q_i.

The Bayes floor knows the latents: it predicts from the exact distribution of r given
z_ui (median for MAE, mean for RMSE). A model that only sees the prompt cannot reach it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import ndtr

from reczero_jax.data.data_config import SyntheticConfig
from reczero_jax.data.examples import Example
from reczero_jax.data.tables import Item, Ratings, ReadReport, SourceData

GENRES = ("action", "drama", "comedy", "horror", "scifi", "romance", "mystery", "western")
PRICE_WORDS = ("cheap", "mid", "pricey")  # level -1, 0, +1
STANCE_WORDS = {1: "love", -1: "hate", 0: "okay"}  # prefix of the genre in a review
OPENERS = {
    1: ("awful", "terrible"),
    2: ("not good", "poor"),
    3: ("it was ok", "average"),
    4: ("good", "nice"),
    5: ("great", "excellent"),
}
QUALITY_CUT = 0.4  # |q_i| above which reviews mention the quality
START_TIME = 1_600_000_000  # seconds; times spread over two years from here
TIME_SPAN = 2 * 365 * 86400


@dataclasses.dataclass(frozen=True, eq=False)
class World:
    """The latents, the generated ratings and the items of one synthetic world.

    Arrays: user_bias [U], user_taste int8 [U, G], user_thrifty bool [U],
    item_genres int [I, 2], item_quality [I], item_price int8 [I] (stars where real).
    ``user_index`` / ``item_index`` map ids ('u12', 'i7') to latent rows.
    """

    config: SyntheticConfig
    user_bias: np.ndarray
    user_taste: np.ndarray
    user_thrifty: np.ndarray
    item_genres: np.ndarray
    item_quality: np.ndarray
    item_price: np.ndarray
    data: SourceData
    user_index: dict[str, int]
    item_index: dict[str, int]

    def latent_mean(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """z_ui for index arrays u, i [N] -> [N] stars (before noise, rounding, clipping)."""
        c = self.config
        taste = np.take_along_axis(self.user_taste[u], self.item_genres[i], axis=1).sum(-1)
        return (
            3.0
            + self.user_bias[u]
            + self.item_quality[i]
            + c.taste_weight * taste
            - c.price_weight * self.user_thrifty[u] * self.item_price[i]
        )

    def rating_pmf(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """P(r = k | latents) for k = 1..5: [N, 5]."""
        z = self.latent_mean(np.asarray(u), np.asarray(i))[:, None]
        edges = np.array([1.5, 2.5, 3.5, 4.5])
        cdf = ndtr((edges - z) / self.config.noise)  # [N, 4]
        cdf = np.concatenate([np.zeros_like(z), cdf, np.ones_like(z)], axis=1)
        return np.diff(cdf, axis=1)

    def indices(self, examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
        u = np.array([self.user_index[e.user_id] for e in examples], dtype=np.int64)
        i = np.array([self.item_index[e.item_id] for e in examples], dtype=np.int64)
        return u, i


def bayes_floor(world: World, examples: list[Example]) -> dict[str, float]:
    """Expected MAE of the posterior median and expected RMSE of the posterior mean.

    With p = P(r | latents) per example: MAE = mean_n sum_k p_nk |k - median_n|,
    RMSE = sqrt(mean_n sum_k p_nk (k - mean_n)^2). No predictor can do better in
    expectation on these targets.
    """
    if not examples:
        return {"mae": float("nan"), "rmse": float("nan")}
    pmf = world.rating_pmf(*world.indices(examples))  # [N, 5]
    k = np.arange(1, 6, dtype=np.float64)
    median = 1 + np.argmax(np.cumsum(pmf, axis=1) >= 0.5, axis=1)  # [N]
    mean = pmf @ k
    exp_abs = np.sum(pmf * np.abs(k[None] - median[:, None]), axis=1)
    var = pmf @ k**2 - mean**2
    return {"mae": float(exp_abs.mean()), "rmse": float(np.sqrt(np.maximum(var, 0).mean()))}


def review_text(
    genres: list[str], taste: list[int], quality: float, thrifty: bool, price: int, pick
) -> str:
    """One formulaic review, e.g. 'loveaction . okaydrama . well made .'.

    The rating itself is shown beside the review (and its word is the summary), so the
    review spends its tokens on the evidence. ``pick(options)`` chooses among synonyms.
    """
    parts = []
    for g, t in zip(genres, taste):
        parts.append(STANCE_WORDS[t] + g)
    if quality > QUALITY_CUT:
        parts.append(pick(("well made", "high quality")))
    elif quality < -QUALITY_CUT:
        parts.append(pick(("badly made", "low quality")))
    if thrifty and price > 0:
        parts.append("too pricey")
    elif thrifty and price < 0:
        parts.append("good value")
    return " . ".join(parts) + " ."


def make_world(config: SyntheticConfig) -> World:
    """Draws a world from ``config`` (deterministic in ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    nu, ni, k, ng = (
        config.num_users,
        config.num_items,
        config.interactions_per_user,
        config.num_genres,
    )
    user_bias = rng.normal(0.0, config.user_bias_std, nu)
    user_taste = rng.integers(-1, 2, (nu, ng)).astype(np.int8)
    user_thrifty = rng.random(nu) < 0.5
    item_genres = np.stack([rng.choice(ng, 2, replace=False) for _ in range(ni)])
    item_quality = rng.normal(0.0, config.quality_std, ni)
    item_price = rng.integers(-1, 2, ni).astype(np.int8)

    users = np.repeat(np.arange(nu), k)
    items = np.concatenate([rng.choice(ni, k, replace=False) for _ in range(nu)])
    times = np.concatenate(
        [np.sort(rng.choice(TIME_SPAN, k, replace=False)) + START_TIME for _ in range(nu)]
    )
    world = World(
        config, user_bias, user_taste, user_thrifty, item_genres, item_quality, item_price,
        data=None, user_index={}, item_index={},  # filled below
    )  # fmt: skip
    z = world.latent_mean(users, items)
    ratings = np.clip(np.floor(z + rng.normal(0.0, config.noise, z.shape) + 0.5), 1, 5)

    def pick(options):
        return options[int(rng.integers(len(options)))]

    reviews = []
    for u, i in zip(users, items):
        gs = item_genres[i]
        reviews.append(
            review_text(
                [GENRES[g] for g in gs],
                [int(user_taste[u, g]) for g in gs],
                float(item_quality[i]),
                bool(user_thrifty[u]),
                int(item_price[i]),
                pick,
            )
        )
    summaries = [pick(OPENERS[r]) for r in ratings.astype(int)]
    user_ids = [f"u{u}" for u in range(nu)]
    item_ids = [f"i{i}" for i in range(ni)]
    table = Ratings.from_columns(
        [user_ids[u] for u in users], [item_ids[i] for i in items], ratings, times,
        reviews, summaries,
    )  # fmt: skip
    catalogue = {
        item_ids[i]: Item(
            item_ids[i],
            title=f"film {i}",
            categories=tuple(GENRES[g] for g in item_genres[i]),
            price=PRICE_WORDS[item_price[i] + 1],
        )
        for i in range(ni)
    }
    report = ReadReport(lines_read=len(table), kept=len(table))
    return dataclasses.replace(
        world,
        data=SourceData(ratings=table, items=catalogue, report=report),
        user_index={s: n for n, s in enumerate(user_ids)},
        item_index={s: n for n, s in enumerate(item_ids)},
    )
