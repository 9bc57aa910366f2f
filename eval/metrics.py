"""AUC, UAUC and WUAUC with numpy alone, in one pass over all rows.

Rows are sorted once by (user, score) with `numpy.lexsort`; tied scores inside a user get their average
rank; per-user positive rank sums come from `numpy.bincount`. Never per batch, and never by folding user
and score into one float key (which loses precision and mixes users).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class UserAucResult:
    uauc: float  # mean per-user AUC over users with both classes
    wuauc: float  # the same weighted by samples (or clicks) per user
    users_evaluated: int
    users_excluded: int  # single-class users: their AUC is undefined
    per_user_auc: np.ndarray  # NaN for excluded users, in the order of `users`
    users: np.ndarray


def _sorted_ranks(group_start: np.ndarray, s: np.ndarray) -> np.ndarray:
    """1-based average rank of each row within its group, for rows sorted by (group, score); ties share
    the mean of their positions."""
    n = len(s)
    start_index = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    position = np.arange(n) - start_index + 1.0
    tie_start = group_start | np.r_[True, s[1:] != s[:-1]]
    tie_id = np.cumsum(tie_start) - 1
    first = np.flatnonzero(tie_start)
    last = np.r_[first[1:] - 1, n - 1]
    return ((position[first] + position[last]) / 2.0)[tie_id]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (ties count half); NaN if only one class is present."""
    result = user_auc(np.zeros(len(labels), dtype=np.int64), labels, scores)
    return float(result.per_user_auc[0]) if len(result.per_user_auc) else float("nan")


def user_auc(
    users: np.ndarray, labels: np.ndarray, scores: np.ndarray, weight: Literal["samples", "clicks"] = "samples"
) -> UserAucResult:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if not (len(users) == len(labels) == len(scores)):
        raise ValueError(f"users, labels and scores differ in length ({len(users)}, {len(labels)}, {len(scores)})")
    if len(labels) and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} score(s) are NaN")
    users = np.asarray(users)
    order = np.lexsort((scores, users))  # the one sort: users come out of it too, no np.unique
    u_sorted = users[order]
    group_start = np.r_[True, u_sorted[1:] != u_sorted[:-1]] if len(order) else np.zeros(0, bool)
    uniq = u_sorted[group_start]
    g_sorted = np.cumsum(group_start) - 1
    rank = _sorted_ranks(group_start, scores[order]) if len(order) else np.zeros(0)
    y_sorted = labels[order].astype(np.float64)
    k = len(uniq)
    count = np.bincount(g_sorted, minlength=k).astype(np.float64)
    positives = np.bincount(g_sorted, weights=y_sorted, minlength=k)
    negatives = count - positives
    rank_sum = np.bincount(g_sorted, weights=rank * y_sorted, minlength=k)
    valid = (positives > 0) & (negatives > 0)
    per_user = np.full(k, np.nan)
    per_user[valid] = (rank_sum[valid] - positives[valid] * (positives[valid] + 1) / 2) / (
        positives[valid] * negatives[valid]
    )
    w = (count if weight == "samples" else positives)[valid]
    n_valid = int(valid.sum())
    return UserAucResult(
        uauc=float(per_user[valid].mean()) if n_valid else float("nan"),
        wuauc=float((per_user[valid] * w).sum() / w.sum()) if n_valid and w.sum() else float("nan"),
        users_evaluated=n_valid,
        users_excluded=int(k - n_valid),
        per_user_auc=per_user,
        users=uniq,
    )
