"""The canonical events, imported a chunk at a time into a folder of one Parquet part per user bucket.

The in-memory import (`learnkit.data.importers.validate`) holds every event as Python objects, about 0.6 KB
each, so a 24 GB machine stops near 30M events. This import holds one chunk at a time:
1. the strict readers (`iter_delimited`, `iter_parquet_rows`) hand over `chunk_rows` rows at a time. Each
   chunk is validated by the same rules (`validate_events`), and its rows, tagged with their input position,
   are appended to their user bucket's staging file (one open Arrow stream per bucket, a batch per chunk);
2. each bucket's staging file is read back alone into DuckDB. An event equal to an earlier one in user, item, time
   and event is rejected naming that row's number, as the in-memory import rejects it, and the rest become
   the bucket's part, in input order.

Every input row is kept or rejected with a reason (`validation_report` checks the count), and the output
folder appears by one rename when everything is written: a failed import leaves no folder behind. The folder
says how it is bucketed in `_buckets.json`, which readers of part folders skip (`parquet_parts`), so that a
per-user step can read one bucket's part instead of every event.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from learnkit.core.errors import DataError
from learnkit.core.fsutil import publish_folder, read_json, write_json
from learnkit.core.progress import progress_bar
from learnkit.core.sql import EngineConfig, bucket_number, connect
from learnkit.data.importers import RawDataset, rules_for, validation_report
from learnkit.data.importers.canonical import locate_tables, read_table
from learnkit.data.readers import iter_delimited, iter_parquet_rows
from learnkit.data.schema import ItemLookup, RejectLog, ValidationRules, validate_events, validate_items, validate_users

MANIFEST = "_buckets.json"
DUPLICATE_KEY = ("user_id", "item_id", "ts", "event")


@dataclass
class StreamedDataset:
    """A canonical dataset whose events are a part folder (`events`), one part per user bucket."""

    items: pd.DataFrame
    users: pd.DataFrame | None
    events: Path
    buckets: int
    rejected: Path  # the rejected rows, as `rejected.parquet`
    report: dict[str, Any]


def import_canonical_streamed(
    folder: Path,
    rules: ValidationRules,
    events_out: Path,
    rejected_out: Path,
    engine: EngineConfig | None = None,
    chunk_rows: int = 200_000,
) -> StreamedDataset:
    """Import a canonical dataset folder (`learnkit.data.importers.canonical`), its events streamed into
    `events_out` as `engine.buckets` parts and its rejected rows into `rejected_out`. Items and users are read
    whole: every event is checked against the items. When `rules.on_error == 'fail'`, raises `DataError` at
    the first rejection: the items' and users', before any event is read, or the first chunk of events that
    has one (the duplicates, found per bucket once every chunk is read, last). A failed import leaves no
    output. Under `drop`, the rejected rows go to disk after each table, chunk and bucket (`RejectLog.spill`),
    so that a log with many of them does not grow the process."""
    engine = engine or EngineConfig()
    staging = events_out.parent / f".{events_out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log = RejectLog()

    def settle(scope: str = "") -> None:
        """After a table, a chunk or a bucket: under `fail`, stop at its rejections; under `drop`, spill them."""
        if rules.on_error == "fail":
            log.raise_if_any("fail", scope=scope)
        log.spill(staging / "rejected")

    try:
        found = locate_tables(folder)
        raw = RawDataset(
            items=read_table(found["items"], "items", log),
            events=pd.DataFrame(),
            users=read_table(found["users"], "users", log) if "users" in found else None,
            items_file=str(found["items"]),
            events_file=str(found["events"]),
            users_file=str(found.get("users", "")),
            log=log,
        )
        raw.rows_read = {"items": len(raw.items) + log.rows_of("items")}
        if raw.users is not None:
            raw.rows_read["users"] = len(raw.users) + log.rows_of("users")
        rules = rules_for(raw, rules)
        items = validate_items(raw.items, raw.items_file, rules, log)
        users = validate_users(raw.users, raw.users_file, log) if raw.users is not None else None
        raw.items = raw.users = None  # type: ignore[assignment]  # counted: only the validated tables are needed
        settle()  # before the events: under `fail`, hours of them would be read for nothing
        read, staged = _stage_chunks(
            found["events"], ItemLookup.of(items), rules, log, settle, staging / "chunks", engine, chunk_rows
        )
        raw.rows_read["events"] = read
        kept = _write_buckets(staged, log, settle, staging / "events", engine)
        if not kept:
            raise DataError(f"{found['events']}: no valid events left after validation")
        report = validation_report(
            raw, rules, {"items": len(items), "events": kept, "users": len(users) if users is not None else None}
        )
        manifest = {"buckets": engine.buckets, "bucket": bucket_number("user_id", engine.buckets)}
        write_json(staging / "events" / MANIFEST, manifest)
        publish_folder(staging / "events", events_out)
        log.write(rejected_out, engine)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return StreamedDataset(items, users, events_out, engine.buckets, rejected_out, report)


def _chunks(file: Path, log: RejectLog, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if file.suffix == ".parquet":
        return iter_parquet_rows(file, chunk_rows)
    return iter_delimited(file, "events", log, sep=",", chunk_rows=chunk_rows)


def _stage_chunks(
    file: Path,
    items: ItemLookup,
    rules: ValidationRules,
    log: RejectLog,
    settle: Callable[[str], None],
    staging: Path,
    engine: EngineConfig,
    chunk_rows: int,
) -> tuple[int, list[Path]]:
    """Validate the events a chunk at a time, each chunk's valid rows appended to its users' buckets' staging
    files (a batch per chunk), its rejections settled (`settle`); (rows read, each bucket's staging file).
    Duplicates are left for `_write_buckets`, which sees all of a bucket's rows."""
    staging.mkdir()
    reader_log = RejectLog()  # the rows the reader rejects: each is a row read that is in no chunk
    read = unreadable = 0

    def settle_read() -> None:
        nonlocal unreadable
        unreadable += reader_log.rows_of("events")
        log.rows.extend(reader_log.rows)
        reader_log.rows.clear()
        settle(f" in the first {read + unreadable:,} rows of {file}")

    with (
        progress_bar(desc="import events", unit="rows") as bar,
        connect(engine) as con,
        _BucketFiles(staging, engine.buckets, str(file)) as buckets,
    ):
        for chunk in _chunks(file, reader_log, chunk_rows):
            chunk["_seq"] = np.arange(read, read + len(chunk), dtype=np.int64)  # input order, across parts
            read += len(chunk)
            valid = validate_events(chunk, str(file), items, rules, log, duplicates="keep")
            settle_read()
            if len(valid):
                buckets.append(valid, con)
            bar.update(len(chunk))
    settle_read()  # a line cut short shows once the reader reaches the end
    return read + unreadable, buckets.paths


class _BucketFiles:
    """One open Arrow stream per user bucket, each chunk's rows of that bucket appended as a record batch: a
    bucket is then read back from its own file alone. A stream keeps no footer of its batches and no column
    encoders, so a few hundred open at once hold little memory, where as many open Parquet writers would each
    keep their buffers and every row group's metadata until closed."""

    def __init__(self, folder: Path, buckets: int, file: str) -> None:
        self.folder, self.buckets, self.file = folder, buckets, file
        self.writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self.sinks: list[pa.NativeFile] = []
        self.schema: pa.Schema | None = None

    def path(self, bucket: int) -> Path:
        return self.folder / f"bucket-{bucket:05d}.arrows"

    @property
    def paths(self) -> list[Path]:
        return [self.path(b) for b in sorted(self.writers)]

    def __enter__(self) -> _BucketFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        for writer in self.writers.values():
            writer.close()
        for sink in self.sinks:
            sink.close()

    def append(self, valid: pd.DataFrame, con: duckdb.DuckDBPyConnection) -> None:
        rows = f"rows {int(valid['_row'].iloc[0])}-{int(valid['_row'].iloc[-1])}"
        try:
            table = pa.Table.from_pandas(valid, preserve_index=False)
            if self.schema is None:  # a column with no value yet is text: later chunks may fill it
                fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
                self.schema = pa.schema(fields)
            table = table.select(self.schema.names).cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError) as exc:
            raise DataError(
                f"{self.file}: {rows}: a column's values do not fit the type the rows before gave it ({exc})"
            ) from exc
        con.register("chunk", table)
        number = np.asarray(
            con.sql(f"SELECT {bucket_number('user_id', self.buckets)} AS b FROM chunk").fetchnumpy()["b"], np.int32
        )
        con.unregister("chunk")
        order = np.argsort(number, kind="stable")
        table, number = table.take(pa.array(order)), number[order]
        edges = np.r_[0, np.flatnonzero(np.diff(number)) + 1, len(number)]
        for start, end in zip(edges[:-1], edges[1:], strict=True):
            bucket = int(number[start])
            if bucket not in self.writers:
                self.sinks.append(sink := pa.OSFile(str(self.path(bucket)), "wb"))
                self.writers[bucket] = pa.ipc.new_stream(sink, self.schema)
            self.writers[bucket].write_table(table.slice(int(start), int(end - start)))


def _write_buckets(
    staged: list[Path], log: RejectLog, settle: Callable[[str], None], out: Path, engine: EngineConfig
) -> int:
    """Each bucket's staged rows, duplicates rejected, as `out/part-NNNNN.parquet` in input order (a bucket
    without rows: an empty part); the rows kept."""
    out.mkdir()
    kept = 0
    if not staged:
        return kept
    key = ", ".join(DUPLICATE_KEY)
    for bucket in progress_bar(range(engine.buckets), desc="events by user bucket", unit="bucket"):
        path = staged[0].parent / f"bucket-{bucket:05d}.arrows"
        with pa.OSFile(str(path if path.is_file() else staged[0])) as source:
            rows = pa.ipc.open_stream(source).read_all()
        if not path.is_file():
            rows = rows.slice(0, 0)
        with connect(engine) as con:
            con.register("staged", rows)
            con.execute(
                f"""CREATE TEMP TABLE ranked AS SELECT *,
                    row_number() OVER (PARTITION BY {key} ORDER BY _seq) AS _nth,
                    first_value(_row) OVER (PARTITION BY {key} ORDER BY _seq) AS _first_row
                FROM staged"""
            )
            del rows
            con.unregister("staged")
            for row_file, row, item, first in con.sql(
                "SELECT _file, _row, item_id, _first_row FROM ranked WHERE _nth > 1 ORDER BY _seq"
            ).fetchall():
                log.add(
                    "events",
                    row_file,
                    row,
                    "item_id",
                    f"duplicate event: same user_id, item_id, ts and event as row {first}",
                    item,
                )
            part = con.sql("SELECT * FROM ranked WHERE _nth = 1 ORDER BY _seq").to_arrow_table()
        settle(f" (duplicates, in {bucket + 1} of {engine.buckets} user buckets)")
        part = part.drop_columns([c for c in part.column_names if c.startswith("_")])
        pq.write_table(part, out / f"part-{bucket:05d}.parquet")
        kept += len(part)
    return kept


def bucket_parts(events: Path) -> tuple[int, list[Path]]:
    """(buckets, the part of each bucket) of an events folder that `import_canonical_streamed` wrote."""
    manifest = events / MANIFEST
    if not manifest.is_file():
        raise DataError(f"{events}: not an events folder bucketed by user ({MANIFEST} is missing)")
    buckets = int(read_json(manifest)["buckets"])
    parts = [events / f"part-{b:05d}.parquet" for b in range(buckets)]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: a bucket's part is missing ({buckets} buckets in {manifest})")
    return buckets, parts
