"""Point-in-time user snapshot rows and the histories they are built from.

A row (user, valid_from) holds the user's newest `history_max` events strictly before `valid_from`. Rather than
a list per row (a user with n events would hold about n x history_max copies), the result is the users' sequences
of used events once (`learnkit.data.sequences`, the same sort the splits are cut from), and per row the number
of the user's events it sees (`seen`): its history is the newest `history_max` of those.

That one sort is all the relational work: a user's refresh times rise with their event times, so in the sorted
sequence a row is the last event of each run of one (user, refresh), and `seen` its position in the user's
sequence. A linear scan reads the rows off (`snapshot_rows`), in memory or over the sorted events streamed
from disk (`stream_snapshot_rows`); a SQL window and group-by over the events would sort them twice more. The
sort runs in DuckDB by user bucket under the engine's `memory_limit`, spilling past it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from learnkit.core.sql import EngineConfig
from learnkit.data.sequences import UserSequences, user_sequences, user_starts


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


def refresh_times(ts: np.ndarray, every: int | Literal["event"], origin: int) -> np.ndarray:
    """Per event: the first refresh that sees it (`valid_from`), the next time unit or the next snapshot
    boundary. `origin`: the first event's time over all events, so that the grid does not depend on a bucket."""
    if every == "event":
        return ts + 1
    step = int(every)
    if step < 1:
        raise ValueError(f"a snapshot every {every} time units: it must be at least 1")
    return origin + ((ts - origin) // step + 1) * step


def snapshot_rows(
    users: pa.Array,
    starts: np.ndarray,
    ts: np.ndarray,
    every: int | Literal["event"],
    origin: int,
    partition_every: int,
) -> pa.Table:
    """The snapshot rows (`_COLUMNS`) of whole users' used events, sorted by user and time: users[u]'s events
    are rows starts[u]:starts[u + 1] of `ts`. The rows come in (user, valid_from) order."""
    valid_from = refresh_times(ts, every, origin)
    owner = np.repeat(np.arange(len(starts) - 1), np.diff(starts))  # per event: its user's number
    run_ends = np.ones(len(ts), bool)
    run_ends[:-1] = valid_from[1:] != valid_from[:-1]
    run_ends[starts[1:] - 1] = True  # a user's last event ends a run
    ends = np.flatnonzero(run_ends)
    valid_from = valid_from[ends]
    cut = int(partition_every)
    as_of = origin + (valid_from - origin) // cut * cut if every == "event" else valid_from
    return pa.table(
        {
            "user_id": users.take(owner[ends]),
            "valid_from": valid_from,
            "history_end": ts[ends],  # the run's newest event
            "as_of": as_of,
            "seen": ends - starts[owner[ends]] + 1,
        }
    )


def stream_snapshot_rows(
    batches: Iterable[pa.RecordBatch], every: int | Literal["event"], origin: int, partition_every: int
) -> Iterator[pa.Table]:
    """The snapshot rows of used events sorted by user and time (user_id, ts) that arrive in batches, in a
    memory bounded by a batch however many events a user has. Each batch's rows are read as if its first user
    began there; when that user goes on from the batch before, their counts go on from it too, and the batch
    before's last row, which waited, gives way to the first row when both are of one refresh."""
    last_user, carried, waiting = None, 0, None  # carried: last_user's events in the batches so far
    for batch in batches:
        table = pa.Table.from_batches([batch])
        if table.num_rows == 0:
            continue
        users = table.column("user_id").combine_chunks()
        starts = user_starts(users)
        ts = table.column("ts").to_numpy().astype(np.int64)
        rows = snapshot_rows(users.take(pa.array(starts[:-1])), starts, ts, every, origin, partition_every)
        goes_on = users[0].as_py() == last_user
        if goes_on:
            seen = rows.column("seen").to_numpy().copy()
            seen[: user_starts(rows.column("user_id").combine_chunks())[1]] += carried
            rows = rows.set_column(rows.schema.get_field_index("seen"), "seen", pa.array(seen))
            if waiting["valid_from"][0] == rows["valid_from"][0]:  # one run of one refresh: the later row holds it
                waiting = None
        out = rows.slice(0, rows.num_rows - 1)
        out = out if waiting is None else pa.concat_tables([waiting, out])
        if out.num_rows:
            yield out
        waiting = rows.slice(rows.num_rows - 1)
        own = int(starts[-1] - starts[-2])
        carried = carried + own if goes_on and len(starts) == 2 else own
        last_user = users[-1].as_py()
    if waiting is not None:
        yield waiting


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
    origin = int(events["ts"].min()) if len(events) else 0  # over all events, as the refresh grid is
    users = pa.array(sequences.users, pa.string())
    rows = snapshot_rows(users, sequences.starts, sequences.ts, every, origin, partition_every)
    frame = pd.DataFrame(
        {
            "user_id": np.asarray(rows.column("user_id").to_pylist(), dtype=object),
            **{name: rows.column(name).to_numpy().astype(np.int64) for name in _COLUMNS[1:]},
        }
    )
    return Snapshots(frame, sequences, history_max)


_COLUMNS = ["user_id", "valid_from", "history_end", "as_of", "seen"]
