"""User and item embeddings from a trained PCH checkpoint (torch): the rows of the feature tables.

Items: every catalog item, each embedded alone by the item tower (items never seen in training included,
from their text). Users: the user tower over each user's newest interactions before the snapshot time, at
the last position; a user with none gets the fallback and `has_embedding = false`. Point-in-time user
snapshots: one row per user and snapshot time after which that user's history changed, built only from the
events strictly before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from export.tables import EmbeddingTable
from learn_embed.experiment import Catalog, item_vectors, user_vectors
from learn_embed.pch import LearnModel
from learn_embed.train import SequenceData


@dataclass
class UserHistories:
    users: list[str]            # every user of the dataset, sorted
    histories: list[list[str]]  # newest `history_max` item ids before the snapshot, oldest first ([] if none)


def histories_before(events: pd.DataFrame, snapshot: np.ndarray, history_max: int,
                     positives_only: bool) -> UserHistories:
    """`snapshot`: per event row, the start of its user's test period."""
    users = sorted(events["user_id"].unique().tolist())
    before = events[events["ts"].to_numpy() < snapshot]
    if positives_only:
        before = before[before["label"] == 1]
    ordered = before.sort_values(["user_id", "ts", "item_id"], kind="stable")
    grouped = ordered.groupby("user_id", sort=False)["item_id"].apply(list).to_dict()
    return UserHistories(users, [grouped.get(u, [])[-history_max:] for u in users])


@dataclass
class Snapshots:
    rows: pd.DataFrame          # user_id, as_of, history_end (the newest event used: always < as_of)
    histories: list[list[str]]  # per row: the newest `history_max` item ids before as_of, oldest first


def snapshot_histories(events: pd.DataFrame, every: int, history_max: int, positives_only: bool) -> Snapshots:
    """Snapshots every `every` time units from the first event on; a user gets a row at snapshot s when one
    of their events falls in [s - every, s), built from their events with ts < s only."""
    used = events[events["label"] == 1] if positives_only else events
    used = used.sort_values(["user_id", "ts", "item_id"], kind="stable")
    origin = int(events["ts"].min())
    users = used["user_id"].to_numpy()
    ts = used["ts"].to_numpy(np.int64)
    items = used["item_id"].tolist()
    # the first snapshot that sees each event; rows come out sorted by (user, as_of), as `used` is
    first_after = origin + ((ts - origin) // every + 1) * every
    rows = pd.DataFrame({"user_id": users, "as_of": first_after}).drop_duplicates().reset_index(drop=True)
    # the events a snapshot row holds: the user's events before as_of (per user, a sorted search)
    starts = pd.Series(np.arange(len(users))).groupby(users, sort=False).min()
    stops = pd.Series(np.arange(len(users))).groupby(users, sort=False).max() + 1
    first = starts.reindex(rows["user_id"]).to_numpy()
    last = stops.reindex(rows["user_id"]).to_numpy()
    seen = np.array([f + int(np.searchsorted(ts[f:e], a, side="left"))
                     for f, e, a in zip(first, last, rows["as_of"].to_numpy())])
    histories = [items[max(f, n - history_max):n] for f, n in zip(first, seen)]
    return Snapshots(rows.assign(history_end=ts[seen - 1]), histories)


def fallback_vector(vectors: np.ndarray, kind: str) -> np.ndarray:
    if kind == "zero" or len(vectors) == 0:
        return np.zeros(vectors.shape[1], dtype=np.float32)
    return vectors.mean(0).astype(np.float32)


def embed_tables(model: LearnModel, catalog: Catalog, histories: UserHistories,
                 fallback: str) -> dict[str, EmbeddingTable]:
    model.eval()
    items = item_vectors(model, torch.arange(len(catalog.ids))).numpy()
    known = [i for i, h in enumerate(histories.histories) if h]
    dim = items.shape[1]
    users = np.zeros((len(histories.users), dim), dtype=np.float32)
    if known:
        data = SequenceData.from_lists([catalog.index(histories.histories[i]) for i in known], [[0]] * len(known))
        users[known] = user_vectors(model, data).numpy()
    flags = np.zeros(len(histories.users), dtype=bool)
    flags[known] = True
    users[~flags] = user_fallback = fallback_vector(users[flags], fallback)
    return {"users": EmbeddingTable(histories.users, users, flags, user_fallback),
            "items": EmbeddingTable(list(catalog.ids), items.astype(np.float32), np.ones(len(catalog.ids), bool),
                                    fallback_vector(items, fallback))}


def embed_snapshots(model: LearnModel, catalog: Catalog, snapshots: Snapshots,
                    fallback: np.ndarray) -> EmbeddingTable:
    """The point-in-time table: each snapshot row's user vector, with its as_of and history_end."""
    model.eval()
    dim = model.dim
    vectors = np.zeros((len(snapshots.rows), dim), dtype=np.float32)
    if len(snapshots.rows):
        data = SequenceData.from_lists([catalog.index(h) for h in snapshots.histories], [[0]] * len(snapshots.rows))
        vectors = user_vectors(model, data).numpy().astype(np.float32)
    return EmbeddingTable(snapshots.rows["user_id"].astype(str).tolist(), vectors, np.ones(len(vectors), bool),
                          fallback, snapshots.rows["as_of"].to_numpy(np.int64),
                          snapshots.rows["history_end"].to_numpy(np.int64))
