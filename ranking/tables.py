"""Exported LEARN feature tables read through `tf.data` (TFRecord or streamed Parquet), verified against
the export's manifest, for lookup by id inside the ranker; and brand-new items embedded from their text in
this process (tokenizers, ONNX Runtime, the TF item tower: no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import tensorflow as tf

from export.content_inputs import MODEL, SETTINGS, TOKENIZER, embed_text
from export.tables import check_rows, open_export, table_files, verified_files
from learnkit.core.configload import from_mapping
from learnkit.core.errors import DataError
from learnkit.data.schema import RejectLog, ValidationRules, validate_items
from learnkit.data.text import TemplateConfig, item_sentences

BATCH = 4096


@dataclass
class FeatureTable:
    ids: np.ndarray  # [rows] bytes
    vectors: np.ndarray  # [rows, dim] float32
    flags: np.ndarray  # [rows] float32, 1 = has an embedding, 0 = fallback row
    fallback: np.ndarray  # [dim]: the vector of ids not in the table
    version: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def missing(self, ids: pd.Series) -> list[str]:
        """The ids of `ids` the table has no row for, sorted."""
        held = set(np.asarray(self.ids, dtype=object).astype(str))
        return sorted(set(ids.astype(str)) - held)

    def with_rows(self, ids: list[str], vectors: np.ndarray) -> FeatureTable:
        """This table plus real rows for `ids` (ids it does not hold), e.g. new items embedded from text."""
        if len(ids) != len(vectors) or (len(ids) and vectors.shape[1] != self.dim):
            raise ValueError(f"with_rows: {len(ids)} ids and vectors of shape {vectors.shape} (dim {self.dim})")
        return FeatureTable(
            np.concatenate([self.ids, np.array([i.encode() for i in ids], dtype=object)]),
            np.vstack([self.vectors, vectors.astype(np.float32)]),
            np.r_[self.flags, np.ones(len(ids), np.float32)],
            self.fallback,
            self.version,
        )


def tfrecord_dataset(files: list[Path], dim: int) -> tf.data.Dataset:
    spec = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "embedding": tf.io.FixedLenFeature([dim], tf.float32),
        "has_embedding": tf.io.FixedLenFeature([], tf.int64),
    }
    return (
        tf.data.TFRecordDataset([str(f) for f in files])
        .batch(BATCH)
        .map(lambda records: tf.io.parse_example(records, spec))
    )


def parquet_dataset(files: list[Path], dim: int) -> tf.data.Dataset:
    """Record batches streamed from the Parquet parts: never the whole table in one piece."""

    def batches():
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
                vectors = batch.column("embedding").values.to_numpy(zero_copy_only=False).reshape(-1, dim)
                yield {
                    "id": np.array(batch.column("id").to_pylist(), dtype=object),
                    "embedding": vectors.astype(np.float32),
                    "has_embedding": batch.column("has_embedding").to_numpy(zero_copy_only=False).astype(np.int64),
                }

    spec = {
        "id": tf.TensorSpec([None], tf.string),
        "embedding": tf.TensorSpec([None, dim], tf.float32),
        "has_embedding": tf.TensorSpec([None], tf.int64),
    }
    return tf.data.Dataset.from_generator(batches, output_signature=spec)


def read_feature_table(
    export_root: str | Path, name: str, fmt: str = "tfrecord", version: str = "latest", expect_dim: int | None = None
) -> FeatureTable:
    folder, manifest = open_export(export_root, version)
    files = table_files(folder, manifest, name, {"tfrecord": ".tfrecord", "parquet": ".parquet"}[fmt])
    info = manifest["tables"][name]
    if expect_dim is not None and info["dim"] != expect_dim:
        raise DataError(f"{folder}: table {name!r} has dimension {info['dim']}, expected {expect_dim}")
    reader = tfrecord_dataset if fmt == "tfrecord" else parquet_dataset
    ids, vectors, flags = [], [], []
    for batch in reader(files, info["dim"]).as_numpy_iterator():
        ids.append(batch["id"])
        vectors.append(batch["embedding"])
        flags.append(batch["has_embedding"])
    id_array = np.concatenate(ids) if ids else np.array([], dtype=object)
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, info["dim"]), np.float32)
    check_rows(f"{folder}/{name} ({fmt})", [i.decode() for i in id_array], matrix, info["rows"])
    return FeatureTable(
        id_array,
        matrix,
        np.concatenate(flags).astype(np.float32) if flags else np.zeros(0, np.float32),
        np.asarray(info["fallback"], np.float32),
        manifest["version"],
    )


def item_tower(export_root: str | Path, version: str = "latest"):
    """The exported TensorFlow item tower, its files verified against the manifest: a function from raw
    CEG content embeddings [n, dim] to LEARN item embeddings, for items that are not in the table yet."""
    folder, manifest = open_export(export_root, version)
    verified_files(folder, manifest, "towers/item_tf/")
    serve = tf.saved_model.load(str(folder / "towers" / "item_tf")).signatures["serving_default"]

    def embed(content: np.ndarray) -> np.ndarray:
        (out,) = serve(content=tf.constant(np.asarray(content, np.float32))).values()
        return out.numpy()

    return embed


def embed_new_items(
    export_root: str | Path, items: pd.DataFrame, version: str = "latest", batch_size: int = 64
) -> np.ndarray:
    """LEARN item embeddings [n, dim] float32 of `items` (canonical items schema: `item_id`, `title`, and
    optionally `category`, `brand`, `price`, `keywords`, `attributes`), in their order, from their text alone:
    the export's sentence template, its tokenizer (`tokenizers`), its CEG model (ONNX Runtime) and its TF item
    tower. Items the export has never seen get the vectors the exported table would have given them."""
    folder, manifest = open_export(export_root, version)
    if f"towers/{MODEL}" not in manifest["files"]:
        raise DataError(
            f"{folder}: no content model in this export (towers/{MODEL} and its tokenizer); export "
            "with a content method and export.content_model: true"
        )
    for name in (MODEL, TOKENIZER, SETTINGS):  # only the files this path reads (the model is 500 MB)
        verified_files(folder, manifest, f"towers/{name}")
    rejects = RejectLog()
    where = "embed_new_items(items)"
    checked = validate_items(
        items.assign(_file=where, _row=np.arange(1, len(items) + 1)), where, ValidationRules(), rejects
    )
    if rejects.rows:
        first = rejects.rows[0]
        raise DataError(
            f"{where}: row {first['row']} field {first['column']!r}: {first['reason']}"
            + (f" ({len(rejects.rows) - 1} more)" if len(rejects.rows) > 1 else "")
        )
    template = from_mapping(TemplateConfig, manifest["metadata"]["template"], "template", f"{folder}/manifest.json")
    content = embed_text(folder / "towers", item_sentences(checked, template), batch_size)
    return item_tower(export_root, manifest["version"])(content).astype(np.float32)
