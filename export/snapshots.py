"""Point-in-time user snapshot rows and the histories they are built from, in DuckDB.

A row (user, valid_from) holds the user's newest `history_max` events strictly before `valid_from`. Rather than
a list per row (a user with n events would hold about n x history_max copies), the result is the users' sequences
of used events once (`learnkit.data.sequences`, the same sort the splits are cut from), and per row the number
of the user's events it sees (`seen`): its history is the newest `history_max` of those. Both are plain sorts
and aggregates, which DuckDB spills to disk past the engine's `memory_limit`: the process does not grow with
the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from learnkit.core.sql import EngineConfig, bucket_of, connect, map_buckets, register
from learnkit.data.sequences import UserSequences, user_sequences


@dataclass
class Snapshots:
    # user_id, valid_from (from when the row is the user's vector), history_end (the newest event used: always
    # before valid_from), as_of (the row's snapshot partition: at or before valid_from) and seen (how many of
    # the user's events are before valid_from)
    rows: pd.DataFrame
    sequences: UserSequences  # the used events, by user, oldest first
    history_max: int

    @property
    def histories(self) -> list[list[str]]:
        """Per row: the newest `history_max` item ids before valid_from, oldest first."""
        cut, items = self.history_max, self.sequences.items
        start_of = dict(zip(self.sequences.users, self.sequences.starts[:-1].tolist(), strict=True))
        out = []
        for user, seen in zip(self.rows["user_id"], self.rows["seen"], strict=True):
            start = start_of[user]
            out.append(items[start + max(0, seen - cut) : start + seen])
        return out


def used_events(every: int | Literal["event"], positives_only: bool, origin: int, source: str = "events") -> str:
    """The SQL of the events a snapshot may use, each with the first refresh that sees it (`valid_from`: the
    next time unit, or the next snapshot boundary). `origin`: the first event's time over all of `source`
    (user_id, item_id, ts, label)."""
    step = None if every == "event" else int(every)
    if step is not None and step < 1:
        raise ValueError(f"a snapshot every {every} time units: it must be at least 1")
    valid_from = "ts + 1" if step is None else f"{int(origin)} + ((ts - {int(origin)}) // {step} + 1) * {step}"
    where = "WHERE label = 1" if positives_only else ""
    return f"""
        SELECT user_id::VARCHAR AS user_id, ts::BIGINT AS ts, item_id::VARCHAR AS item_id, {valid_from} AS valid_from
        FROM {source} {where}
    """


def snapshot_rows_query(every: int | Literal["event"], origin: int, partition_every: int, used: str = "used") -> str:
    """The SQL of the snapshot rows over `used` (`used_events`), sorted by (user_id, valid_from). A row sees
    the user's events of its own refresh and of every earlier one: a running count per user."""
    cut = int(partition_every)
    as_of = f"{int(origin)} + (valid_from - {int(origin)}) // {cut} * {cut}" if every == "event" else "valid_from"
    return f"""
        SELECT user_id, valid_from, history_end, {as_of} AS as_of, seen FROM (
            SELECT user_id, valid_from, max(ts) AS history_end,
                   (sum(count(*)) OVER (PARTITION BY user_id ORDER BY valid_from))::BIGINT AS seen
            FROM {used} GROUP BY user_id, valid_from
        )
        ORDER BY user_id, valid_from
    """


def snapshot_histories(
    events: pd.DataFrame,
    every: int | Literal["event"],
    history_max: int,
    positives_only: bool,
    partition_every: int,
    engine: EngineConfig | None = None,
) -> Snapshots:
    """Point-in-time user rows, each built from the user's events with ts < valid_from only.

    every: N   snapshots every N time units from the first event; a user gets a row at snapshot s (valid from
               s, partition as_of s) when one of their events falls in [s - N, s).
    "event"    a refresh after every event time e of the user: a row valid from e + 1 (the next time unit),
               as a ranker that re-embeds a user as they act would see it; rows are grouped into partitions
               of `partition_every` time units (as_of: the partition's start)."""
    if history_max < 1:
        raise ValueError(f"history_max must be at least 1, not {history_max}")
    sequences = user_sequences(events, positives_only, engine=engine)
    if events.empty:  # no events: no rows
        empty = pd.DataFrame({c: np.zeros(0, np.int64) for c in _COLUMNS[1:]})
        return Snapshots(empty.assign(user_id=np.zeros(0, dtype=object))[_COLUMNS], sequences, history_max)
    origin = int(events["ts"].min())  # over all events: the refresh grid does not depend on the bucket
    parts = map_buckets(
        _bucket_snapshots, engine or EngineConfig(), events, every, positives_only, partition_every, origin
    )
    rows = pa.concat_tables(parts)
    frame = pd.DataFrame(
        {
            "user_id": np.asarray(rows.column("user_id").to_pylist(), dtype=object),
            **{name: rows.column(name).to_numpy().astype(np.int64) for name in _COLUMNS[1:]},
        }
    )
    # buckets hold disjoint users, each sorted: one stable sort puts the rows in (user_id, valid_from) order
    frame = frame.sort_values(["user_id", "valid_from"], kind="stable").reset_index(drop=True)
    return Snapshots(frame, sequences, history_max)


def _bucket_snapshots(
    bucket: int,
    engine: EngineConfig,
    events: pd.DataFrame,
    every: int | Literal["event"],
    positives_only: bool,
    partition_every: int,
    origin: int,
) -> pa.Table:
    """One bucket of users: its snapshot rows, sorted (a Ray task under `engine: ray`)."""
    with connect(engine) as con:
        register(con, events=events)
        mine = f"(SELECT * FROM events WHERE {bucket_of('user_id', engine.buckets, bucket)})"
        con.execute(f"CREATE VIEW used AS {used_events(every, positives_only, origin, source=mine)}")
        return con.sql(snapshot_rows_query(every, origin, partition_every)).to_arrow_table()


_COLUMNS = ["user_id", "valid_from", "history_end", "as_of", "seen"]
