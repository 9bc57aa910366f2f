"""Full-ranking retrieval evaluation: each user's embedding against the whole gallery, in chunks of users
so that memory is bounded by chunk x gallery (never users x gallery). H@K: the user is a hit if any target
is in the top K; R@K: share of the user's targets found; N@K: NDCG with binary relevance."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from learnkit.progress import progress_bar

DEFAULT_KS = (10, 50, 100, 200)


def top_k(users: torch.Tensor, gallery: torch.Tensor, k: int, exclude: Sequence[Sequence[int]] | None = None,
          chunk: int = 1024, progress: bool = False) -> torch.Tensor:
    """Indices [n_users, k] of the highest-scoring gallery rows per user (dot product), best first.
    `exclude[u]` lists gallery rows never returned for user u (e.g. its history)."""
    k = min(k, gallery.shape[0])
    out = torch.empty((users.shape[0], k), dtype=torch.int64)
    starts = range(0, users.shape[0], chunk)
    for start in progress_bar(starts, desc="retrieval", unit="chunk", enabled=progress):
        scores = users[start:start + chunk] @ gallery.T
        if exclude is not None:
            rows, cols = [], []
            for r, banned in enumerate(exclude[start:start + chunk]):
                rows += [r] * len(banned)
                cols += list(banned)
            if rows:
                scores[torch.tensor(rows), torch.tensor(cols)] = float("-inf")
        out[start:start + chunk] = torch.topk(scores, k, dim=1).indices
    return out


def retrieval_metrics(ranked: np.ndarray, targets: Sequence[Sequence[int]],
                      ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """ranked [n_users, >= max(ks)] gallery indices best first; targets[u] the relevant gallery indices."""
    totals = {f"{m}@{k}": 0.0 for k in ks for m in ("H", "R", "N")}
    for row, relevant in zip(ranked, targets):
        relevant_set = set(int(t) for t in relevant)
        if not relevant_set:
            raise ValueError("a user without targets cannot be evaluated")
        hits = np.array([int(i) in relevant_set for i in row])
        positions = np.flatnonzero(hits)
        for k in ks:
            found = positions[positions < k]
            totals[f"H@{k}"] += float(len(found) > 0)
            totals[f"R@{k}"] += len(found) / len(relevant_set)
            ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant_set), k)))
            totals[f"N@{k}"] += sum(1.0 / math.log2(p + 2) for p in found) / ideal
    n = len(targets)
    return {name: value / n for name, value in totals.items()}
