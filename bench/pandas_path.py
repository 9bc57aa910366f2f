"""learn-kit's relational steps as they were before DuckDB (pandas and numpy on one machine): what
`bench/scale.py` measures the engine against in the same run, and what the tests check the engine's output
equals on fixed data. Not used by the product.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

CHRONOLOGICAL = ["user_id", "ts", "item_id"]


def snapshot_histories(
    events: pd.DataFrame, every: int | Literal["event"], history_max: int, positives_only: bool, partition_every: int
) -> tuple[pd.DataFrame, list[list[str]]]:
    """(rows: user_id, valid_from, history_end, as_of; histories): each row from the user's events before
    valid_from, by a sorted search per row."""
    used = events[events["label"] == 1] if positives_only else events
    used = used.sort_values(CHRONOLOGICAL, kind="stable")
    origin = int(events["ts"].min())
    users = used["user_id"].to_numpy()
    ts = used["ts"].to_numpy(np.int64)
    items = used["item_id"].tolist()
    valid_from = ts + 1 if every == "event" else origin + ((ts - origin) // every + 1) * every
    rows = pd.DataFrame({"user_id": users, "valid_from": valid_from}).drop_duplicates().reset_index(drop=True)
    starts = pd.Series(np.arange(len(users))).groupby(users, sort=False).min()
    stops = pd.Series(np.arange(len(users))).groupby(users, sort=False).max() + 1
    first = starts.reindex(rows["user_id"]).to_numpy()
    last = stops.reindex(rows["user_id"]).to_numpy()
    seen = np.array(
        [
            f + int(np.searchsorted(ts[f:e], a, side="left"))
            for f, e, a in zip(first, last, rows["valid_from"].to_numpy(), strict=True)
        ]
    )
    histories = [items[max(f, n - history_max) : n] for f, n in zip(first, seen, strict=True)]
    start = rows["valid_from"].to_numpy(np.int64)
    as_of = origin + (start - origin) // partition_every * partition_every if every == "event" else start
    return rows.assign(history_end=ts[seen - 1], as_of=as_of), histories


def asof_join(samples: pd.DataFrame, snapshots: pd.DataFrame) -> np.ndarray:
    """Per sample (user_id, ts), in order: the row of `snapshots` (user_id, valid_from) with the largest
    valid_from <= ts, or -1."""
    left = pd.DataFrame(
        {
            "user_id": samples["user_id"].to_numpy(),
            "ts": samples["ts"].to_numpy(np.int64),
            "position": np.arange(len(samples)),
        }
    ).sort_values("ts", kind="stable")
    right = pd.DataFrame(
        {
            "user_id": snapshots["user_id"].to_numpy(),
            "valid_from": snapshots["valid_from"].to_numpy(np.int64),
            "snapshot": np.arange(len(snapshots)),
        }
    ).sort_values("valid_from", kind="stable")
    merged = pd.merge_asof(
        left, right, left_on="ts", right_on="valid_from", by="user_id", direction="backward", allow_exact_matches=True
    ).sort_values("position")
    return merged["snapshot"].fillna(-1).to_numpy(np.int64)


def user_sequences(
    events: pd.DataFrame, positives_only: bool, columns: list[str]
) -> list[tuple[str, list[str], np.ndarray, dict[str, np.ndarray]]]:
    """Per user, in ascending id order: (user, item ids, times, the further columns), chronological with ties
    in input order; as the splits grouped a stable sort (learnkit.data.splits before DuckDB)."""
    if positives_only:
        events = events[events["label"] == 1]
    ordered = events.sort_values(CHRONOLOGICAL, kind="stable").reset_index(drop=True)
    return [
        (user, group["item_id"].tolist(), group["ts"].to_numpy(), {c: group[c].to_numpy() for c in columns})
        for user, group in ordered.groupby("user_id", sort=True)
    ]


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


def user_auc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray, weight: str = "samples") -> dict:
    """Per-user AUC (NaN for single-class users, users ascending), UAUC and WUAUC from one `numpy.lexsort`, as
    eval.metrics computed them before DuckDB."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((scores, users))
    u_sorted = users[order]
    group_start = np.r_[True, u_sorted[1:] != u_sorted[:-1]] if len(order) else np.zeros(0, bool)
    g_sorted = np.cumsum(group_start) - 1
    rank = _sorted_ranks(group_start, scores[order]) if len(order) else np.zeros(0)
    y_sorted = np.asarray(labels)[order].astype(np.float64)
    k = int(group_start.sum())
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
    return {
        "users": u_sorted[group_start],
        "per_user_auc": per_user,
        "uauc": float(per_user[valid].mean()) if valid.any() else float("nan"),
        "wuauc": float((per_user[valid] * w).sum() / w.sum()) if valid.any() and w.sum() else float("nan"),
    }
