"""Writing and reading a 1,000,000 x 64 float32 embedding table as the export writes it (Parquet parts
of fixed-size lists; TFRecord `tf.train.Example`s), against `numpy.save` / `numpy.load` of the same array
in the same run, the speed-of-disk reference. Reads: Parquet raw (`pyarrow.parquet.read_table` to a numpy
matrix) and verified (`export.tables.read_table`: sha256 of every part, finiteness and unique ids);
TFRecord through `tf.data` (`ranking.tables.tfrecord_dataset`). Parquet readers side by side (the export's
layout is unchanged: uncompressed fixed-size lists, a Spark or BigQuery reader's array column): per part
then one concatenation (`raw`), each part's list values copied straight into one preallocated buffer
(`into_buffer`), one `pyarrow.dataset` scan of the folder (`dataset`); and the format's floor, the same floats
as one flat uncompressed float32 column with no list at all (`flat_column`). `parquet_vs_numpy` is the best
reader of the export's own files. Prints one JSON object; ratios are numpy time / format time (1.0 = as fast
as numpy); each read is the best of three (the first warms the page cache). Peak memory is not measured here.

    python bench/export.py [--rows 1000000] [--dim 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from export.tables import EmbeddingTable, read_table, write_export  # noqa: E402


def timed(fn, repeats: int = 1):
    """(result, best wall time of `repeats` calls)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    ids = [f"u{k}" for k in range(args.rows)]
    megabytes = matrix.nbytes / 2**20
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        _, numpy_write = timed(lambda: np.save(root / "m.npy", matrix))
        loaded, numpy_read = timed(lambda: np.load(root / "m.npy"), 3)
        assert np.array_equal(loaded, matrix)
        table = EmbeddingTable(ids, matrix, np.ones(args.rows, bool))
        folder, export_seconds = timed(
            lambda: write_export(root / "export", {"users": table}, {}, version="b", formats=("parquet", "tfrecord"))
        )
        parts = sorted((folder / "users").glob("*.parquet"))

        def raw_parquet() -> np.ndarray:
            columns = [pq.read_table(p, columns=["embedding"]).column("embedding").combine_chunks() for p in parts]
            return np.concatenate([c.values.to_numpy().reshape(-1, args.dim) for c in columns])

        got, parquet_read = timed(raw_parquet, 3)
        assert np.array_equal(got, matrix)

        def into_buffer(tables) -> np.ndarray:
            out, at = np.empty_like(matrix), 0
            for table in tables:
                for chunk in table.column("embedding").chunks:
                    out[at : at + len(chunk)] = chunk.flatten().to_numpy().reshape(-1, args.dim)
                    at += len(chunk)
            return out

        candidates = {"raw": parquet_read}
        got, candidates["into_buffer"] = timed(
            lambda: into_buffer(pq.read_table(p, columns=["embedding"]) for p in parts), 3
        )
        assert np.array_equal(got, matrix)
        scan = lambda: ds.dataset([str(p) for p in parts], format="parquet").to_table(columns=["embedding"])  # noqa: E731
        got, candidates["dataset"] = timed(lambda: into_buffer([scan()]), 3)
        assert np.array_equal(got, matrix)
        flat_schema = pa.schema([pa.field("value", pa.float32(), nullable=False)])
        flat = pa.table({"value": pa.array(matrix.reshape(-1))}, schema=flat_schema)
        pq.write_table(flat, root / "flat.parquet", compression="none", use_dictionary=False, row_group_size=1 << 22)
        got, flat_read = timed(lambda: pq.read_table(root / "flat.parquet").column("value").to_numpy(), 3)
        assert np.array_equal(got.reshape(-1, args.dim), matrix)
        verified, parquet_verified_read = timed(lambda: read_table(root / "export", "users", expect_dim=args.dim), 3)
        assert np.array_equal(verified[0].embeddings, matrix)

        import tensorflow as tf  # after the timings above: its import is not part of them

        from ranking.tables import tfrecord_dataset

        records = sorted((folder / "tfrecord" / "users").glob("*.tfrecord"))

        def read_tfrecord() -> np.ndarray:
            return np.concatenate([b["embedding"] for b in tfrecord_dataset(records, args.dim).as_numpy_iterator()])

        got, tfrecord_read = timed(read_tfrecord, 3)
        assert np.array_equal(got, matrix)
        sizes = {
            "numpy_mb": (root / "m.npy").stat().st_size / 2**20,
            "parquet_mb": sum(p.stat().st_size for p in parts) / 2**20,
            "tfrecord_mb": sum(p.stat().st_size for p in records) / 2**20,
        }
        del tf
    print(
        json.dumps(
            {
                "rows": args.rows,
                "dim": args.dim,
                "array_mb": round(megabytes, 1),
                **{k: round(v, 1) for k, v in sizes.items()},
                "numpy_write_s": round(numpy_write, 3),
                "numpy_read_s": round(numpy_read, 3),
                "export_write_s_parquet_tfrecord_verified": round(export_seconds, 2),
                "parquet_read_s": round(parquet_read, 3),
                "parquet_verified_read_s": round(parquet_verified_read, 3),
                "tfrecord_read_s": round(tfrecord_read, 3),
                "parquet_read_rows_per_s": round(args.rows / parquet_read),
                "tfrecord_read_rows_per_s": round(args.rows / tfrecord_read),
                "parquet_read_mb_per_s": round(megabytes / parquet_read, 1),
                "tfrecord_read_mb_per_s": round(megabytes / tfrecord_read, 1),
                "parquet_read_ratio_to_numpy": round(numpy_read / parquet_read, 3),
                "parquet_vs_numpy": round(numpy_read / min(candidates.values()), 3),
                "parquet_readers_ratio_to_numpy": {k: round(numpy_read / v, 3) for k, v in candidates.items()},
                "parquet_flat_column_ratio_to_numpy": round(numpy_read / flat_read, 3),
                "parquet_verified_read_ratio_to_numpy": round(numpy_read / parquet_verified_read, 3),
                "tfrecord_read_ratio_to_numpy": round(numpy_read / tfrecord_read, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
