"""Mean predictors and the bias-only model, fitted on training ratings.

Indices are int arrays into ``Ratings.user_ids`` / ``item_ids``; -1 marks a user or item
unseen in training, which falls back to the global mean (or a zero bias). Predictions
are clipped to [1, 5] stars.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def _group_mean(
    keys: np.ndarray, values: np.ndarray, num_keys: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mean per key, count per key); mean is NaN where count is 0."""
    counts = np.bincount(keys, minlength=num_keys).astype(np.float64)
    sums = np.bincount(keys, weights=values, minlength=num_keys)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts, counts


@dataclasses.dataclass(frozen=True)
class MeanModel:
    """mu, per-user mean and per-item mean (NaN where unseen)."""

    mu: float
    user_mean: np.ndarray  # [U]
    item_mean: np.ndarray  # [I]

    @classmethod
    def fit(cls, user, item, rating, num_users: int, num_items: int) -> MeanModel:
        rating = np.asarray(rating, np.float64)
        return cls(
            mu=float(rating.mean()),
            user_mean=_group_mean(np.asarray(user), rating, num_users)[0],
            item_mean=_group_mean(np.asarray(item), rating, num_items)[0],
        )

    def _lookup(self, table: np.ndarray, idx) -> np.ndarray:
        idx = np.asarray(idx)
        vals = np.where(idx >= 0, table[np.maximum(idx, 0)], np.nan)
        return np.clip(np.where(np.isnan(vals), self.mu, vals), 1.0, 5.0)

    def predict_global(self, n: int) -> np.ndarray:
        return np.full(n, np.clip(self.mu, 1.0, 5.0))

    def predict_user(self, user) -> np.ndarray:
        return self._lookup(self.user_mean, user)

    def predict_item(self, item) -> np.ndarray:
        return self._lookup(self.item_mean, item)


@dataclasses.dataclass(frozen=True)
class BiasModel:
    """r_hat = mu + b_u + b_i, fitted by alternating ridge least squares.

    Each sweep solves b_u = sum_{i in I(u)} (r - mu - b_i) / (l2 + |I(u)|), then the same
    for b_i; ``l2`` is in units of ratings (a pseudo-count of ratings at the mean).
    """

    mu: float
    b_user: np.ndarray  # [U]
    b_item: np.ndarray  # [I]

    @classmethod
    def fit(cls, user, item, rating, num_users, num_items, l2: float, sweeps: int) -> BiasModel:
        user, item = np.asarray(user), np.asarray(item)
        rating = np.asarray(rating, np.float64)
        mu = float(rating.mean())
        bu, bi = np.zeros(num_users), np.zeros(num_items)
        nu = np.bincount(user, minlength=num_users)
        ni = np.bincount(item, minlength=num_items)
        for _ in range(sweeps):
            bu = np.bincount(user, rating - mu - bi[item], num_users) / (l2 + nu)
            bi = np.bincount(item, rating - mu - bu[user], num_items) / (l2 + ni)
        return cls(mu=mu, b_user=bu, b_item=bi)

    def predict(self, user, item) -> np.ndarray:
        user, item = np.asarray(user), np.asarray(item)
        bu = np.where(user >= 0, self.b_user[np.maximum(user, 0)], 0.0)
        bi = np.where(item >= 0, self.b_item[np.maximum(item, 0)], 0.0)
        return np.clip(self.mu + bu + bi, 1.0, 5.0)
