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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from learnkit.core.errors import DataError
from learnkit.data.schema import RejectLog

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


def _check_header(path: Path, names: list[str]) -> None:
    blank = [k + 1 for k, name in enumerate(names) if not name.strip()]
    if blank:
        raise DataError(f"{path}: malformed header: column {blank[0]} has no name")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: malformed header: column {name!r} appears twice")
        seen.add(name)


class _Lines:
    """The file's lines, remembering whether the last one ended with a line break."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path, self.encoding, self.last_complete = path, encoding, True

    def __iter__(self) -> Iterator[str]:
        for line in _iter_lines(self.path, self.encoding):
            self.last_complete = line.endswith(("\n", "\r"))
            yield line


def read_delimited(
    path: str | Path,
    table: str,
    log: RejectLog,
    *,
    sep: str = "\t",
    names: list[str] | None = None,
    encoding: str = "utf-8",
    strip_types: bool = False,
) -> pd.DataFrame:
    """Read a delimited text file into a frame of strings plus `_file` and `_row`.

    With `names=None` the first line is the header (`strip_types` drops RecBole's `:type` suffixes).
    Every record is either in the frame or in `log`:
    - a row with the wrong number of fields is logged and skipped;
    - a last line without a line break is logged and skipped (a file cut short mid-field would otherwise
      turn a price of 49.99 into 4);
    - a quote that never closes (it would swallow every later record) stops the read, naming its line.
    """
    path = Path(path)
    lines = _Lines(path, encoding)
    quoted = sep == ","
    reader = csv.reader(lines, delimiter=sep, strict=quoted, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    record_start = 1
    try:
        if names is None:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: file is empty")
            names = [h.split(":", 1)[0] if strip_types else h for h in header]
            _check_header(path, names)
            record_start = reader.line_num + 1
        records: list[list[str]] = []
        rows: list[int] = []
        row_no = 0
        for record in reader:
            start, record_start = record_start, reader.line_num + 1
            if not record:  # blank line
                continue
            row_no += 1
            if len(record) != len(names):
                log.add(
                    table,
                    str(path),
                    row_no,
                    "*",
                    f"row has {len(record)} fields, expected {len(names)} (line {start}; truncated or malformed)",
                    sep.join(record),
                )
                continue
            records.append(record)
            rows.append(row_no)
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DataError(
                f"{path}: the quote opened in the record at line {record_start} is never closed "
                "(every later line would be swallowed into one field); fix the quoting"
            ) from exc
        raise DataError(f"{path}: unreadable at line {reader.line_num}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc})") from exc
    if not lines.last_complete and rows and rows[-1] == row_no:
        log.add(
            table,
            str(path),
            row_no,
            "*",
            "last line has no line break: the file looks cut short (end a complete file with a newline)",
            sep.join(records.pop()),
        )
        rows.pop()
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
    frame = pd.DataFrame({name: pd.Series(table.column(name).to_pylist(), dtype=object) for name in table.column_names})
    frame["_file"] = str(path)
    frame["_row"] = range(1, len(frame) + 1)
    return frame
