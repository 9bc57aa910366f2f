"""Training speed of the LEARN ranker fed from the exported feature tables (ids in the batch, LEARN
embeddings read through tf.data into the model and looked up by id) against the same ranker fed in-memory
arrays (the LEARN columns joined beforehand), in the same run. Epoch times after the first (tracing)
epoch; prints one JSON object.

    python bench/ranker.py [--rows 400000] [--users 40000] [--items 10000] [--dim 64] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from learnkit.core.frameworks import prepare_tensorflow  # noqa: E402

prepare_tensorflow()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from export.tables import EmbeddingTable, write_export  # noqa: E402
from ranking.config import RankingConfig, RankingModelConfig, RankingTrainConfig  # noqa: E402
from ranking.model import Ranker, Vocabulary  # noqa: E402
from ranking.tables import read_feature_table  # noqa: E402
from ranking.train import dataset, features_of, set_determinism  # noqa: E402


class EpochTimes(tf.keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.started)


def rate(model: Ranker, features: dict, rows: int, config: RankingConfig, epochs: int) -> float:
    model.compile(optimizer=tf.keras.optimizers.Adam(config.train.lr))
    timer = EpochTimes()
    model.fit(dataset(features, config.train.batch_size, shuffle_seed=0), epochs=epochs, callbacks=[timer], verbose=0)
    return rows / float(np.median(timer.times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    user_ids = np.array([f"u{k}" for k in range(args.users)], dtype=object)
    item_ids = np.array([f"i{k}" for k in range(args.items)], dtype=object)
    user_vectors = rng.standard_normal((args.users, args.dim)).astype(np.float32)
    item_vectors = rng.standard_normal((args.items, args.dim)).astype(np.float32)
    u, i = rng.integers(0, args.users, args.rows), rng.integers(0, args.items, args.rows)
    samples = pd.DataFrame(
        {
            "user_id": user_ids[u],
            "item_id": item_ids[i],
            "label": (rng.random(args.rows) < 0.3).astype(np.int8),
            "part": "train",
        }
    )
    config = RankingConfig(model=RankingModelConfig(), train=RankingTrainConfig(batch_size=512))
    vocabulary = Vocabulary(users=list(user_ids), items=list(item_ids))
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        write_export(
            root,
            {
                "users": EmbeddingTable(list(user_ids), user_vectors, np.ones(args.users, bool)),
                "items": EmbeddingTable(list(item_ids), item_vectors, np.ones(args.items, bool)),
            },
            {},
            formats=("parquet", "tfrecord"),
            version="bench",
        )
        export_seconds = time.perf_counter() - started
        started = time.perf_counter()
        users = read_feature_table(root, "users", "tfrecord")
        items = read_feature_table(root, "items", "tfrecord")
        read_seconds = time.perf_counter() - started
    set_determinism(0)
    from_tables = rate(
        Ranker(vocabulary, config.model, users, items), features_of(samples), args.rows, config, args.epochs
    )
    joined = {
        **features_of(samples),
        "user_learn": user_vectors[u],
        "item_learn": item_vectors[i],
        "user_has_embedding": np.ones(args.rows, np.float32),
        "item_has_embedding": np.ones(args.rows, np.float32),
    }
    set_determinism(0)
    in_memory = rate(Ranker(vocabulary, config.model, users, items), joined, args.rows, config, args.epochs)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "users": args.users,
                "items": args.items,
                "dim": args.dim,
                "batch_size": config.train.batch_size,
                "tables_examples_per_s": round(from_tables, 1),
                "in_memory_examples_per_s": round(in_memory, 1),
                "ratio_to_in_memory": round(from_tables / in_memory, 3),
                "table_write_seconds": round(export_seconds, 2),
                "table_read_seconds_tfrecord": round(read_seconds, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
