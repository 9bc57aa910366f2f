"""Parquet parts of an embedding table -> `tf.train.Example` TFRecord files, one beside each part.

Run as `python -m export.tfrecord TABLE_FOLDER` (a child of the export, so that torch and TensorFlow never
share a process). Each record: `id` (bytes), `embedding` (float list), `has_embedding` (int64 0/1).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow.parquet as pq

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def convert(folder: Path) -> list[Path]:
    import tensorflow as tf

    written = []
    for part in sorted(folder.glob("part-*.parquet")):
        table = pq.read_table(part)
        ids = table.column("id").to_pylist()
        dim = table.column("embedding").type.list_size
        matrix = table.column("embedding").combine_chunks().values.to_numpy().reshape(-1, dim)
        flags = table.column("has_embedding").to_pylist()
        out = part.with_suffix(".tfrecord")
        with tf.io.TFRecordWriter(str(out)) as writer:
            for key, vector, flag in zip(ids, matrix, flags):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode("utf-8")])),
                    "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=vector)),
                    "has_embedding": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(flag)])),
                }))
                writer.write(example.SerializeToString())
        written.append(out)
    return written


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        convert(Path(argument))
