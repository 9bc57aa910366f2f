"""Two rankers on the same rows: AUC, UAUC, WUAUC for each and their difference with a bootstrap 95%
interval over users (numpy only).

A bootstrap replicate draws users with replacement; a user drawn k times counts k times, so every
figure of a replicate is a weighted one: per-user AUCs are computed once and averaged with the
replicate's weights, and the row-level AUC uses the same weights on each row through one sort per model.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from eval.metrics import user_auc
from learnkit.core.sql import EngineConfig

METRICS = ("AUC", "UAUC", "WUAUC")


class _WeightedAuc:
    """Row-level AUC under many weightings of the rows, with one sort (ties count half)."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        order = np.argsort(scores, kind="stable")
        self.order, self.y = order, labels[order].astype(np.float64)
        s = scores[order]
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, int)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """weights [B, rows] in the original row order -> [B] AUCs."""
        w = weights[:, self.order]
        pos = np.add.reduceat(w * self.y, self.starts, axis=1)
        neg = np.add.reduceat(w * (1 - self.y), self.starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def _figures(
    user_weights: np.ndarray, per_user: np.ndarray, samples: np.ndarray, row_auc: np.ndarray, valid: np.ndarray
) -> dict[str, np.ndarray]:
    """UAUC / WUAUC / AUC for each row of `user_weights` ([B, users])."""
    wv = user_weights * valid
    auc = np.where(valid, per_user, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"UAUC": wv @ auc / wv.sum(1), "WUAUC": (wv * samples) @ auc / (wv @ samples), "AUC": row_auc}


def compare_models(
    users: np.ndarray,
    labels: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    bootstrap: int = 500,
    seed: int = 0,
    weight: Literal["samples", "clicks"] = "samples",
    chunk: int = 50,
    engine: EngineConfig | None = None,
) -> dict[str, Any]:
    """Figures of model a and b and the delta b - a, each delta with `ci_low`/`ci_high` (2.5 and 97.5
    percentiles over `bootstrap` user resamples). NaN where a figure is undefined (one class only)."""
    a, b = user_auc(users, labels, score_a, weight, engine), user_auc(users, labels, score_b, weight, engine)
    uniq, user_of_row = np.unique(users, return_inverse=True)
    samples = np.bincount(user_of_row, minlength=len(uniq)).astype(np.float64)
    if weight == "clicks":
        samples = np.bincount(user_of_row, weights=labels.astype(np.float64), minlength=len(uniq))
    valid = ~np.isnan(a.per_user_auc)
    row_a, row_b = _WeightedAuc(labels, score_a), _WeightedAuc(labels, score_b)
    ones = np.ones((1, len(uniq)))
    point = {}
    for name, result, row in (("a", a, row_a), ("b", b, row_b)):
        figures = _figures(ones, result.per_user_auc, samples, row(ones[:, user_of_row]), valid)
        point[name] = {m: float(figures[m][0]) for m in METRICS}
        point[name].update(
            users_evaluated=result.users_evaluated, users_excluded=result.users_excluded, rows=int(len(labels))
        )
    rng = np.random.default_rng(seed)
    deltas: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for start in range(0, bootstrap, chunk):
        size = min(chunk, bootstrap - start)
        draws = rng.integers(0, len(uniq), size=(size, len(uniq)))
        weights = np.stack([np.bincount(d, minlength=len(uniq)) for d in draws]).astype(np.float64)
        fa = _figures(weights, a.per_user_auc, samples, row_a(weights[:, user_of_row]), valid)
        fb = _figures(weights, b.per_user_auc, samples, row_b(weights[:, user_of_row]), valid)
        for m in METRICS:
            deltas[m].append(fb[m] - fa[m])
    delta = {}
    for m in METRICS:
        values = np.concatenate(deltas[m]) if deltas[m] else np.zeros(0)
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
        delta[m] = {"value": point["b"][m] - point["a"][m], "ci_low": float(low), "ci_high": float(high)}
    return {"a": point["a"], "b": point["b"], "delta": delta}
