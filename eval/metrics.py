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
    uauc: float            # mean per-user AUC over users with both classes
    wuauc: float           # the same weighted by samples (or clicks) per user
    users_evaluated: int
    users_excluded: int    # single-class users: their AUC is undefined
    per_user_auc: np.ndarray  # NaN for excluded users, in the order of `users`
    users: np.ndarray


def _grouped_ranks(groups: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, rank) where `order` sorts rows by (group, score) and `rank[i]` is the 1-based average rank
    of sorted row i within its group (ties share the mean of their positions)."""
    order = np.lexsort((scores, groups))
    g, s = groups[order], scores[order]
    n = len(order)
    group_start = np.r_[True, g[1:] != g[:-1]]
    start_index = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    position = np.arange(n) - start_index + 1.0
    tie_start = group_start | np.r_[True, s[1:] != s[:-1]]
    tie_id = np.cumsum(tie_start) - 1
    first = np.flatnonzero(tie_start)
    last = np.r_[first[1:] - 1, n - 1]
    tie_rank = (position[first] + position[last]) / 2.0
    return order, tie_rank[tie_id]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (ties count half); NaN if only one class is present."""
    result = user_auc(np.zeros(len(labels), dtype=np.int64), labels, scores)
    return float(result.per_user_auc[0]) if len(result.per_user_auc) else float("nan")


def user_auc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray,
             weight: Literal["samples", "clicks"] = "samples") -> UserAucResult:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if not (len(users) == len(labels) == len(scores)):
        raise ValueError(f"users, labels and scores differ in length ({len(users)}, {len(labels)}, {len(scores)})")
    if len(labels) and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} score(s) are NaN")
    uniq, groups = np.unique(np.asarray(users), return_inverse=True)
    order, rank = _grouped_ranks(groups, scores)
    g_sorted, y_sorted = groups[order], labels[order].astype(np.float64)
    k = len(uniq)
    count = np.bincount(g_sorted, minlength=k).astype(np.float64)
    positives = np.bincount(g_sorted, weights=y_sorted, minlength=k)
    negatives = count - positives
    rank_sum = np.bincount(g_sorted, weights=rank * y_sorted, minlength=k)
    valid = (positives > 0) & (negatives > 0)
    per_user = np.full(k, np.nan)
    per_user[valid] = (rank_sum[valid] - positives[valid] * (positives[valid] + 1) / 2) / (
        positives[valid] * negatives[valid])
    w = (count if weight == "samples" else positives)[valid]
    n_valid = int(valid.sum())
    return UserAucResult(
        uauc=float(per_user[valid].mean()) if n_valid else float("nan"),
        wuauc=float((per_user[valid] * w).sum() / w.sum()) if n_valid and w.sum() else float("nan"),
        users_evaluated=n_valid, users_excluded=int(k - n_valid), per_user_auc=per_user, users=uniq)
