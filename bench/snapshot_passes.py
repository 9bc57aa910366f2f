"""The user tower over point-in-time snapshots: one causal pass per user (`export.embed.embed_snapshots`, through
the batch-inference primitive in this process) against one pass per snapshot row (each row's own history, as
the export did before), on the same synthetic events and the same untrained tower, in the same run. A refresh
after every positive event, histories of 50. Also the largest difference between the two paths' vectors.
Prints one JSON object.

    python bench/snapshot_passes.py [--events 200000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import generate  # noqa: E402

from export.embed import embed_snapshots  # noqa: E402
from export.snapshots import snapshot_histories  # noqa: E402
from learn_embed.config import PchConfig  # noqa: E402
from learn_embed.experiment import user_vectors  # noqa: E402
from learn_embed.pch import LearnModel  # noqa: E402
from learn_embed.train import SequenceData  # noqa: E402
from learnkit.data.catalog import Catalog  # noqa: E402

HISTORY = 50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        events = pd.read_parquet(generate(Path(folder), args.events))
    catalog = Catalog.from_ids(sorted(events["item_id"].unique().tolist()))
    model = LearnModel(PchConfig(max_len=HISTORY, input="id"), len(catalog.ids)).eval()
    snapshots = snapshot_histories(events, "event", HISTORY, True, 86_400)
    seen = snapshots.rows["seen"].to_numpy()

    start = time.perf_counter()
    data = SequenceData.from_lists([catalog.index(h) for h in snapshots.histories], [[0]] * len(snapshots.rows))
    per_row = user_vectors(model, data).numpy()
    per_row_s = time.perf_counter() - start

    start = time.perf_counter()
    per_user = embed_snapshots(model, catalog, snapshots, np.zeros(model.dim, np.float32)).embeddings
    per_user_s = time.perf_counter() - start

    rows = len(snapshots.rows)
    print(
        json.dumps(
            {
                "benchmark": "snapshot_passes",
                "events": args.events,
                "users": int(snapshots.rows["user_id"].nunique()),
                "snapshot_rows": rows,
                "rows_past_history": int((seen > HISTORY).sum()),
                "history": HISTORY,
                "threads": args.threads,
                "per_row_seconds": round(per_row_s, 2),
                "per_user_seconds": round(per_user_s, 2),
                "per_row_rows_per_s": round(rows / per_row_s),
                "per_user_rows_per_s": round(rows / per_user_s),
                "speedup": round(per_row_s / per_user_s, 2),
                "max_abs_difference": float(np.abs(per_user - per_row).max()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
