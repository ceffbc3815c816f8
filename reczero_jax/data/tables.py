"""The normalised tables every reader produces: ratings (one row per review) and items.

Rows of ``Ratings`` are kept in one canonical order, (timestamp, user id, item id, review
text), so the same files give the same table whatever the line order in the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Item:
    """What a source says about an item; empty strings where it says nothing.

    ``price`` is kept as text ('$12.99', '2 of 4'): sources disagree on its unit.
    """

    item_id: str
    title: str = ""
    categories: tuple[str, ...] = ()
    brand: str = ""
    price: str = ""
    description: str = ""

    def has_text(self) -> bool:
        return bool(self.title or self.categories or self.brand or self.description)


def _object_array(values: Sequence[str]) -> np.ndarray:
    """A 1-D object array of Python str (fixed-width numpy str would copy every text)."""
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Ratings:
    """Column table of N ratings in canonical order.

    Attributes:
      user_ids / item_ids: the distinct string ids, sorted; [U] and [I].
      user / item: int32 [N], indices into user_ids / item_ids.
      rating: float32 [N], stars in [1, 5].
      timestamp: int64 [N], seconds since the Unix epoch (UTC).
      review / summary: object [N] of str ('' when the source has none).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    review: np.ndarray
    summary: np.ndarray

    def __len__(self) -> int:
        return int(self.rating.shape[0])

    @property
    def num_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.item_ids.shape[0])

    @classmethod
    def from_columns(
        cls,
        users: Sequence[str],
        items: Sequence[str],
        ratings: Sequence[float],
        timestamps: Sequence[int],
        reviews: Sequence[str],
        summaries: Sequence[str],
    ) -> Ratings:
        """Builds the table from parallel Python lists, sorting rows canonically."""
        n = len(users)
        user_ids, user = np.unique(_object_array(users), return_inverse=True)
        item_ids, item = np.unique(_object_array(items), return_inverse=True)
        ts = np.asarray(timestamps, dtype=np.int64).reshape(n)
        rev, summ = _object_array(reviews), _object_array(summaries)
        review_rank = np.unique(rev, return_inverse=True)[1].reshape(n) if n else rev
        # np.lexsort: the LAST key is the primary one. Review text breaks exact ties.
        order = np.lexsort((review_rank, item, user, ts)) if n else np.zeros(0, np.int64)
        return cls(
            user_ids=user_ids.astype(object),
            item_ids=item_ids.astype(object),
            user=user.astype(np.int32).reshape(n)[order],
            item=item.astype(np.int32).reshape(n)[order],
            rating=np.asarray(ratings, dtype=np.float32).reshape(n)[order],
            timestamp=ts[order],
            review=rev[order],
            summary=summ[order],
        )

    def take(self, rows: np.ndarray) -> Ratings:
        """The sub-table of ``rows`` (ids tables are kept, so indices stay valid)."""
        return dataclasses.replace(
            self,
            user=self.user[rows],
            item=self.item[rows],
            rating=self.rating[rows],
            timestamp=self.timestamp[rows],
            review=self.review[rows],
            summary=self.summary[rows],
        )


@dataclasses.dataclass(frozen=True, eq=False)
class SourceData:
    """What a reader returns: the ratings, the items it knows, and its bad-input report."""

    ratings: Ratings
    items: dict[str, Item]
    report: ReadReport


@dataclasses.dataclass
class ReadReport:
    """Counts of what a reader read, kept and skipped (per reason), per file.

    ``skipped`` maps 'file: reason' to a count; ``notes`` holds non-fatal facts
    (e.g. items without meta data).
    """

    lines_read: int = 0
    kept: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: dict[str, int] = dataclasses.field(default_factory=dict)

    def skip(self, file: str, reason: str) -> None:
        key = f"{file}: {reason}"
        self.skipped[key] = self.skipped.get(key, 0) + 1

    def note(self, what: str, count: int = 1) -> None:
        self.notes[what] = self.notes.get(what, 0) + count

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"read {self.lines_read} lines, kept {self.kept}, skipped {self.num_skipped}"]
        lines += [f"  skipped {n:>8d}  {k}" for k, n in sorted(self.skipped.items())]
        lines += [f"  note    {n:>8d}  {k}" for k, n in sorted(self.notes.items())]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
