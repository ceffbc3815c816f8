"""Train / validation / test assignment of ratings.

Both splits work on the canonical row order of ``Ratings`` (timestamp, then user id,
item id, review text), so equal timestamps are ordered deterministically.
"""

from __future__ import annotations

import numpy as np

from reczero_jax.data.tables import Ratings

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")


def leave_last_out(ratings: Ratings) -> np.ndarray:
    """Per user, in canonical order: last rating -> test, second last -> validation,
    the rest -> train. A user with one rating has it in test; with two, valid + test.

    Returns int8 [N] of TRAIN / VALID / TEST.
    """
    n = len(ratings)
    split = np.full(n, TRAIN, dtype=np.int8)
    # Stable sort by user keeps the canonical (chronological) order within a user.
    order = np.argsort(ratings.user, kind="stable")
    users = ratings.user[order]
    is_last = np.ones(n, dtype=bool)
    is_last[:-1] = users[:-1] != users[1:]
    is_second = np.zeros(n, dtype=bool)
    is_second[:-1] = is_last[1:] & ~is_last[:-1]
    split[order[is_last]] = TEST
    split[order[is_second]] = VALID
    return split


def global_time(ratings: Ratings, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """Two time cut-offs at the (1 - v - t) and (1 - t) quantiles of the rating times:
    earlier -> train, between -> validation, from the second cut-off on -> test. Ratings
    with equal timestamps always share a split. Returns int8 [N]."""
    ts = ratings.timestamp
    n = len(ratings)
    if n == 0:
        return np.zeros(0, np.int8)
    sorted_ts = np.sort(ts)
    t_valid = sorted_ts[min(n - 1, int(np.floor(n * (1 - valid_fraction - test_fraction))))]
    t_test = sorted_ts[min(n - 1, int(np.floor(n * (1 - test_fraction))))]
    split = np.full(n, TRAIN, dtype=np.int8)
    split[ts >= t_valid] = VALID
    split[ts >= t_test] = TEST
    return split


def assign_splits(
    ratings: Ratings, split: str, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> np.ndarray:
    """Dispatches on ``DataConfig.split``; returns int8 [N] of TRAIN / VALID / TEST."""
    if split == "leave_last_out":
        return leave_last_out(ratings)
    if split == "global_time":
        return global_time(ratings, valid_fraction, test_fraction)
    raise ValueError(f"data.split: unknown split {split!r}")
