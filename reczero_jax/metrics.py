"""Rating-prediction metrics: the one module baselines and the LLM evaluation share.

All inputs are 1-D arrays of N ratings in stars; results are plain floats.

Strict metrics (the ones to report): an unreadable prediction is replaced by a stated
fallback (e.g. the user's average rating) and counts like any other prediction; the
share of unreadable predictions is reported beside MAE / RMSE.
Lenient metrics reproduce the reference code's pitfall (an unreadable answer counts as
a perfect prediction) and are named as such so they are never mistaken for the strict
ones.
"""

from __future__ import annotations

import numpy as np


def _as_1d(name: str, x, n: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0 and n is not None:
        a = np.full(n, float(a))
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {n}")
    return a


def mae(pred, target) -> float:
    """Mean absolute error: mean_n |pred_n - target_n| (stars). NaN for N = 0."""
    t = _as_1d("target", target)
    p = _as_1d("pred", pred, t.shape[0])
    return float(np.mean(np.abs(p - t))) if t.size else float("nan")


def rmse(pred, target) -> float:
    """Root mean squared error: sqrt(mean_n (pred_n - target_n)^2) (stars)."""
    t = _as_1d("target", target)
    p = _as_1d("pred", pred, t.shape[0])
    return float(np.sqrt(np.mean((p - t) ** 2))) if t.size else float("nan")


def strict_rating_metrics(pred, valid, target, fallback) -> dict[str, float]:
    """MAE / RMSE where invalid predictions are replaced by ``fallback`` and count.

    Args:
      pred: [N] predictions; entries where ``valid`` is False are ignored (may be NaN).
      valid: [N] bool, True where the prediction was readable.
      target: [N] true ratings.
      fallback: [N] or scalar, the prediction used where ``valid`` is False.

    Returns {'mae', 'rmse', 'parse_failure_rate', 'num'}.
    """
    t = _as_1d("target", target)
    n = t.shape[0]
    v = np.asarray(valid, dtype=bool).reshape(-1)
    if v.shape[0] != n:
        raise ValueError(f"valid has {v.shape[0]} entries, expected {n}")
    p = np.where(v, _as_1d("pred", np.where(v, pred, 0.0), n), _as_1d("fallback", fallback, n))
    return {
        "mae": mae(p, t),
        "rmse": rmse(p, t),
        "parse_failure_rate": float(np.mean(~v)) if n else float("nan"),
        "num": n,
    }


def lenient_rating_metrics(pred, valid, target) -> dict[str, float]:
    """The reference code's metric: an invalid prediction counts as error 0 (perfect).

    Reported only under the names 'lenient_mae' / 'lenient_rmse'; never compare them
    with strict numbers.
    """
    t = _as_1d("target", target)
    n = t.shape[0]
    v = np.asarray(valid, dtype=bool).reshape(-1)
    if v.shape[0] != n:
        raise ValueError(f"valid has {v.shape[0]} entries, expected {n}")
    p = np.where(v, _as_1d("pred", np.where(v, pred, 0.0), n), t)
    return {
        "lenient_mae": mae(p, t),
        "lenient_rmse": rmse(p, t),
        "parse_failure_rate": float(np.mean(~v)) if n else float("nan"),
        "num": n,
    }


def gap_closed(model_mae: float, teacher_mae: float, bayes_mae: float) -> float | None:
    """The fraction of the teacher-to-Bayes-floor MAE gap a model closed:
    ``(teacher - model) / (teacher - bayes)``; 0 at the teacher, 1 at the floor, negative
    when worse than the teacher; None when the gap is not positive."""
    gap = teacher_mae - bayes_mae
    if not gap > 0:
        return None
    return (teacher_mae - model_mae) / gap
