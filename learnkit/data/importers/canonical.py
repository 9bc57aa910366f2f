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


def locate_tables(path: Path) -> dict[str, Path]:
    """The canonical tables' files in a folder: items and events (required) and users (when present)."""
    found = {stem: _locate(path, stem, stem != "users") for stem in ("items", "events", "users")}
    return {stem: file for stem, file in found.items() if file is not None}


def read_table(file: Path, table: str, log: RejectLog):
    """One table's file into a frame of raw values with `_file` and `_row`; rows that do not parse go to `log`."""
    if file.suffix == ".parquet":
        return read_parquet_rows(file)
    return read_delimited(file, table, log, sep=",")


def read_canonical(path: Path) -> RawDataset:
    """The tables as they are; `rows_read` counts every record of each file, so that validation can prove
    that each one was kept or rejected."""
    log = RejectLog()
    files = locate_tables(path)
    frames = {table: read_table(file, table, log) for table, file in files.items()}
    return RawDataset(
        items=frames["items"],
        events=frames["events"],
        users=frames.get("users"),
        items_file=str(files["items"]),
        events_file=str(files["events"]),
        users_file=str(files.get("users", "")),
        log=log,
        rows_read={table: len(frame) + log.rows_of(table) for table, frame in frames.items()},
    )
