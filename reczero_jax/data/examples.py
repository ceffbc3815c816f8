"""Examples: one rating target with everything a model may see about it.

The no-leak rule: an example for a rating at time t shows only ratings with timestamp
STRICTLY below t. Ratings that share the target's timestamp (same day on Amazon) are
never in its histories or averages, in either direction; this is the tie rule.
Shown histories are the most recent ``history_len`` ratings of the user and the most
recent ``item_history_len`` ratings of the item by OTHER users; averages cover all
strictly earlier ratings of the user / of the item (any user).
"""

from __future__ import annotations

import bisect
import dataclasses

import numpy as np

from reczero_jax.data.splits import SPLIT_NAMES
from reczero_jax.data.tables import Item, Ratings

ITEM_TEXT_FROM_REVIEWS = 5  # earlier review summaries that stand in for missing meta text


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One earlier rating by the target user. ``rating`` in stars, ``timestamp`` in s."""

    item_id: str
    title: str
    rating: float
    review: str
    timestamp: int


@dataclasses.dataclass(frozen=True)
class ItemReview:
    """One earlier rating of the target item by another user."""

    user_id: str
    rating: float
    review: str
    timestamp: int


@dataclasses.dataclass(frozen=True)
class Example:
    """A rating target and its strictly earlier context.

    Attributes:
      user_id / item_id: source ids.
      rating: the target, stars in [1, 5]. timestamp: seconds.
      split: 'train' | 'validation' | 'test'.
      item_title / item_info: the target item's title and text (meta, or built from
        summaries of its earlier reviews when the source has no meta text).
      user_history: oldest first, at most ``history_len`` entries.
      user_avg_rating / user_num_ratings: over ALL earlier ratings of the user.
      item_history: oldest first, at most ``item_history_len`` entries, other users only.
      item_avg_rating / item_num_ratings: over ALL earlier ratings of the item.
    """

    user_id: str
    item_id: str
    rating: float
    timestamp: int
    split: str
    item_title: str
    item_info: str
    user_history: tuple[HistoryEntry, ...]
    user_avg_rating: float
    user_num_ratings: int
    item_history: tuple[ItemReview, ...]
    item_avg_rating: float
    item_num_ratings: int


def item_text(item: Item | None, description_chars: int) -> str:
    """The meta text of an item in one line, '' when there is none."""
    if item is None:
        return ""
    parts = []
    if item.categories:
        parts.append("Categories: " + ", ".join(item.categories))
    if item.brand:
        parts.append("Brand: " + item.brand)
    if item.price:
        parts.append("Price: " + item.price)
    if item.description:
        parts.append("Description: " + item.description[:description_chars])
    return "; ".join(parts)


class _Index:
    """Rows of one user (or item) in time order, with prefix sums of ratings."""

    def __init__(self, keys: np.ndarray, num_keys: int, timestamp: np.ndarray, rating: np.ndarray):
        order = np.argsort(keys, kind="stable")  # canonical (time) order kept within a key
        bounds = np.searchsorted(keys[order], np.arange(num_keys + 1))
        self.rows = [order[bounds[k] : bounds[k + 1]] for k in range(num_keys)]
        self.times = [timestamp[r].tolist() for r in self.rows]
        self.csum = [
            np.concatenate([[0.0], np.cumsum(rating[r], dtype=np.float64)]) for r in self.rows
        ]

    def earlier(self, key: int, t: int) -> tuple[np.ndarray, float, int]:
        """(rows strictly before t in time order, their mean rating or nan, their count)."""
        k = bisect.bisect_left(self.times[key], t)
        mean = float(self.csum[key][k] / k) if k else float("nan")
        return self.rows[key][:k], mean, k


def build_examples(
    ratings: Ratings,
    items: dict[str, Item],
    split: np.ndarray,
    *,
    history_len: int = 10,
    item_history_len: int = 10,
    review_chars: int = 400,
    min_history_total: int = 0,
    splits: tuple[str, ...] = SPLIT_NAMES,
) -> tuple[dict[str, list[Example]], dict[str, int]]:
    """Builds the examples of the requested splits, in canonical row order.

    Drops (and counts) targets whose user or item history is empty, and those whose
    two shown histories hold fewer than ``min_history_total`` entries together.

    Returns ({split name: examples}, {counter name: count}).
    """
    by_user = _Index(ratings.user, ratings.num_users, ratings.timestamp, ratings.rating)
    by_item = _Index(ratings.item, ratings.num_items, ratings.timestamp, ratings.rating)
    wanted = {SPLIT_NAMES.index(s) for s in splits}
    out: dict[str, list[Example]] = {s: [] for s in splits}
    stats = {"dropped_empty_user_history": 0, "dropped_empty_item_history": 0}
    stats["dropped_min_history_total"] = 0
    titles = {i: (it.title or i) for i, it in items.items()}
    user_ids, item_ids = ratings.user_ids, ratings.item_ids

    def cut(text: str) -> str:
        return text[:review_chars]

    for row in np.flatnonzero(np.isin(split, list(wanted))):
        u, i, t = int(ratings.user[row]), int(ratings.item[row]), int(ratings.timestamp[row])
        u_rows, u_avg, u_n = by_user.earlier(u, t)
        i_rows, i_avg, i_n = by_item.earlier(i, t)
        shown_u = u_rows[-history_len:]
        shown_i: list[int] = []
        for r in i_rows[::-1]:  # newest first, other users only
            if len(shown_i) == item_history_len:
                break
            if ratings.user[r] != u:
                shown_i.append(int(r))
        shown_i.reverse()
        if len(shown_u) == 0:
            stats["dropped_empty_user_history"] += 1
            continue
        if not shown_i and (item_history_len > 0 or len(i_rows) == 0):
            stats["dropped_empty_item_history"] += 1
            continue
        if len(shown_u) + len(shown_i) < min_history_total:
            stats["dropped_min_history_total"] += 1
            continue
        item_id = str(item_ids[i])
        info = item_text(items.get(item_id), review_chars)
        if not info:
            summaries = [ratings.summary[r] or ratings.review[r] for r in shown_i]
            summaries = [cut(s) for s in summaries if s][-ITEM_TEXT_FROM_REVIEWS:]
            info = "Summaries of earlier reviews: " + " | ".join(summaries) if summaries else ""
        out[SPLIT_NAMES[split[row]]].append(
            Example(
                user_id=str(user_ids[u]),
                item_id=item_id,
                rating=float(ratings.rating[row]),
                timestamp=t,
                split=SPLIT_NAMES[split[row]],
                item_title=titles.get(item_id, item_id),
                item_info=info,
                user_history=tuple(
                    HistoryEntry(
                        item_id=str(item_ids[ratings.item[r]]),
                        title=titles.get(
                            str(item_ids[ratings.item[r]]), str(item_ids[ratings.item[r]])
                        ),
                        rating=float(ratings.rating[r]),
                        review=cut(ratings.review[r]),
                        timestamp=int(ratings.timestamp[r]),
                    )
                    for r in shown_u
                ),
                user_avg_rating=u_avg,
                user_num_ratings=u_n,
                item_history=tuple(
                    ItemReview(
                        user_id=str(user_ids[ratings.user[r]]),
                        rating=float(ratings.rating[r]),
                        review=cut(ratings.review[r]),
                        timestamp=int(ratings.timestamp[r]),
                    )
                    for r in shown_i
                ),
                item_avg_rating=i_avg,
                item_num_ratings=i_n,
            )
        )
    return out, stats
