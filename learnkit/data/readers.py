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
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from learnkit.core.batches import parquet_batches
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
    utf8 = encoding.lower().replace("-", "") in ("utf8", "utf8sig")
    errors = "surrogateescape" if utf8 else "strict"
    encoding = "utf-8-sig" if utf8 else encoding  # a byte-order mark is not part of the first column's name
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


# A quoted field may hold line breaks, but one that runs on over this many lines is a quote left open.
MAX_LINES_PER_RECORD = 1000


def _parse_line(text: str, sep: str, quoted: bool) -> list[str] | str:
    """The fields of one text (a line, or lines joined), or why it does not parse: "open" when a quote is
    still open at its end."""
    if not quoted or '"' not in text:
        stripped = text.rstrip("\r\n")
        return stripped.split(sep) if stripped else []
    try:
        return next(csv.reader([text], delimiter=sep, strict=True), [])
    except csv.Error as exc:
        return "open" if "unexpected end of data" in str(exc) else f"malformed quoting ({exc})"


class _Records:
    """The records of a delimited file, each with its first line number, from lines read one at a time.

    A record is one line, except that a quoted field may hold line breaks. Such a field is taken as one value
    only while none of the lines it would swallow reads as a complete row on its own: an unclosed quote that
    an inch mark (`55"`) three lines later appears to close would otherwise turn four rows into one. Then the
    line that opened the quote is rejected and the lines after it are read again as rows of their own, so
    that every line is kept or rejected by number."""

    def __init__(self, path: Path, encoding: str, sep: str, quoted: bool) -> None:
        self.path, self.encoding, self.sep, self.quoted = path, encoding, sep, quoted
        self.pending: list[tuple[int, str]] = []  # lines to read again, the next one last
        self.width = 0  # fields of a complete row, set once the header is known

    def _next_line(self, file: Iterator[tuple[int, str]]) -> tuple[int, str] | None:
        return self.pending.pop() if self.pending else next(file, None)

    def __iter__(self) -> Iterator[tuple[int, list[str] | str, str]]:
        """(first line number, the fields or why the line is rejected, the text read)."""
        file = enumerate(_iter_lines(self.path, self.encoding), start=1)
        while (line := self._next_line(file)) is not None:
            number, text = line
            parsed = _parse_line(text, self.sep, self.quoted)
            yield self._multiline(number, text, file) if parsed == "open" else (number, parsed, text)

    def _multiline(self, number: int, text: str, file: Iterator[tuple[int, str]]) -> tuple[int, list[str] | str, str]:
        taken: list[tuple[int, str]] = []
        problem = "it is never closed: every later line would be swallowed"
        while (more := self._next_line(file)) is not None:
            taken.append(more)
            if self._complete_row(more[1]):  # refused whether or not the quote closes later: stop reading
                problem = f"line {more[0]} would be swallowed though it reads as a row of its own"
                break
            parsed = _parse_line(text + "".join(t for _, t in taken), self.sep, self.quoted)
            if parsed == "open":
                if len(taken) < MAX_LINES_PER_RECORD:
                    continue
                problem = f"it is still open {MAX_LINES_PER_RECORD} lines later"
            elif isinstance(parsed, str):
                problem = f"the record it starts has {parsed}"
            else:
                return number, parsed, text + "".join(t for _, t in taken)
            break
        self.pending.extend(reversed(taken))  # read the lines it took again, as rows of their own
        return number, f"a quote opened on line {number} is not closed on that line: {problem}", text

    def _complete_row(self, text: str) -> bool:
        parsed = _parse_line(text, self.sep, self.quoted)
        return not isinstance(parsed, str) and len(parsed) == self.width and self.width > 1


def _header(path: Path, stream: Iterator[tuple[int, list[str] | str, str]], strip_types: bool) -> list[str]:
    for line, fields, _ in stream:
        if isinstance(fields, str):
            raise DataError(f"{path}: the header (line {line}) does not parse: {fields}")
        if fields:
            names = [h.split(":", 1)[0] if strip_types else h for h in fields]
            _check_header(path, names)
            return names
    raise DataError(f"{path}: file is empty")


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
    """Read a delimited text file into a frame of strings plus `_file` and `_row` (all of
    `iter_delimited`'s chunks, in one frame)."""
    chunks = list(iter_delimited(path, table, log, sep=sep, names=names, encoding=encoding, strip_types=strip_types))
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def iter_delimited(
    path: str | Path,
    table: str,
    log: RejectLog,
    *,
    sep: str = "\t",
    names: list[str] | None = None,
    encoding: str = "utf-8",
    strip_types: bool = False,
    chunk_rows: int | None = None,
) -> Iterator[pd.DataFrame]:
    """A delimited text file as frames of strings plus `_file` and `_row`, `chunk_rows` kept rows at a time
    (None: one frame), so that memory does not grow with the file.

    With `names=None` the first line is the header (`strip_types` drops RecBole's `:type` suffixes). A UTF-8
    byte-order mark before it is dropped. Every record is either in a frame or in `log`:
    - a row with the wrong number of fields is logged and skipped;
    - a last line without a line break is logged and skipped (a file cut short mid-field would otherwise
      turn a price of 49.99 into 4); the last kept row is held back until the next one comes, so that it
      never leaves in a frame before that is known;
    - with `sep=","` fields may be quoted; a quote that is not closed on its line is logged by its line unless
      it closes on a later line without swallowing a complete row (see `_Records`).
    A file with a header and no rows is an error once it is read to its end; at least one frame comes
    before that, or instead of it when every row was rejected (an empty frame with the file's columns).
    """
    path = Path(path)
    records = _Records(path, encoding, sep, quoted=sep == ",")
    rows: list[int] = []
    kept: list[list[str]] = []
    row_no, last_text, yielded, any_kept = 0, "", False, False
    try:
        stream = iter(records)
        if names is None:
            names = _header(path, stream, strip_types)
        records.width = len(names)
        for line, fields, text in stream:
            if fields == []:  # blank line
                continue
            row_no += 1
            last_text = text
            if isinstance(fields, str):
                log.add(table, str(path), row_no, "*", fields, text.rstrip("\r\n"))
            elif len(fields) != len(names):
                log.add(
                    table,
                    str(path),
                    row_no,
                    "*",
                    f"row has {len(fields)} fields, expected {len(names)} (line {line}; truncated or malformed)",
                    sep.join(fields),
                )
            else:
                kept.append(fields)
                rows.append(row_no)
                if chunk_rows is not None and len(kept) > chunk_rows:  # the newest row stays: it may be the last
                    yield _string_frame(kept[:-1], rows[:-1], names, path)
                    kept, rows, yielded, any_kept = kept[-1:], rows[-1:], True, True
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc})") from exc
    if last_text and not last_text.endswith(("\n", "\r")) and rows and rows[-1] == row_no:
        log.add(
            table,
            str(path),
            row_no,
            "*",
            "last line has no line break: the file looks cut short (end a complete file with a newline)",
            sep.join(kept.pop()),
        )
        rows.pop()
    any_kept = any_kept or bool(kept)
    if not any_kept and not log.count(table):
        raise DataError(f"{path}: has a header but no rows")
    if kept or not yielded:
        yield _string_frame(kept, rows, names, path)


def _string_frame(kept: list[list[str]], rows: list[int], names: list[str], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame(kept, columns=names, dtype=object)
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


def parquet_parts(path: str | Path) -> list[Path]:
    """A Parquet table's files: the file itself, or a folder's part files as Spark and Hive write them
    (`events.parquet/part-*.parquet`, maybe in `key=value` folders), in path order. Files and folders whose
    name starts with `_` or `.` (`_SUCCESS`, `.part-0.crc`) are not parts."""
    path = Path(path)
    if not path.is_dir():
        _check_file(path)
        return [path]
    parts = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(name.startswith(("_", ".")) for name in p.relative_to(path).parts)
    )
    if not parts:
        raise DataError(f"{path}: a folder with no Parquet part files")
    return parts


def hive_values(path: Path, root: Path) -> dict[str, str]:
    """The `key=value` folder names between `root` and the part file `path` (Hive partitioning)."""
    values = {}
    for name in path.relative_to(root).parts[:-1]:
        key, sep, value = name.partition("=")
        if sep and key:
            values[key] = unquote(value)
    return values


def read_parquet_rows(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file or a folder of part files into one frame (`iter_parquet_rows`' frames)."""
    frames = list(iter_parquet_rows(path))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def iter_parquet_rows(path: str | Path, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A Parquet file or a folder of part files as frames of at most `chunk_rows` rows (None: one per part),
    keeping null (None) apart from NaN, plus `_file` (each row's part file) and `_row` (its row in that file).
    A Hive partition folder's value becomes a text column. A table with no rows is an error, after its
    (empty) frames."""
    path = Path(path)
    columns: list[str] | None = None
    rows_seen = 0
    for part in parquet_parts(path):
        try:
            file = pq.ParquetFile(part)
            names = [*file.schema_arrow.names]
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{part}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc
        partition = hive_values(part, path) if part != path else {}
        clash = sorted(set(partition) & set(names))
        if clash:
            raise DataError(f"{part}: column {clash[0]!r} is both in the file and a partition folder's name")
        if columns is None:
            columns = [*names, *partition]
        elif sorted([*names, *partition]) != sorted(columns):
            raise DataError(
                f"{part}: its columns ({', '.join([*names, *partition])}) differ from the first part's "
                f"({', '.join(columns)})"
            )
        first_row = 1
        for batch in _batches(file, part, chunk_rows):
            frame = pd.DataFrame({name: pd.Series(batch.column(name).to_pylist(), dtype=object) for name in names})
            for key, value in partition.items():
                frame[key] = pd.Series([value] * len(frame), dtype=object)
            frame["_file"] = str(part)
            frame["_row"] = range(first_row, first_row + len(frame))
            first_row += len(frame)
            rows_seen += len(frame)
            yield frame
    if not rows_seen:
        raise DataError(f"{path}: has a schema but no rows")


def _batches(file: pq.ParquetFile, part: Path, chunk_rows: int | None) -> Iterator[pa.Table | pa.RecordBatch]:
    """A part's rows, `chunk_rows` at a time (None: the whole part), and at least one (maybe empty) batch."""
    try:
        if chunk_rows is None:
            yield file.read()
            return
        empty = True
        for batch in parquet_batches(file, chunk_rows):
            empty = False
            yield batch
        if empty:
            yield file.schema_arrow.empty_table()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{part}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc
