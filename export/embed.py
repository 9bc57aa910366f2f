"""User and item embeddings from a trained PCH checkpoint (torch): the rows of the feature tables.

Items: every catalog item, each embedded alone by the item tower (items never seen in training included,
from their text). Users: the user tower over each user's newest interactions before the snapshot time, at
the last position; a user with none gets the fallback and `has_embedding = false`.
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
