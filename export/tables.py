"""Versioned embedding feature tables: the hand-off from LEARN to an existing ranker.

An export is written into `<root>/.<version>.partial/`, verified, then renamed to `<root>/<version>/`;
only then is `<root>/LATEST` switched (an atomic file replace), so a reader never sees half an export.
Each table (`users`, `items`) is sharded into Parquet parts of `id` (string), `embedding` (fixed-size list
of float32) and `has_embedding` (bool: false rows carry the documented fallback, never a silent zero).
With `formats` including `tfrecord`, each table is also written as `tf.train.Example` records (`id` bytes,
`embedding` float list, `has_embedding` int64) under `tfrecord/<table>/`, mirroring the Parquet parts, by a
TensorFlow child process (`export.tfrecord`), so that the exporting process never holds torch and TensorFlow
at once. Each format has a tree of its own, so that a dataset reader (Spark, BigQuery, `pyarrow.dataset`)
pointed at `<table>/` finds only Parquet.
`manifest.json` holds the schema, dimension, row counts, the sha256 of every file and the caller's metadata
(checkpoint hash, content model, template, config). `read_table` refuses anything that does not verify.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from learnkit.core.children import child_beside
from learnkit.core.errors import DataError
from learnkit.core.fsutil import (
    PLAIN_NAME,
    is_plain_name,
    json_default,
    publish_folder,
    sha256_file,
    stable_hash,
    write_text,
)

MANIFEST = "manifest.json"
POINT_IN_TIME_COLUMNS = ("valid_from", "history_end")
TFRECORD_ROOT = "tfrecord"  # <export>/tfrecord/<table>/...: the TFRecord copy, beside the Parquet tree
ISO_BASIC = "%Y%m%dT%H%M%SZ"
MANIFEST_HASH = "manifest_sha256"  # of the manifest without this key: the reader checks it
LATEST = "LATEST"
FORMAT_VERSION = 2  # 2: point-in-time rows carry valid_from; as_of is the partition folder only


@dataclass
class EmbeddingTable:
    ids: list[str]
    embeddings: np.ndarray  # [rows, dim] float32
    has_embedding: np.ndarray  # [rows] bool
    # the vector of rows without an embedding, and of ids a reader does not find (None: zeros)
    fallback: np.ndarray | None = None
    # point-in-time tables, one row per id and refresh: `valid_from`, the time from which the row is the id's
    # vector; `history_end`, the time of the newest event it was built from (always before valid_from); and
    # `as_of`, its snapshot partition's time (a Hive folder `as_of=<label>`, never after valid_from: equal to it
    # for periodic snapshots, the start of the partition's period for refreshes after every event)
    valid_from: np.ndarray | None = None  # [rows] int64
    history_end: np.ndarray | None = None  # [rows] int64
    as_of: np.ndarray | None = None  # [rows] int64

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or len(self.ids) != self.embeddings.shape[0] != len(self.has_embedding):
            raise ValueError("ids, embeddings and has_embedding must have the same number of rows")
        given = [x is not None for x in (self.valid_from, self.history_end, self.as_of)]
        if any(given) and not all(given):
            raise ValueError("a point-in-time table needs valid_from, history_end and as_of")

    @property
    def partitioned(self) -> bool:
        return self.valid_from is not None

    def fallback_vector(self) -> np.ndarray:
        dim = self.embeddings.shape[1]
        return np.zeros(dim, np.float32) if self.fallback is None else np.asarray(self.fallback, np.float32)


def _part(table: EmbeddingTable, rows: np.ndarray) -> pa.Table:
    block = np.ascontiguousarray(table.embeddings[rows], dtype=np.float32)
    # required (non-nullable) fields: no definition levels for a reader to decode; nothing here is ever null
    vector = pa.list_(pa.field("element", pa.float32(), nullable=False), block.shape[1])
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("embedding", vector, nullable=False),
        pa.field("has_embedding", pa.bool_(), nullable=False),
    ]
    columns = {
        "id": pa.array([table.ids[i] for i in rows], pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), type=vector),
        "has_embedding": pa.array(table.has_embedding[rows].astype(bool)),
    }
    if table.partitioned:
        # `as_of` lives in the folder name only: a file column of that name would clash with the Hive
        # partition for every dataset reader
        assert table.valid_from is not None and table.history_end is not None
        fields += [pa.field(c, pa.int64(), nullable=False) for c in POINT_IN_TIME_COLUMNS]
        columns.update(
            valid_from=pa.array(table.valid_from[rows], pa.int64()),
            history_end=pa.array(table.history_end[rows], pa.int64()),
        )
    return pa.table(columns, schema=pa.schema(fields))


def partition_label(as_of: int, time_is_ordinal: bool) -> str:
    """The Hive partition value of a snapshot: ISO basic UTC time, or the ordinal itself."""
    if time_is_ordinal:
        return str(int(as_of))
    return time.strftime(ISO_BASIC, time.gmtime(int(as_of)))


def partition_time(label: str, where: str) -> int:
    """`partition_label`'s inverse: the snapshot time of an `as_of=<label>` folder."""
    try:
        return int(label) if label.lstrip("-").isdigit() else calendar.timegm(time.strptime(label, ISO_BASIC))
    except ValueError as exc:
        raise DataError(f"{where}: partition as_of={label!r} is neither a time ({ISO_BASIC}) nor an ordinal") from exc


def _partitions(table: EmbeddingTable, rows_per_part: int, ordinal: bool) -> list[tuple[str, np.ndarray]]:
    """(folder under the table, row indices) of every part file: `as_of=<label>/` per snapshot."""
    groups = [("", np.arange(len(table.ids)))]
    if table.partitioned:
        assert table.as_of is not None
        groups = [
            (f"as_of={partition_label(v, ordinal)}/", np.flatnonzero(table.as_of == v)) for v in np.unique(table.as_of)
        ]
    return [
        (prefix, rows[start : start + rows_per_part])
        for prefix, rows in groups
        for start in range(0, max(len(rows), 1), rows_per_part)
    ]


def write_export(
    root: str | Path,
    tables: dict[str, EmbeddingTable],
    metadata: dict[str, Any],
    rows_per_part: int = 1_000_000,
    version: str | None = None,
    formats: tuple[str, ...] = ("parquet",),
    artefacts: Callable[[Path], dict[str, Any]] | None = None,
    ordinal_time: bool = False,
) -> Path:
    """Write `tables` (and, through `artefacts(staging_folder)`, any further files such as the towers,
    whose returned description goes into the manifest) as one verified version; returns its folder."""
    root = Path(root)
    version = version or _new_version()
    if not is_plain_name(version):
        raise DataError(f"export version {version!r} is not a plain name ({PLAIN_NAME.pattern})")
    final = root / version
    if final.exists():
        raise DataError(f"{final}: export version {version!r} exists already; versions are never overwritten")
    staging = root / f".{version}.{os.getpid()}.partial"  # private to this writer
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metadata": metadata,
        "tables": {},
        "files": {},
    }
    tfrecord_folders: list[tuple[Path, Path]] = []
    for name, table in tables.items():
        (staging / name).mkdir()
        parts: dict[str, int] = {}
        for prefix, rows in _partitions(table, rows_per_part, ordinal_time):
            number = parts[prefix] = parts.get(prefix, -1) + 1
            relative = f"{name}/{prefix}part-{number:05d}.parquet"
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            # plain pages: embeddings neither compress nor repeat, and decoding is what readers pay for
            pq.write_table(
                _part(table, rows), staging / relative, compression="none", use_dictionary=["id"], row_group_size=16_384
            )
        tfrecord_folders += [
            (staging / name / prefix, staging / TFRECORD_ROOT / name / prefix) for prefix in sorted(parts)
        ]
        manifest["tables"][name] = {
            "rows": len(table.ids),
            "dim": int(table.embeddings.shape[1]),
            "dtype": "float32",
            "rows_with_embedding": int(table.has_embedding.sum()),
            "columns": {
                "id": "string",
                "embedding": "fixed_size_list<float32>",
                "has_embedding": "bool",
                **(dict.fromkeys(POINT_IN_TIME_COLUMNS, "int64") if table.partitioned else {}),
            },
            "formats": sorted(set(formats)),
            "fallback": table.fallback_vector().tolist(),
        }
        if table.partitioned:
            manifest["tables"][name]["partitions"] = sorted(p.rstrip("/") for p in parts)
    with _tfrecords_beside(tfrecord_folders if "tfrecord" in formats else []) as tfrecords_written:
        if artefacts is not None:  # while the TFRecord child converts
            manifest["artefacts"] = artefacts(staging)
        tfrecords_written()
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        manifest["files"][path.relative_to(staging).as_posix()] = sha256_file(path)
    manifest = json.loads(json.dumps(manifest, default=json_default))
    manifest[MANIFEST_HASH] = _manifest_hash(manifest)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    try:
        for name in tables:  # verify before anything can point at it
            read_table(staging, name, _staging=True)
    except DataError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        publish_folder(staging, final, replace=False)  # never merged into another writer's version
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{final}: export version {version!r} was taken by another writer") from exc
    write_text(root / LATEST, version + "\n")
    return final


def _new_version() -> str:
    """UTC time to the microsecond: unique within one second, and sorted as it was written."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _manifest_hash(manifest: dict[str, Any]) -> str:
    return stable_hash({k: v for k, v in manifest.items() if k != MANIFEST_HASH})


@contextlib.contextmanager
def _tfrecords_beside(folders: list[tuple[Path, Path]]) -> Iterator[Callable[[], object]]:
    """Every folder's Parquet parts as TFRecord, in one TensorFlow child process (TensorFlow stays out of
    this one, and one process start serves every partition) that runs beside the block; the block calls the
    yielded function to wait for it."""
    if not folders:
        yield lambda: None
        return
    pairs = [str(p) for pair in folders for p in pair]
    failure = f"TFRecord conversion failed for {folders[0][0].parent}"
    with child_beside([sys.executable, "-m", "export.tfrecord", *pairs], failure) as written:
        yield written


def table_files(folder: Path, manifest: dict[str, Any], name: str, suffix: str) -> list[Path]:
    """The verified files of one table in one format: each listed, present and matching its sha256."""
    if name not in manifest["tables"]:
        raise DataError(f"{folder}: no table {name!r} (has {', '.join(manifest['tables'])})")
    return verified_files(folder, manifest, f"{TFRECORD_ROOT}/{name}/" if suffix == ".tfrecord" else f"{name}/", suffix)


def verified_files(folder: Path, manifest: dict[str, Any], prefix: str, suffix: str = "") -> list[Path]:
    """Every file the manifest lists under `prefix` (ending in `suffix`), each present and matching its
    sha256; refuses an empty selection."""
    listed = sorted(f for f in manifest["files"] if f.startswith(prefix) and f.endswith(suffix))
    if not listed:
        raise DataError(f"{folder}: no {prefix}*{suffix} files in {MANIFEST}")
    paths = []
    for relative in listed:
        path = folder / relative
        if not path.is_file():
            raise DataError(f"{path}: missing (listed in {MANIFEST})")
        if sha256_file(path) != manifest["files"][relative]:
            raise DataError(f"{path}: sha256 does not match {MANIFEST} (corrupt or changed after export)")
        paths.append(path)
    return paths


def open_export(
    root: str | Path, version: str = "latest", expect_version: str | None = None, _staging: bool = False
) -> tuple[Path, dict[str, Any]]:
    """(folder, manifest) of one finished export, checked against the expected version."""
    folder = Path(root) if _staging else resolve_version(root, version)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{folder / MANIFEST}: not valid JSON ({exc.msg}); the export is corrupt") from exc
    if not isinstance(manifest, dict) or manifest.get(MANIFEST_HASH) != _manifest_hash(manifest):
        raise DataError(
            f"{folder / MANIFEST}: its own hash does not match its content (edited or corrupt); export again"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{folder}: export format {manifest.get('format_version')!r}, this reader knows {FORMAT_VERSION}"
        )
    if expect_version is not None and manifest["version"] != expect_version:
        raise DataError(f"{folder}: export version {manifest['version']!r}, expected {expect_version!r}")
    return folder, manifest


def check_rows(where: str, ids: list[str], matrix: np.ndarray, rows: int) -> None:
    """Row count, finite values and unique ids: the checks every reader of a table makes."""
    if len(ids) != rows:
        raise DataError(f"{where}: {len(ids)} rows, manifest says {rows}")
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} row(s) with NaN or infinite values "
            f"(first id {ids[int(np.flatnonzero(bad)[0])]!r})"
        )
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DataError(f"{where}: duplicate id {duplicate!r}")


def resolve_version(root: str | Path, version: str = "latest") -> Path:
    root = Path(root)
    if version == "latest":
        pointer = root / LATEST
        if not pointer.is_file():
            raise DataError(f"{root}: no {LATEST} pointer: no export has finished here")
        version = pointer.read_text().strip()
        if not is_plain_name(version):
            raise DataError(f"{pointer}: holds {version[:80]!r}, not a plain version name inside {root}")
    elif not is_plain_name(version):
        raise DataError(f"export version {version[:80]!r} is not a plain name inside {root}")
    folder = root / version
    if not (folder / MANIFEST).is_file():
        raise DataError(f"{folder}: no {MANIFEST}: not a finished export")
    return folder


def read_table(
    root: str | Path,
    name: str,
    version: str = "latest",
    expect_dim: int | None = None,
    expect_version: str | None = None,
    _staging: bool = False,
) -> tuple[EmbeddingTable, dict[str, Any]]:
    """Read and verify one table's Parquet copy; raises `DataError` naming the file and the problem."""
    folder, manifest = open_export(root, version, expect_version, _staging)
    paths = table_files(folder, manifest, name, ".parquet")
    info = manifest["tables"][name]
    if expect_dim is not None and info["dim"] != expect_dim:
        raise DataError(f"{folder}: table {name!r} has dimension {info['dim']}, expected {expect_dim}")
    parts = [pq.read_table(p) for p in paths]
    table = pa.concat_tables(parts)
    ids = table.column("id").to_pylist()
    column = table.column("embedding").combine_chunks()
    if column.type.list_size != info["dim"]:
        raise DataError(f"{folder}/{name}: embedding width {column.type.list_size} != manifest dim {info['dim']}")
    matrix = column.values.to_numpy(zero_copy_only=False).reshape(-1, info["dim"]).astype(np.float32, copy=False)
    flags = table.column("has_embedding").to_numpy(zero_copy_only=False).astype(bool)
    fallback = np.asarray(info["fallback"], np.float32)
    if "partitions" not in info:
        check_rows(f"{folder}/{name}", ids, matrix, info["rows"])
        return EmbeddingTable(ids, matrix, flags, fallback), manifest
    valid_from = table.column("valid_from").to_numpy()
    check_rows(f"{folder}/{name}", [f"{i}@{t}" for i, t in zip(ids, valid_from, strict=True)], matrix, info["rows"])
    history_end = table.column("history_end").to_numpy()
    as_of = np.concatenate(
        [
            np.full(len(part), partition_time(p.parent.name.partition("as_of=")[2], str(p)), np.int64)
            for p, part in zip(paths, parts, strict=True)
        ]
    )
    if (history_end >= valid_from).any():
        raise DataError(f"{folder}/{name}: a snapshot row holds history from at or after its valid_from")
    if (valid_from < as_of).any():
        raise DataError(f"{folder}/{name}: a snapshot row is valid before its partition's as_of")
    return EmbeddingTable(ids, matrix, flags, fallback, valid_from, history_end, as_of), manifest
