"""The canonical tables themselves, from Parquet or CSV, so that any user's data can come in."""

from __future__ import annotations

from pathlib import Path

from learnkit.core.errors import DataError
from learnkit.data.importers import RawDataset
from learnkit.data.readers import read_delimited, read_parquet_rows
from learnkit.data.schema import RejectLog


def _locate(path: Path, stem: str, required: bool) -> Path | None:
    found = [
        path / f"{stem}{suffix}" for suffix in (".parquet", ".csv", ".csv.gz") if (path / f"{stem}{suffix}").exists()
    ]
    if len(found) > 1:
        raise DataError(
            f"{path}: {' and '.join(p.name for p in found)} are both here and either could be the "
            f"{stem} table; keep one"
        )
    if found:
        return found[0]
    if required:
        raise DataError(f"{path}: no {stem}.parquet or {stem}.csv found")
    return None


def _read(file: Path, table: str, log: RejectLog):
    if file.suffix == ".parquet":
        return read_parquet_rows(file)
    return read_delimited(file, table, log, sep=",")


def read_canonical(path: Path) -> RawDataset:
    """The tables as they are; `rows_read` counts every record of each file, so that validation can prove
    that each one was kept or rejected."""
    log = RejectLog()
    items_f = _locate(path, "items", True)
    events_f = _locate(path, "events", True)
    users_f = _locate(path, "users", False)
    assert items_f is not None and events_f is not None
    frames = {
        table: _read(file, table, log)
        for table, file in (("items", items_f), ("events", events_f), ("users", users_f))
        if file is not None
    }
    return RawDataset(
        items=frames["items"],
        events=frames["events"],
        users=frames.get("users"),
        items_file=str(items_f),
        events_file=str(events_f),
        users_file=str(users_f or ""),
        log=log,
        rows_read={table: len(frame) + log.rows_of(table) for table, frame in frames.items()},
    )
