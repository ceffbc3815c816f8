"""Hand-computed values for the shared rating metrics."""

import math

import numpy as np
import pytest

from reczero_jax import metrics


def test_mae_rmse_hand_values():
    pred, target = [1.0, 3.0, 5.0], [2.0, 3.0, 3.0]
    assert metrics.mae(pred, target) == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    assert metrics.rmse(pred, target) == pytest.approx(math.sqrt(5 / 3))  # (1 + 0 + 4) / 3


def test_strict_uses_fallback_and_counts_failures():
    pred = np.array([4.0, np.nan, 2.0, np.nan])
    valid = np.array([True, False, True, False])
    target = np.array([5.0, 3.0, 2.0, 1.0])
    fallback = np.array([0.0, 4.0, 0.0, 3.5])  # used only where invalid
    m = metrics.strict_rating_metrics(pred, valid, target, fallback)
    # errors: 1, 1, 0, 2.5
    assert m["mae"] == pytest.approx(4.5 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 1 + 0 + 6.25) / 4))
    assert m["parse_failure_rate"] == pytest.approx(0.5)
    assert m["num"] == 4


def test_strict_scalar_fallback():
    m = metrics.strict_rating_metrics([np.nan], [False], [5.0], 3.0)
    assert m["mae"] == pytest.approx(2.0)


def test_lenient_counts_invalid_as_perfect():
    m = metrics.lenient_rating_metrics([4.0, np.nan], [True, False], [5.0, 1.0])
    assert m["lenient_mae"] == pytest.approx(0.5)
    assert m["lenient_rmse"] == pytest.approx(math.sqrt(0.5))
    assert "mae" not in m  # never under the strict name


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="pred has 2 entries, expected 3"):
        metrics.mae([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="valid has 1 entries"):
        metrics.strict_rating_metrics([1.0, 2.0], [True], [1.0, 2.0], 3.0)
