"""The point-in-time join of ranking samples to exported user snapshots (DuckDB's `ASOF JOIN`; no framework).

A sample of user u at time t gets u's snapshot row with the largest `valid_from <= t`. A row valid from v is
built only from events strictly before v, so no sample's vector holds its own event or anything after it. A user
with no snapshot yet gets the fallback vector and `has_embedding = 0`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from export.tables import EmbeddingTable
from learnkit.core.errors import DataError
from learnkit.core.sql import EngineConfig, connect, register

NONE = -1


def _samples(rows: pd.DataFrame) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(rows["user_id"].astype(str).to_numpy(), pa.string()),
            "ts": pa.array(rows["ts"].to_numpy(np.int64)),
            "position": pa.array(np.arange(len(rows), dtype=np.int64)),
        }
    )


def snapshot_join_query(samples: str = "samples", snapshots: str = "snapshots") -> str:
    """The SQL of the point-in-time join: relation `samples` (user_id, ts, position) against `snapshots`
    (user_id, valid_from, history_end, snapshot), in the samples' order. Run in memory by
    `join_user_snapshots`, or streamed to files at scale."""
    return f"""
        SELECT coalesce(r.snapshot, {NONE}) AS snapshot, coalesce(r.valid_from, {NONE}) AS valid_from,
               coalesce(r.history_end, {NONE}) AS history_end
        FROM {samples} s ASOF LEFT JOIN {snapshots} r ON s.user_id = r.user_id AND s.ts >= r.valid_from
        ORDER BY s.position
    """


def join_user_snapshots(
    rows: pd.DataFrame, snapshots: EmbeddingTable, engine: EngineConfig | None = None
) -> pd.DataFrame:
    """Per row of `rows` (user_id, ts), in their order: `snapshot` (a row of `snapshots`, or -1), its
    `valid_from` and `history_end` (-1 where none). One as-of join, not a loop over rows."""
    if snapshots.valid_from is None or snapshots.history_end is None:
        raise ValueError("join_user_snapshots needs a point-in-time table (valid_from and history_end)")
    table = pa.table(
        {
            "user_id": pa.array(np.asarray(snapshots.ids, dtype=object).astype(str), pa.string()),
            "valid_from": pa.array(snapshots.valid_from.astype(np.int64)),
            "history_end": pa.array(np.asarray(snapshots.history_end, dtype=np.int64)),
            "snapshot": pa.array(np.arange(len(snapshots.ids), dtype=np.int64)),
        }
    )
    with connect(engine) as con:
        register(con, samples=_samples(rows), snapshots=table)
        joined = con.sql(snapshot_join_query()).fetchnumpy()
    return pd.DataFrame({column: np.asarray(joined[column], dtype=np.int64) for column in joined})


def has_history_before(rows: pd.DataFrame, history: pd.DataFrame, engine: EngineConfig | None = None) -> np.ndarray:
    """Per row of `rows` (user_id, ts), in their order: whether `history` (user_id, ts) holds an event of the
    same user strictly before it."""
    events = pa.table(
        {
            "user_id": pa.array(history["user_id"].astype(str).to_numpy(), pa.string()),
            "seen": pa.array(history["ts"].to_numpy(np.int64)),
        }
    )
    with connect(engine) as con:
        register(con, samples=_samples(rows), events=events)
        found = con.sql(
            """
            SELECT h.seen IS NOT NULL AS found
            FROM samples s ASOF LEFT JOIN events h ON s.user_id = h.user_id AND s.ts > h.seen
            ORDER BY s.position
            """
        ).fetchnumpy()
    return np.asarray(found["found"], dtype=bool)


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
    engine: EngineConfig | None = None,
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
    has_history = has_history_before(rows, history, engine)
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
