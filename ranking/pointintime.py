"""The point-in-time join of ranking samples to exported user snapshots (numpy and pandas; no framework).

A sample of user u at time t gets u's snapshot row with the largest `valid_from <= t`. A row valid from v is
built only from events strictly before v, so no sample's vector holds its own event or anything after it. A user
with no snapshot yet gets the fallback vector and `has_embedding = 0`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from export.tables import EmbeddingTable

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
