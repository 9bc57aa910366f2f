"""AUC, UAUC and WUAUC, grouped by user in DuckDB, in one pass over all rows.

Rows that tie in (user, score) are one group: DuckDB counts each group's rows and positives, places the groups
by a running count in score order within each user, and sums each user's positive ranks, ties at their average
rank, as exact integers (twice the rank sum). The per-user AUCs then follow in numpy. Never per batch, never by
folding user and score into one float key (which loses precision and mixes users), and under the engine's
memory limit (spilling past it), so that a test set need not fit in memory twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from learnkit.core.sql import EngineConfig, connect, register


@dataclass(frozen=True)
class UserAucResult:
    uauc: float  # mean per-user AUC over users with both classes
    wuauc: float  # the same weighted by samples (or clicks) per user
    users_evaluated: int
    users_excluded: int  # single-class users: their AUC is undefined
    per_user_auc: np.ndarray  # NaN for excluded users, in the order of `users`
    users: np.ndarray


_RANK_SUMS = """
    WITH ties AS (
        SELECT user_id, score, count(*) AS n, sum(label) AS positives FROM rows GROUP BY user_id, score
    ), placed AS (  -- a tie group's last rank; its first is last - n + 1, its average half their sum
        SELECT user_id, n, positives,
               sum(n) OVER (PARTITION BY user_id ORDER BY score ROWS UNBOUNDED PRECEDING) AS last
        FROM ties
    )
    SELECT user_id, sum(n)::BIGINT AS count, sum(positives)::BIGINT AS positives,
           sum(positives * (2 * last - n + 1))::BIGINT AS twice_rank_sum
    FROM placed GROUP BY user_id ORDER BY user_id
"""


def _rank_sums(
    users: np.ndarray, labels: np.ndarray, scores: np.ndarray, engine: EngineConfig | None
) -> dict[str, np.ndarray]:
    """Per user, in ascending order: rows, positives and twice the positives' rank sum (ties averaged)."""
    rows = pd.DataFrame({"user_id": users, "label": labels.astype(np.int64), "score": scores})
    with connect(engine) as con:
        register(con, rows=rows)
        return con.sql(_RANK_SUMS).fetchnumpy()


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (ties count half); NaN if only one class is present."""
    result = user_auc(np.zeros(len(labels), dtype=np.int64), labels, scores)
    return float(result.per_user_auc[0]) if len(result.per_user_auc) else float("nan")


def user_auc(
    users: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    weight: Literal["samples", "clicks"] = "samples",
    engine: EngineConfig | None = None,
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
    sums = _rank_sums(users, labels, scores, engine)
    uniq = np.asarray(sums["user_id"], dtype=users.dtype) if len(users) else users[:0]
    k = len(uniq)
    count = np.asarray(sums["count"], dtype=np.float64)
    positives = np.asarray(sums["positives"], dtype=np.float64)
    negatives = count - positives
    rank_sum = np.asarray(sums["twice_rank_sum"], dtype=np.float64) / 2.0  # exact: half-integers below 2**53
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
