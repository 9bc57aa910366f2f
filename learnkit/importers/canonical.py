"""The canonical tables themselves, from Parquet or CSV, so that any user's data can come in."""

from __future__ import annotations

from pathlib import Path

from learnkit.errors import DataError
from learnkit.importers import RawDataset
from learnkit.readers import read_delimited, read_parquet_rows
from learnkit.schema import RejectLog


def _locate(path: Path, stem: str, required: bool) -> Path | None:
    for suffix in (".parquet", ".csv", ".csv.gz"):
        candidate = path / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    if required:
        raise DataError(f"{path}: no {stem}.parquet or {stem}.csv found")
    return None


def _read(file: Path, table: str, log: RejectLog):
    if file.suffix == ".parquet":
        return read_parquet_rows(file)
    return read_delimited(file, table, log, sep=",")


def read_canonical(path: Path) -> RawDataset:
    log = RejectLog()
    items_f = _locate(path, "items", True)
    events_f = _locate(path, "events", True)
    users_f = _locate(path, "users", False)
    assert items_f is not None and events_f is not None
    return RawDataset(items=_read(items_f, "items", log), events=_read(events_f, "events", log),
                      users=_read(users_f, "users", log) if users_f else None,
                      items_file=str(items_f), events_file=str(events_f),
                      users_file=str(users_f or ""), log=log)
