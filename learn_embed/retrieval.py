"""Full-ranking retrieval evaluation: each user's embedding against the whole gallery, in chunks of users
so that memory is bounded by chunk x gallery (never users x gallery). H@K: the user is a hit if any target
is in the top K; R@K: share of the user's targets found; N@K: NDCG with binary relevance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from learnkit.core.progress import progress_bar

DEFAULT_KS = (10, 50, 100, 200)


def top_k(
    users: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    exclude: Sequence[Sequence[int]] | None = None,
    chunk: int = 1024,
    progress: bool = False,
    born: torch.Tensor | None = None,
    as_of: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices [n_users, k] of the highest-scoring gallery rows per user (dot product), best first.
    `exclude[u]` lists gallery rows never returned for user u (e.g. its history); with `born` ([gallery]) and
    `as_of` ([users]) times, neither is a row born after the user's time (an item that did not exist yet)."""
    k = min(k, gallery.shape[0])
    out = torch.empty((users.shape[0], k), dtype=torch.int64)
    starts = range(0, users.shape[0], chunk)
    for start in progress_bar(starts, desc="retrieval", unit="chunk", enabled=progress):
        scores = users[start : start + chunk] @ gallery.T
        if exclude is not None:
            rows, cols = [], []
            for r, banned in enumerate(exclude[start : start + chunk]):
                rows += [r] * len(banned)
                cols += list(banned)
            if rows:
                scores[torch.tensor(rows), torch.tensor(cols)] = float("-inf")
        if born is not None and as_of is not None:
            scores[born[None, :] > as_of[start : start + chunk, None]] = float("-inf")
        out[start : start + chunk] = torch.topk(scores, k, dim=1).indices
    return out


def per_user_metrics(
    ranked: np.ndarray, targets: Sequence[Sequence[int]], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, np.ndarray]:
    """ranked [n_users, >= max(ks)] gallery indices best first; targets[u] the relevant gallery indices.
    Returns each figure per user ([n_users] arrays), the input of means and bootstrap intervals."""
    out = {f"{m}@{k}": np.zeros(len(targets)) for k in ks for m in ("H", "R", "N")}
    for u, (row, relevant) in enumerate(zip(ranked, targets, strict=True)):
        relevant_set = set(int(t) for t in relevant)
        if not relevant_set:
            raise ValueError("a user without targets cannot be evaluated")
        hits = np.array([int(i) in relevant_set for i in row])
        positions = np.flatnonzero(hits)
        for k in ks:
            found = positions[positions < k]
            out[f"H@{k}"][u] = float(len(found) > 0)
            out[f"R@{k}"][u] = len(found) / len(relevant_set)
            ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant_set), k)))
            out[f"N@{k}"][u] = sum(1.0 / math.log2(p + 2) for p in found) / ideal
    return out


def retrieval_metrics(
    ranked: np.ndarray, targets: Sequence[Sequence[int]], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """The mean over users of `per_user_metrics`."""
    return {name: float(values.mean()) for name, values in per_user_metrics(ranked, targets, ks).items()}
