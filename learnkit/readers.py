"""Low-level readers that keep every record's origin (file, 1-based row) for error messages.

Text is decoded as UTF-8 with `surrogateescape`, so undecodable bytes reach validation (which rejects
that row by name) instead of aborting the whole file. Whole-file problems (missing, empty, truncated
compressed stream, unreadable Parquet) raise `DataError` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from learnkit.errors import DataError
from learnkit.schema import RejectLog

csv.field_size_limit(1 << 27)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


def open_text(path: str | Path, encoding: str = "utf-8") -> io.TextIOBase:
    """Open a text file, gunzipping `.gz` transparently."""
    path = Path(path)
    _check_file(path)
    errors = "surrogateescape" if encoding.lower().replace("-", "") == "utf8" else "strict"
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors=errors, newline="")
    return open(path, encoding=encoding, errors=errors, newline="")


def _iter_lines(path: Path, encoding: str) -> Iterator[str]:
    try:
        with open_text(path, encoding) as fh:
            yield from fh
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: truncated or corrupt compressed file ({exc})") from exc


def read_delimited(path: str | Path, table: str, log: RejectLog, *, sep: str = "\t",
                   names: list[str] | None = None, encoding: str = "utf-8",
                   strip_types: bool = False) -> pd.DataFrame:
    """Read a delimited text file into a frame of strings plus `_file` and `_row`.

    With `names=None` the first line is the header (`strip_types` drops RecBole's `:type` suffixes).
    A row with the wrong number of fields (a truncated last line, say) is logged and skipped.
    """
    path = Path(path)
    reader = csv.reader(_iter_lines(path, encoding), delimiter=sep,
                        quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE)
    try:
        if names is None:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: file is empty")
            names = [h.split(":", 1)[0] if strip_types else h for h in header]
            first_row = 1
        else:
            first_row = 1
        records: list[list[str]] = []
        rows: list[int] = []
        for row_no, record in enumerate(reader, start=first_row):
            if not record:  # blank line
                continue
            if len(record) != len(names):
                log.add(table, str(path), row_no, "*",
                        f"row has {len(record)} fields, expected {len(names)} (truncated or malformed line)",
                        sep.join(record))
                continue
            records.append(record)
            rows.append(row_no)
    except csv.Error as exc:
        raise DataError(f"{path}: unreadable at line {reader.line_num}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc})") from exc
    if not records and not log.count(table):
        raise DataError(f"{path}: has a header but no rows")
    frame = pd.DataFrame(records, columns=names, dtype=object)
    frame["_file"] = str(path)
    frame["_row"] = rows
    return frame


def read_json_lines(path: str | Path, table: str, log: RejectLog) -> list[tuple[int, dict[str, Any]]]:
    """One JSON object per line; a line that does not parse (a truncated tail, say) is logged."""
    path = Path(path)
    out: list[tuple[int, dict[str, Any]]] = []
    for row_no, line in enumerate(_iter_lines(path, "utf-8"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            log.add(table, str(path), row_no, "*", f"invalid JSON ({exc.msg} at char {exc.pos})", line[:80])
            continue
        if not isinstance(record, dict):
            log.add(table, str(path), row_no, "*", "a JSON object is expected on each line", line[:80])
            continue
        out.append((row_no, record))
    if not out and not log.count(table):
        raise DataError(f"{path}: no records")
    return out


def read_parquet_rows(path: str | Path) -> pd.DataFrame:
    """Read Parquet keeping null (None) apart from NaN, plus `_file` and `_row`."""
    path = Path(path)
    _check_file(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc
    if table.num_rows == 0:
        raise DataError(f"{path}: has a schema but no rows")
    frame = pd.DataFrame({name: pd.Series(table.column(name).to_pylist(), dtype=object)
                          for name in table.column_names})
    frame["_file"] = str(path)
    frame["_row"] = range(1, len(frame) + 1)
    return frame
