"""User and item embeddings from a trained PCH checkpoint (torch): the rows of the feature tables.

Items: every catalog item the snapshot may know, each embedded alone by the item tower (items never seen in
training included, from their text); an item new in the test period is left to the ranker, which embeds it
from its text as production would (`ranking.tables.embed_new_items`).

Users: the user tower over each user's newest interactions before the snapshot time, at
the last position; a user with none gets the fallback and `has_embedding = false`. Point-in-time user
snapshots: one row per user and snapshot time after which that user's history changed, built only from the
events strictly before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from export.tables import EmbeddingTable
from learn_embed.experiment import item_vectors, user_vectors
from learn_embed.pch import LearnModel
from learn_embed.train import SequenceData
from learnkit.data.catalog import Catalog
from learnkit.data.schema import CHRONOLOGICAL


@dataclass
class UserHistories:
    users: list[str]  # every user of the dataset, sorted
    histories: list[list[str]]  # newest `history_max` item ids before the snapshot, oldest first ([] if none)


def histories_before(
    events: pd.DataFrame, snapshot: np.ndarray, history_max: int, positives_only: bool
) -> UserHistories:
    """`snapshot`: per event row, the start of its user's test period."""
    users = sorted(events["user_id"].unique().tolist())
    before = events[events["ts"].to_numpy() < snapshot]
    if positives_only:
        before = before[before["label"] == 1]
    ordered = before.sort_values(CHRONOLOGICAL, kind="stable")
    grouped = ordered.groupby("user_id", sort=False)["item_id"].apply(list).to_dict()
    return UserHistories(users, [grouped.get(u, [])[-history_max:] for u in users])


@dataclass
class Snapshots:
    # user_id, valid_from (from when the row is the user's vector), history_end (the newest event used: always
    # before valid_from) and as_of (the row's snapshot partition: at or before valid_from)
    rows: pd.DataFrame
    histories: list[list[str]]  # per row: the newest `history_max` item ids before valid_from, oldest first


def snapshot_histories(
    events: pd.DataFrame, every: int | Literal["event"], history_max: int, positives_only: bool, partition_every: int
) -> Snapshots:
    """Point-in-time user rows, each built from the user's events with ts < valid_from only.

    every: N   snapshots every N time units from the first event; a user gets a row at snapshot s (valid from
               s, partition as_of s) when one of their events falls in [s - N, s).
    "event"    a refresh after every event time e of the user: a row valid from e + 1 (the next time unit),
               as a ranker that re-embeds a user as they act would see it; rows are grouped into partitions
               of `partition_every` time units (as_of: the partition's start)."""
    used = events[events["label"] == 1] if positives_only else events
    used = used.sort_values(CHRONOLOGICAL, kind="stable")
    origin = int(events["ts"].min())
    users = used["user_id"].to_numpy()
    ts = used["ts"].to_numpy(np.int64)
    items = used["item_id"].tolist()
    # the first refresh that sees each event; rows come out sorted by (user, valid_from), as `used` is
    valid_from = ts + 1 if every == "event" else origin + ((ts - origin) // every + 1) * every
    rows = pd.DataFrame({"user_id": users, "valid_from": valid_from}).drop_duplicates().reset_index(drop=True)
    # the events a row holds: the user's events before valid_from (per user, a sorted search)
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
    return Snapshots(rows.assign(history_end=ts[seen - 1], as_of=as_of), histories)


def fallback_vector(vectors: np.ndarray, kind: str) -> np.ndarray:
    if kind == "zero" or len(vectors) == 0:
        return np.zeros(vectors.shape[1], dtype=np.float32)
    return vectors.mean(0).astype(np.float32)


def embed_tables(
    model: LearnModel, catalog: Catalog, histories: UserHistories, fallback: str, left_out: set[str] | None = None
) -> dict[str, EmbeddingTable]:
    """The `users` table and the `items` table of every catalog item but those in `left_out`."""
    model.eval()
    kept = [i for i, item in enumerate(catalog.ids) if item not in (left_out or set())]
    items = item_vectors(model, torch.tensor(kept, dtype=torch.int64)).numpy()
    known = [i for i, h in enumerate(histories.histories) if h]
    dim = items.shape[1]
    users = np.zeros((len(histories.users), dim), dtype=np.float32)
    if known:
        data = SequenceData.from_lists([catalog.index(histories.histories[i]) for i in known], [[0]] * len(known))
        users[known] = user_vectors(model, data).numpy()
    flags = np.zeros(len(histories.users), dtype=bool)
    flags[known] = True
    users[~flags] = user_fallback = fallback_vector(users[flags], fallback)
    return {
        "users": EmbeddingTable(histories.users, users, flags, user_fallback),
        "items": EmbeddingTable(
            [catalog.ids[i] for i in kept],
            items.astype(np.float32),
            np.ones(len(kept), bool),
            fallback_vector(items, fallback),
        ),
    }


def embed_snapshots(model: LearnModel, catalog: Catalog, snapshots: Snapshots, fallback: np.ndarray) -> EmbeddingTable:
    """The point-in-time table: each snapshot row's user vector, with its valid_from, history_end and as_of."""
    model.eval()
    dim = model.dim
    vectors = np.zeros((len(snapshots.rows), dim), dtype=np.float32)
    if len(snapshots.rows):
        data = SequenceData.from_lists([catalog.index(h) for h in snapshots.histories], [[0]] * len(snapshots.rows))
        vectors = user_vectors(model, data).numpy().astype(np.float32)
    rows = snapshots.rows
    return EmbeddingTable(
        rows["user_id"].astype(str).tolist(),
        vectors,
        np.ones(len(vectors), bool),
        fallback,
        rows["valid_from"].to_numpy(np.int64),
        rows["history_end"].to_numpy(np.int64),
        rows["as_of"].to_numpy(np.int64),
    )
