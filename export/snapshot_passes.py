"""The user tower over point-in-time snapshot rows: one causal pass per user, not one per row.

The tower is causal and counts positions from a history's oldest event (right padding), so its output at
position p of a pass over a user's oldest events is the output of a pass over the first p + 1 of them alone.
Every snapshot row that sees at most `length` events is therefore read off one pass over the user's first
`length` events, at position `seen - 1`. A row that sees more has its newest `length` events as its history,
a window that starts where no other row's does: it gets a pass of its own. Runs through
`learnkit.core.batches.map_batches`, a batch of users at a time, in this process or on Ray actors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from export.snapshots import Snapshots
from learn_embed.pch import LearnModel
from learnkit.data.catalog import Catalog


def snapshot_inputs(snapshots: Snapshots, catalog: Catalog) -> pa.Table:
    """One row per user with snapshot rows: `items`, the catalog indices of the user's used events, oldest
    first; `seen` and `row`, each of the user's snapshot rows' count of events it sees and its position in
    `snapshots.rows`."""
    sequences, rows = snapshots.sequences, snapshots.rows
    user_of_row = pd.Index(sequences.users).get_indexer(rows["user_id"])
    if (user_of_row < 0).any():
        raise ValueError("a snapshot row's user has no sequence of used events")
    order = np.argsort(user_of_row, kind="stable")
    row_offsets = np.concatenate([[0], np.cumsum(np.bincount(user_of_row, minlength=len(sequences.users)))])
    items = np.asarray(catalog.index(sequences.items), dtype=np.int64)
    table = pa.table(
        {
            "items": pa.ListArray.from_arrays(pa.array(sequences.starts, pa.int32()), pa.array(items)),
            "seen": pa.ListArray.from_arrays(
                pa.array(row_offsets, pa.int32()), pa.array(rows["seen"].to_numpy(np.int64)[order])
            ),
            "row": pa.ListArray.from_arrays(pa.array(row_offsets, pa.int32()), pa.array(order.astype(np.int64))),
        }
    )
    return table.filter(pc.greater(pc.list_value_length(table.column("row")), 0))


class SnapshotUserTower:
    """`map_batches`' model: a batch of `snapshot_inputs` rows -> (row, vector) for each of their snapshot rows."""

    def __init__(self, model: LearnModel, length: int, device: str | None = None, passes_per_call: int = 512) -> None:
        """`device`: where a worker puts its copy of the model (a Ray actor with a GPU: cuda); None keeps the
        model where the caller has it (moving it would move the caller's model too)."""
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.model = (model.to(self.device) if device else model).eval()
        self.length, self.passes_per_call = length, passes_per_call

    def __call__(self, batch: pa.Table) -> pa.Table:
        passes, reads = self._plan(batch)
        rows = pc.list_flatten(batch.column("row")).to_numpy().astype(np.int64)
        vectors = np.zeros((len(rows), self.model.dim), dtype=np.float32)
        read_pass, read_position = reads
        with torch.no_grad():
            for start in range(0, len(passes), self.passes_per_call):
                chunk = passes[start : start + self.passes_per_call]
                history = torch.full((len(chunk), max(len(p) for p in chunk)), -1, dtype=torch.int64)
                for i, sequence in enumerate(chunk):
                    history[i, : len(sequence)] = torch.as_tensor(sequence)
                outputs = self.model.user_embeddings(history.to(self.device)).cpu()
                here = (read_pass >= start) & (read_pass < start + len(chunk))
                vectors[here] = outputs[read_pass[here] - start, read_position[here]].numpy()
        flat = pa.array(vectors.reshape(-1), pa.float32())
        return pa.table({"row": rows, "vector": pa.FixedSizeListArray.from_arrays(flat, self.model.dim)})

    def _plan(self, batch: pa.Table) -> tuple[list[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The passes to run and, per snapshot row in the batch's order, its pass and the position to read."""
        passes: list[np.ndarray] = []
        read_pass: list[int] = []
        read_position: list[int] = []
        cut = self.length
        for items, seen in zip(batch.column("items").to_pylist(), batch.column("seen").to_pylist(), strict=True):
            events = np.asarray(items, dtype=np.int64)
            head = len(passes)
            if min(seen) <= cut:  # one pass over the user's first `cut` events serves every such row
                passes.append(events[: min(cut, max(s for s in seen if s <= cut))])
            for count in seen:
                if count <= cut:
                    read_pass.append(head)
                    read_position.append(count - 1)
                else:
                    read_pass.append(len(passes))
                    read_position.append(cut - 1)
                    passes.append(events[count - cut : count])
        return passes, (np.asarray(read_pass, dtype=np.int64), np.asarray(read_position, dtype=np.int64))
