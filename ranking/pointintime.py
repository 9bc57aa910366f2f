"""The point-in-time join of ranking samples to exported user snapshots (numpy and pandas; no framework).

A sample of user u at time t gets u's snapshot row with the largest `valid_from <= t`. A row valid from v is
built only from events strictly before v, so no sample's vector holds its own event or anything after it. A user
with no snapshot yet gets the fallback vector and `has_embedding = 0`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from export.tables import EmbeddingTable
from learnkit.core.errors import DataError

NONE = -1


def join_user_snapshots(rows: pd.DataFrame, snapshots: EmbeddingTable) -> pd.DataFrame:
    """Per row of `rows` (user_id, ts), in their order: `snapshot` (a row of `snapshots`, or -1), its
    `valid_from` and `history_end` (-1 where none). A sorted as-of merge, not a loop over rows."""
    if snapshots.valid_from is None or snapshots.history_end is None:
        raise ValueError("join_user_snapshots needs a point-in-time table (valid_from and history_end)")
    left = pd.DataFrame(
        {
            "user_id": rows["user_id"].astype(str).to_numpy(),
            "ts": rows["ts"].to_numpy(np.int64),
            "position": np.arange(len(rows)),
        }
    ).sort_values("ts", kind="stable")
    right = pd.DataFrame(
        {
            "user_id": np.asarray(snapshots.ids, dtype=object).astype(str),
            "valid_from": snapshots.valid_from.astype(np.int64),
            "history_end": snapshots.history_end,
            "snapshot": np.arange(len(snapshots.ids)),
        }
    ).sort_values("valid_from", kind="stable")
    merged = pd.merge_asof(
        left, right, left_on="ts", right_on="valid_from", by="user_id", direction="backward", allow_exact_matches=True
    ).sort_values("position")
    return pd.DataFrame(
        {column: merged[column].fillna(NONE).to_numpy(np.int64) for column in ("snapshot", "valid_from", "history_end")}
    )


def learn_columns(
    rows: pd.DataFrame,
    snapshots: EmbeddingTable,
    item_ids: np.ndarray,
    item_vectors: np.ndarray,
    item_flags: np.ndarray,
    item_fallback: np.ndarray,
    joined: pd.DataFrame | None = None,
) -> dict[str, np.ndarray]:
    """The LEARN inputs of each row as columns: the joined user snapshot (or the fallback) and the item's
    vector (or the fallback for an item the export does not hold), with their has_embedding flags. `joined`:
    `join_user_snapshots(rows, snapshots)` when the caller has it already."""
    row_snapshot = (join_user_snapshots(rows, snapshots) if joined is None else joined)["snapshot"].to_numpy()
    has_user = row_snapshot != NONE
    user = np.where(
        has_user[:, None], snapshots.embeddings[np.maximum(row_snapshot, 0)], snapshots.fallback_vector()[None]
    )
    position = pd.Index(np.asarray(item_ids, dtype=object).astype(str)).get_indexer(rows["item_id"].astype(str))
    has_item = position >= 0
    item = np.where(has_item[:, None], item_vectors[np.maximum(position, 0)], item_fallback[None])
    item_flag = np.where(has_item, item_flags[np.maximum(position, 0)], 0.0)
    return {
        "user_learn": user.astype(np.float32),
        "user_has_embedding": has_user.astype(np.float32),
        "item_learn": item.astype(np.float32),
        "item_has_embedding": item_flag.astype(np.float32),
    }


def vector_coverage(
    rows: pd.DataFrame,
    is_test: np.ndarray,
    columns: dict[str, np.ndarray],
    joined: pd.DataFrame,
    single_ids: np.ndarray,
    single_flags: np.ndarray,
    history: pd.DataFrame,
) -> dict[str, object]:
    """How many test rows carry a real (non-fallback) user vector: point-in-time, and as the one snapshot at
    each user's test-period start gave it (`single_ids`, `single_flags`: the export's `users` table); and the
    leakage check, that no joined vector holds history from at or after its row's time."""
    ts = rows["ts"].to_numpy()
    has = joined["snapshot"].to_numpy() >= 0
    if (joined["history_end"].to_numpy()[has] >= ts[has]).any():
        raise DataError("a ranking sample's user vector holds history from at or after the sample: leakage")
    single = pd.Index(single_ids.astype(str)).get_indexer(rows["user_id"].astype(str))
    single_flag = np.where(single >= 0, single_flags[np.maximum(single, 0)], 0.0)
    test = np.asarray(is_test)
    # rows whose user has history before them but no snapshot yet: it all falls after the last snapshot
    earlier = pd.merge_asof(
        pd.DataFrame(
            {"user_id": rows["user_id"].astype(str).to_numpy(), "ts": ts, "position": np.arange(len(rows))}
        ).sort_values("ts"),
        pd.DataFrame(
            {"user_id": history["user_id"].astype(str).to_numpy(), "seen": history["ts"].to_numpy()}
        ).sort_values("seen"),
        left_on="ts",
        right_on="seen",
        by="user_id",
        allow_exact_matches=False,
    )
    has_history = earlier.sort_values("position")["seen"].notna().to_numpy()
    waiting = has_history & ~has
    return {
        "test_rows_with_user_vector": float(columns["user_has_embedding"][test].mean()) if test.any() else 0.0,
        "test_rows_with_history_and_vector": float(has[test & has_history].mean())
        if (test & has_history).any()
        else 0.0,
        "test_rows_awaiting_first_snapshot": float(waiting[test].mean()) if test.any() else 0.0,
        "test_rows_with_user_vector_single_snapshot": float(single_flag[test].mean()) if test.any() else 0.0,
        "train_rows_with_user_vector": float(columns["user_has_embedding"][~test].mean()),
        "user_vector": "point-in-time: the user's snapshot row with the largest valid_from <= the sample's time",
    }
