"""Held-out metrics with the r-server length-of-stay solution's definitions."""

from __future__ import annotations

import numpy as np


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean squared error (days), relative absolute and squared
    error (against predicting the held-out mean), and the coefficient of determination."""
    error = predicted - actual
    spread = actual - actual.mean()
    absolute_spread = float(np.abs(spread).sum())
    squared_spread = float((spread**2).sum())
    rse = float((error**2).sum()) / squared_spread if squared_spread else float("nan")
    return {
        "meanAbsoluteError": float(np.abs(error).mean()),
        "rootMeanSquaredError": float(np.sqrt((error**2).mean())),
        "relativeAbsoluteError": (
            float(np.abs(error).sum()) / absolute_spread if absolute_spread else float("nan")
        ),
        "relativeSquaredError": rse,
        "coefficientOfDetermination": 1.0 - rse,
    }
