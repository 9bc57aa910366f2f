"""Parquet parts of an embedding table -> `tf.train.Example` TFRecord files, one per part, in a folder of their own.

Run as `python -m export.tfrecord PARQUET_FOLDER TFRECORD_FOLDER [...]` (a child of the export, so that
torch and TensorFlow never share a process). Each record: `id` (bytes), `embedding` (float list),
`has_embedding` (int64 0/1), and in a point-in-time table `valid_from` and `history_end` (int64), as in the
Parquet part.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow.parquet as pq

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def convert(folder: Path, out_folder: Path) -> list[Path]:
    import tensorflow as tf

    written = []
    out_folder.mkdir(parents=True, exist_ok=True)
    for part in sorted(folder.glob("part-*.parquet")):
        table = pq.read_table(part)
        ids = table.column("id").to_pylist()
        dim = table.column("embedding").type.list_size
        matrix = table.column("embedding").combine_chunks().values.to_numpy().reshape(-1, dim)
        flags = table.column("has_embedding").to_pylist()
        times = {c: table.column(c).to_pylist() for c in ("valid_from", "history_end") if c in table.column_names}
        out = out_folder / part.with_suffix(".tfrecord").name
        with tf.io.TFRecordWriter(str(out)) as writer:
            for row, (key, vector, flag) in enumerate(zip(ids, matrix, flags, strict=True)):
                feature = {
                    "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode("utf-8")])),
                    "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=vector)),
                    "has_embedding": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(flag)])),
                }
                for column, values in times.items():
                    feature[column] = tf.train.Feature(int64_list=tf.train.Int64List(value=[values[row]]))
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())
        written.append(out)
    return written


if __name__ == "__main__":
    arguments = sys.argv[1:]
    for source, target in zip(arguments[::2], arguments[1::2], strict=True):
        convert(Path(source), Path(target))
