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

import numpy as np
import pandas as pd
import torch

from export.snapshot_passes import SnapshotUserTower, snapshot_inputs
from export.snapshots import Snapshots
from export.tables import EmbeddingTable
from learn_embed.experiment import item_vectors, user_vectors
from learn_embed.pch import LearnModel
from learn_embed.train import SequenceData
from learnkit.core.batches import map_table
from learnkit.core.sql import EngineConfig
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


def embed_snapshots(
    model: LearnModel, catalog: Catalog, snapshots: Snapshots, fallback: np.ndarray, engine: EngineConfig | None = None
) -> EmbeddingTable:
    """The point-in-time table: each snapshot row's user vector, with its valid_from, history_end and as_of;
    the vectors by one causal pass per user (`export.snapshot_passes`), as batch inference under `engine`."""
    engine = engine or EngineConfig()
    vectors = np.zeros((len(snapshots.rows), model.dim), dtype=np.float32)
    if len(snapshots.rows):
        on_gpu = engine.kind == "ray" and engine.gpus_per_actor > 0
        args = (model, snapshots.history_max, "cuda" if on_gpu else None)
        inputs = snapshot_inputs(snapshots, catalog)
        result = map_table(inputs, SnapshotUserTower, args, engine, batch_rows=256, desc="snapshot user tower")
        rows = result.column("row").to_numpy()
        if len(rows) != len(vectors) or len(np.unique(rows)) != len(rows):
            raise RuntimeError(f"batch inference gave {len(rows)} snapshot vectors for {len(vectors)} rows")
        vectors[rows] = result.column("vector").combine_chunks().flatten().to_numpy().reshape(len(rows), -1)
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
