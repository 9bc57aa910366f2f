"""The item-to-item check of paper Fig. 2: are an item's nearest neighbours by content embedding
related items? Numpy only. Decoder states are anisotropic (every raw cosine is high), so the figure is
reported both on raw and on mean-centred embeddings."""

from __future__ import annotations

import numpy as np


def normalise(matrix: np.ndarray, centre: bool = False) -> np.ndarray:
    m = matrix.astype(np.float32, copy=True)
    if centre:
        m -= m.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.maximum(norms, 1e-12)


def nearest_neighbours(
    matrix: np.ndarray, k: int, queries: np.ndarray | None = None, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k neighbours by cosine of each query row (itself excluded): (indices, similarities)."""
    queries = np.arange(len(matrix)) if queries is None else np.asarray(queries)
    k = min(k, len(matrix) - 1)
    idx_out = np.zeros((len(queries), k), dtype=np.int64)
    sim_out = np.zeros((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        sims = matrix[q] @ matrix.T
        sims[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        idx_out[start : start + len(q)] = np.take_along_axis(top, order, axis=1)
        sim_out[start : start + len(q)] = np.take_along_axis(top_sims, order, axis=1)
    return idx_out, sim_out


def label_share_at_k(matrix: np.ndarray, labels: list[frozenset[str]], k: int) -> float:
    """Mean over items with labels of the share of their k nearest neighbours sharing a label."""
    has = np.array([bool(lab) for lab in labels])
    queries = np.flatnonzero(has)
    neighbours, _ = nearest_neighbours(matrix, k, queries)
    shares = [np.mean([bool(labels[q] & labels[n]) for n in row]) for q, row in zip(queries, neighbours, strict=True)]
    return float(np.mean(shares))


def item_labels(values: list, separator: str = "|") -> list[frozenset[str]]:
    """Each item's set of labels from a `separator`-joined text cell (empty when the cell is not text)."""
    return [frozenset(filter(None, v.split(separator))) if isinstance(v, str) else frozenset() for v in values]


def label_shares(matrices: dict[str, np.ndarray], labels: list[frozenset[str]], k: int) -> dict[str, float]:
    """The shared-label figure of every embedding, raw and (except `random`) mean-centred (`<name>_centred`)."""
    shares: dict[str, float] = {}
    for name, matrix in matrices.items():
        shares[name] = round(label_share_at_k(normalise(matrix), labels, k), 4)
        if name != "random":
            shares[f"{name}_centred"] = round(label_share_at_k(normalise(matrix, centre=True), labels, k), 4)
    return shares


def pick_queries(ids: list[str], wanted: list[str], sampled: int, rng: np.random.Generator) -> list[int]:
    """Positions of the `wanted` items, then `sampled` other items drawn without replacement."""
    position = {item: i for i, item in enumerate(ids)}
    missing = [q for q in wanted if q not in position]
    if missing:
        raise ValueError(f"i2i.query_items not in the catalog: {missing}")
    queries = [position[q] for q in wanted]
    pool = [i for i in range(len(ids)) if i not in queries]
    return queries + rng.choice(pool, size=min(sampled, len(pool)), replace=False).tolist()
