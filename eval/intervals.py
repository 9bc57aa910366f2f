"""Bootstrap intervals of per-user figures (numpy only): a method's mean and the paired difference of two
methods scored on the same users. One set of user resamples is drawn per call, so every method and every
difference of one table is judged on the same draws."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def user_resamples(n_users: int, bootstrap: int, seed: int) -> np.ndarray:
    """[bootstrap, n_users] counts: how often each user is drawn in each replicate."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_users, size=(bootstrap, n_users))
    return np.stack([np.bincount(d, minlength=n_users) for d in draws]).astype(np.float64)


def mean_interval(values: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """The mean of per-user `values` and its 2.5 / 97.5 percentiles over the resample `weights`."""
    replicates = weights @ values / weights.sum(1)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return {"value": float(values.mean()), "ci_low": float(low), "ci_high": float(high)}


def difference_interval(values: np.ndarray, reference: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """mean(values) - mean(reference) over the same users, with its paired bootstrap interval."""
    return mean_interval(np.asarray(values, float) - np.asarray(reference, float), weights)


def interval_sign(interval: dict[str, Any]) -> int:
    """The verdict on a difference: +1 when its 95% interval lies above zero, -1 below, 0 when the interval
    holds zero or is undefined (None or not finite)."""
    low, high = interval.get("ci_low"), interval.get("ci_high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return 0
    return 1 if low > 0 else -1 if high < 0 else 0
