"""Each user's events in time order, sorted in DuckDB: the sequences every split and period example is cut from.

A user's sequence is their events (positives only, when asked) ordered as `learnkit.data.schema.CHRONOLOGICAL`
orders them, and events equal in user, time and item keep their input order; users come in ascending id order.
The sort runs per user bucket (`engine.buckets`, in this process or as Ray tasks) under the engine's memory
limit, spilling past it; what comes back is one Arrow table, read once into the arrays the per-user Python of
the splits walks through.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from learnkit.core.sql import EngineConfig, connect, map_buckets, register


@dataclass(frozen=True)
class UserSequence:
    user: str
    items: list[str]  # item ids, oldest first
    ts: np.ndarray  # [events] int64
    columns: dict[str, np.ndarray]  # the further columns asked for, in the same order

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class UserSequences:
    """Every user's sequence, in ascending user id order."""

    users: list[str]
    starts: np.ndarray  # [users + 1]: user u's events are rows starts[u]:starts[u + 1]
    items: list[str]
    ts: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.users)

    def __iter__(self) -> Iterator[UserSequence]:
        for u, user in enumerate(self.users):
            start, end = int(self.starts[u]), int(self.starts[u + 1])
            yield UserSequence(
                user, self.items[start:end], self.ts[start:end], {k: v[start:end] for k, v in self.columns.items()}
            )


def sequences_query(positives_only: bool, columns: Sequence[str], source: str = "events") -> str:
    """The SQL of the sorted events of `source` (user_id, item_id, ts, label, `_row`: the input position,
    and `columns`)."""
    extra = "".join(f", {_quoted(c)}" for c in columns)
    where = "WHERE label = 1" if positives_only else ""
    return f"""
        SELECT user_id::VARCHAR AS user_id, item_id::VARCHAR AS item_id, ts::BIGINT AS ts{extra}
        FROM {source} {where}
        ORDER BY user_id, ts, item_id, _row
    """


def user_sequences(
    events: pd.DataFrame, positives_only: bool, columns: Sequence[str] = (), engine: EngineConfig | None = None
) -> UserSequences:
    """Every user's sequence of `events` (user_id, item_id, ts, label and `columns`)."""
    frame = events[["user_id", "item_id", "ts", "label", *columns]].assign(_row=np.arange(len(events), dtype=np.int64))
    parts = map_buckets(_bucket_sequences, engine or EngineConfig(), frame, positives_only, list(columns))
    table = pa.concat_tables(parts)
    if len(parts) > 1:  # buckets hold disjoint users, each sorted: a stable sort by user puts them in order
        table = table.take(pc.sort_indices(table, [("user_id", "ascending")]))
    users = table.column("user_id").combine_chunks()
    starts = user_starts(users)
    return UserSequences(
        users=users.take(pa.array(starts[:-1])).to_pylist(),
        starts=starts,
        items=table.column("item_id").to_pylist(),
        ts=table.column("ts").to_numpy().astype(np.int64),
        columns={c: table.column(c).to_numpy() for c in columns},
    )


def user_starts(users: pa.Array) -> np.ndarray:
    """Where each user's rows start in `users` (one id per row, each user's rows together), and then the
    number of rows: user u's rows are starts[u]:starts[u + 1]."""
    if len(users) == 0:
        return np.zeros(1, np.int64)
    changes = np.flatnonzero(pc.not_equal(users[1:], users[:-1]).to_numpy(zero_copy_only=False)) + 1
    return np.r_[0, changes, len(users)].astype(np.int64)


def _bucket_sequences(events: pd.DataFrame, engine: EngineConfig, positives_only: bool, columns: list[str]) -> pa.Table:
    """One bucket's events, sorted (a Ray task under `engine: ray`)."""
    with connect(engine) as con:
        register(con, events=events)
        return con.sql(sequences_query(positives_only, columns)).to_arrow_table()


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'
