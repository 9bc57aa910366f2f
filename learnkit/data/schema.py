"""The canonical data model (DESIGN.md) and its validation.

Importers hand over raw frames whose `_file` and `_row` columns say where every row came from (row =
1-based record number in that file). Validation never drops a row silently: each rejected row is
logged with file, row, column, reason and value; `on_error="fail"` raises on the first batch of them,
`on_error="drop"` keeps them for `rejected.parquet` and `validation.json`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from learnkit.core.errors import DataError
from learnkit.core.fsutil import atomic_path, write_parquet
from learnkit.core.sql import EngineConfig, connect, sql_path

# "Before" everywhere (splits, exported histories, A/B requests): per user by time, events in the same second by
# item id, so that no order depends on the order of the input rows
CHRONOLOGICAL = ["user_id", "ts", "item_id"]

OnError = Literal["fail", "drop"]
_TABLE_ORDER = {"items": 0, "events": 1, "users": 2}  # rejected rows are listed by table in this order

ITEM_TEXT_COLUMNS = ("title", "category", "brand", "keywords", "attributes")
ITEM_COLUMNS = ("item_id", "title", "category", "brand", "price", "keywords", "attributes")
EVENT_COLUMNS = ("user_id", "item_id", "ts", "event", "label", "value", "rating")
ORIGIN_COLUMNS = ("_file", "_row")

# Timestamps before 1990 or after 2100 are almost always a unit error (ms or us instead of seconds).
DEFAULT_MIN_TS = 631_152_000  # 1990-01-01
DEFAULT_MAX_TS = 4_102_444_800  # 2100-01-01
DEFAULT_MAX_PRICE = 1_000_000.0
DEFAULT_MAX_TEXT_CHARS = 20_000
# C0 control characters other than tab, line feed and carriage return, and DEL: never part of real text
CONTROL_CHARACTERS = frozenset(chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), 127])


@dataclass(frozen=True)
class ValidationRules:
    on_error: OnError = "fail"
    max_price: float = DEFAULT_MAX_PRICE
    min_ts: int = DEFAULT_MIN_TS
    max_ts: int = DEFAULT_MAX_TS
    # Ordinal time (position in a sequence, as in pre-split datasets without timestamps) skips the range check.
    ordinal_time: bool = False
    # Longer text cells are rejected, not cut: a runaway field is usually a broken quote upstream.
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS


@dataclass
class RejectLog:
    """Every rejected row, in the order found. A log that outgrows memory moves its rows to Parquet parts on
    disk (`spill`), keeping their counts; `write` sorts every row into `rejected.parquet` either way."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # logged since the last spill
    # the spilled rows' parts, each sorted as `frame` sorts, and their counts: ("count"|"rows"|"reason", key): n
    _parts: list[Path] = field(default_factory=list, init=False, repr=False)
    _spilled: Counter[tuple[str, str]] = field(default_factory=Counter, init=False, repr=False)

    def add(self, table: str, file: str, row: int, column: str, reason: str, value: Any = None) -> None:
        self.rows.append(
            {
                "table": table,
                "file": str(file),
                "row": int(row),
                "column": column,
                "reason": reason,
                "value": _short(value),
            }
        )

    def add_many(
        self, table: str, frame: pd.DataFrame, mask: np.ndarray, column: str, reasons: Any, values: Any = None
    ) -> None:
        """Log every row of `frame` where `mask` holds; `reasons`/`values` are scalars or arrays."""
        idx = np.flatnonzero(mask)
        if not len(idx):
            return
        files = frame["_file"].to_numpy()[idx]
        rows = frame["_row"].to_numpy()[idx]
        reasons_arr = np.asarray(reasons, dtype=object)
        values_arr = np.asarray(values, dtype=object) if values is not None else None
        for k, i in enumerate(idx):
            reason = reasons_arr[i] if reasons_arr.ndim else reasons
            value = (values_arr[i] if values_arr.ndim else values) if values_arr is not None else None
            self.add(table, files[k], rows[k], column, str(reason), value)

    def sorted_rows(self) -> list[dict[str, Any]]:
        """The rows not spilled, by table, file and row (a row's entries in the order logged)."""
        return sorted(self.rows, key=lambda r: (_TABLE_ORDER.get(r["table"], len(_TABLE_ORDER)), r["file"], r["row"]))

    def frame(self) -> pd.DataFrame:
        """The rows not spilled, sorted (`sorted_rows`), as `rejected.parquet` holds them."""
        columns = ["table", "file", "row", "column", "reason", "value"]
        df = pd.DataFrame(self.sorted_rows(), columns=columns)
        return df.astype({"table": str, "file": str, "row": "int64", "column": str, "reason": str, "value": str})

    def count(self, table: str | None = None) -> int:
        spilled = sum(n for (kind, key), n in self._spilled.items() if kind == "count" and table in (None, key))
        return spilled + sum(1 for r in self.rows if table is None or r["table"] == table)

    def rows_of(self, table: str) -> int:
        """Distinct input rows of `table` rejected (a row is logged once, but count rows, not entries)."""
        return self._spilled["rows", table] + len({(r["file"], r["row"]) for r in self.rows if r["table"] == table})

    def by_reason(self) -> dict[str, int]:
        out = Counter({key: n for (kind, key), n in self._spilled.items() if kind == "reason"})
        out.update(_reason_key(r) for r in self.rows)
        return dict(sorted(out.items()))

    def spill(self, folder: Path) -> None:
        """Move the rows logged so far to a Parquet part in `folder`, keeping their counts, so that the log holds
        only the rows logged after. Every entry of a row must be logged before the spill: `rows_of` counts each
        spill's distinct rows apart (the streamed import spills after a chunk, whose rows no later chunk has)."""
        if not self.rows:
            return
        self._spilled.update(("count", r["table"]) for r in self.rows)
        self._spilled.update(("rows", table) for table, _, _ in {(r["table"], r["file"], r["row"]) for r in self.rows})
        self._spilled.update(("reason", _reason_key(r)) for r in self.rows)
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"rejects-{len(self._parts):06d}.parquet"
        pq.write_table(pa.Table.from_pandas(self.frame(), preserve_index=False), part)
        self._parts.append(part)
        self.rows = []

    def write(self, path: Path, engine: EngineConfig | None = None) -> None:
        """Every row, spilled or not, sorted as `frame` sorts them, as a Parquet file (written whole or not at
        all); DuckDB merges the spilled parts under the engine's memory limit."""
        if not self._parts:
            write_parquet(path, self.frame())
            return
        self.spill(self._parts[0].parent)
        parts = ", ".join(sql_path(part) for part in self._parts)
        order = " ".join(f"WHEN '{table}' THEN {n}" for table, n in _TABLE_ORDER.items())
        with connect(engine) as con, atomic_path(path) as tmp:
            con.execute(
                f"""COPY (SELECT "table", file, "row", "column", reason, value
                    FROM read_parquet([{parts}], filename = true, file_row_number = true)
                    ORDER BY CASE "table" {order} ELSE {len(_TABLE_ORDER)} END, file, "row", filename,
                             file_row_number
                ) TO {sql_path(tmp)} (FORMAT parquet)"""
            )

    def raise_if_any(self, on_error: OnError, shown: int = 5, scope: str = "") -> None:
        """Under `on_error: fail`, a DataError naming the first `shown` rows logged; `scope` says where the
        count comes from when the input was not read to its end."""
        if on_error == "fail" and self.count():
            lines = [
                f"  {r['file']} row {r['row']} column '{r['column']}': {r['reason']}"
                + (f" (value {r['value']!r})" if r["value"] not in (None, "") else "")
                for r in self.sorted_rows()[:shown]
            ]
            more = f"\n  ... and {self.count() - shown} more" if self.count() > shown else ""
            raise DataError(
                f"{self.count()} invalid row(s){scope}; fix the input or use --on-error drop:\n"
                + "\n".join(lines)
                + more
            )


def _short(value: Any, limit: int = 120) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    # Undecodable input bytes arrive as surrogates; show them as \xNN escapes.
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason_key(row: dict[str, Any]) -> str:
    """A rejected row's key in `validation.json`'s `rejected_by_reason`: table.column: the kind of reason."""
    return f"{row['table']}.{row['column']}: {_reason_kind(row['reason'])}"


def _reason_kind(reason: str) -> str:
    return reason.split(" (", 1)[0].split(":", 1)[0]


def require_columns(frame: pd.DataFrame, required: tuple[str, ...], file: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{file}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(c for c in frame.columns if not c.startswith('_'))})"
        )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value is pd.NA


def parse_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a column of numbers that may arrive as text or as numbers.

    Returns (numbers, missing, error) where `error` holds a reason string for unparsable cells (else None).
    In a float64 column NaN counts as missing (pandas cannot tell it from null); elsewhere (text, or
    Parquet read with nulls kept as None) a NaN is explicit and is returned as NaN for the caller to reject.
    """
    nan_is_missing = values.dtype.kind == "f"  # in a float column NaN is pandas' own null marker
    if pd.api.types.infer_dtype(values, skipna=False) in ("integer", "floating", "mixed-integer-float"):
        numbers = values.to_numpy(dtype=np.float64)  # numbers only (no None, text or bool): as the loop takes them
        missing = np.isnan(numbers) if nan_is_missing else np.zeros(len(values), dtype=bool)
        return numbers, missing, np.full(len(values), None, dtype=object)
    return parse_numbers_per_cell(values)


def parse_numbers_per_cell(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`parse_numbers` one cell at a time: the rules themselves, which its fast path must equal."""
    n = len(values)
    numbers = np.full(n, np.nan)
    missing = np.zeros(n, dtype=bool)
    error = np.full(n, None, dtype=object)
    nan_is_missing = values.dtype.kind == "f"
    for i, v in enumerate(values.tolist()):
        if _is_missing(v) or (nan_is_missing and isinstance(v, float) and math.isnan(v)):
            missing[i] = True
        elif isinstance(v, bool):
            error[i] = "wrong type: boolean where a number is expected"
        elif isinstance(v, (int, float, np.integer, np.floating)):
            numbers[i] = float(v)
        elif isinstance(v, str):
            try:
                numbers[i] = float(v.strip())
            except ValueError:
                error[i] = "wrong type: not a number"
        else:
            error[i] = f"wrong type: {type(v).__name__} where a number is expected"
    return numbers, missing, error


def _text_problems(
    values: pd.Series, required: bool, max_chars: int = DEFAULT_MAX_TEXT_CHARS
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: (text with its whitespace runs collapsed, or None; reason or None). A value that is not
    text is refused, not converted; undecodable bytes arrive as surrogates."""
    texts = np.full(len(values), None, dtype=object)
    reasons = np.full(len(values), None, dtype=object)
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            if required:
                reasons[i] = "empty text"
            continue
        reason, v = _text_reason(v, max_chars)
        if reason:
            reasons[i] = reason
            continue
        stripped = " ".join(v.split())
        if not stripped:
            if required:
                reasons[i] = "empty text"
            continue
        texts[i] = stripped
    return texts, reasons


def _text_reason(value: Any, max_chars: int) -> tuple[str | None, str]:
    """(why this cell is not acceptable text, or None; the value as str)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return "not valid UTF-8", ""
    if not isinstance(value, str):
        return f"wrong type: {type(value).__name__} where text is expected", ""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        return "not valid UTF-8", value
    if not CONTROL_CHARACTERS.isdisjoint(value):
        return "control character in text", value
    if len(value) > max_chars:
        return f"text longer than {max_chars} characters (data.max_text_chars)", value
    return None, value


def _plain_ascii(values: pd.Series, max_chars: int) -> bool:
    """Whether every cell is text of printable ASCII, not blank and at most `max_chars` long: text that every
    check accepts as it is, found by Arrow's kernels instead of one Python call per cell (the usual ids)."""
    if not len(values) or pd.api.types.infer_dtype(values, skipna=False) != "string":
        return False
    try:
        texts = pa.array(values.to_numpy(), type=pa.string())
    except (pa.ArrowException, UnicodeError):  # undecodable bytes arrive as surrogates, which UTF-8 cannot hold
        return False
    checks = (
        pc.string_is_ascii(texts),
        pc.ascii_is_printable(texts),
        pc.less_equal(pc.utf8_length(texts), max_chars),
        pc.not_equal(pc.ascii_trim(texts, " "), ""),
    )
    return all(pc.all(check).as_py() for check in checks)


def parse_ids(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Ids are kept byte-exact: nothing is stripped or collapsed, so distinct ids never merge. Integers
    are taken as their decimal text; any other non-text value (a float, a list) is refused."""
    if _plain_ascii(values, 1_000):
        return values.to_numpy(dtype=object, copy=True), np.full(len(values), None, dtype=object)
    return ids_per_cell(values)


def ids_per_cell(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """`parse_ids` one cell at a time: the rules themselves, which its fast path must equal."""
    texts = np.full(len(values), None, dtype=object)
    reasons = np.full(len(values), None, dtype=object)
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            reasons[i] = "empty id"
            continue
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            v = str(int(v))
        reason, text = _text_reason(v, 1_000)
        if reason:
            reasons[i] = reason.replace("where text is", "where an id (text or integer) is")
        elif not text.strip():
            reasons[i] = "empty id"
        else:
            texts[i] = text
    return texts, reasons


def validate_items(raw: pd.DataFrame, file: str, rules: ValidationRules, log: RejectLog) -> pd.DataFrame:
    require_columns(raw, ("item_id", "title"), file)
    raw = raw.reset_index(drop=True)
    bad = np.zeros(len(raw), dtype=bool)
    out: dict[str, Any] = {}

    ids, id_reason = parse_ids(raw["item_id"])
    out["item_id"] = ids
    for column in ITEM_TEXT_COLUMNS:
        if column not in raw.columns:
            out[column] = np.full(len(raw), None, dtype=object)
            continue
        texts, reasons = _text_problems(raw[column], required=(column == "title"), max_chars=rules.max_text_chars)
        out[column] = texts
        has = (reasons != None) & ~bad  # noqa: E711 (elementwise)
        log.add_many("items", raw, has, column, reasons, raw[column].to_numpy())
        bad |= has
    has = (id_reason != None) & ~bad  # noqa: E711
    log.add_many("items", raw, has, "item_id", id_reason, raw["item_id"].to_numpy())
    bad |= has

    price = np.full(len(raw), np.nan)
    if "price" in raw.columns:
        price, missing, error = parse_numbers(raw["price"])
        reason = np.full(len(raw), None, dtype=object)
        reason[error != None] = error[error != None]  # noqa: E711
        checks = [
            (np.isnan(price) & ~missing & (error == None), "price is NaN (leave it empty when unknown)"),  # noqa: E711
            (np.isinf(price), "price is infinite"),
            (price < 0, "price is negative"),
            (
                np.isfinite(price) & (price > rules.max_price),
                f"price is implausibly large (> max_price {rules.max_price:g})",
            ),
        ]
        for mask, text in checks:
            reason[mask & (reason == None)] = text  # noqa: E711
        has = (reason != None) & ~bad  # noqa: E711
        log.add_many("items", raw, has, "price", reason, raw["price"].to_numpy())
        bad |= has
    out["price"] = price

    dup = pd.Series(out["item_id"]).duplicated(keep="first").to_numpy() & ~bad
    if dup.any():
        first_row = _first_rows(raw, pd.Series(out["item_id"]), ~bad)
        reasons = [f"duplicate item_id (first at row {first_row.get(v)})" for v in out["item_id"]]
        log.add_many("items", raw, dup, "item_id", reasons, out["item_id"])
        bad |= dup

    items = pd.DataFrame(out)
    extras = [c for c in raw.columns if c not in ITEM_COLUMNS and not c.startswith("_")]
    for c in extras:
        items[c] = raw[c].to_numpy()
    items = items[~bad].reset_index(drop=True)
    items["price"] = items["price"].astype("float64")
    for column in ("item_id",) + ITEM_TEXT_COLUMNS:
        items[column] = items[column].astype(object)
    return items


def _first_rows(raw: pd.DataFrame, keys: pd.Series, ok: np.ndarray) -> dict[Any, int]:
    first: dict[Any, int] = {}
    for key, row, good in zip(keys.tolist(), raw["_row"].tolist(), ok, strict=True):
        if good and key not in first:
            first[key] = row
    return first


@dataclass(frozen=True)
class ItemLookup:
    """What an event is checked against: the valid items' ids (as Arrow, for its hash lookup) and prices.
    Built once per import, not once per chunk of a streamed one."""

    ids: pa.Array
    prices: np.ndarray

    @classmethod
    def of(cls, items: pd.DataFrame) -> ItemLookup:
        return cls(pa.array(items["item_id"].to_numpy(), type=pa.string()), items["price"].to_numpy(np.float64))


def validate_events(
    raw: pd.DataFrame,
    file: str,
    items: pd.DataFrame | ItemLookup,
    rules: ValidationRules,
    log: RejectLog,
    duplicates: Literal["reject", "keep"] = "reject",
) -> pd.DataFrame:
    """The valid events of `raw`, every other row logged. `duplicates="keep"` leaves events equal in user,
    item, time and event to the caller, who sees more rows than this frame (a streamed import, which
    rejects them across chunks): the kept rows then keep their origin columns (`_file`, `_row`, ...)."""
    require_columns(raw, ("user_id", "item_id", "ts", "label"), file)
    raw = raw.reset_index(drop=True)
    n = len(raw)
    bad = np.zeros(n, dtype=bool)

    def reject(mask: np.ndarray, column: str, reasons: Any, values: Any = None) -> None:
        nonlocal bad
        mask = mask & ~bad
        log.add_many(
            "events",
            raw,
            mask,
            column,
            reasons,
            raw[column].to_numpy() if values is None and column in raw.columns else values,
        )
        bad |= mask

    users, reason = parse_ids(raw["user_id"])
    reject(reason != None, "user_id", reason)  # noqa: E711
    item_ids, reason = parse_ids(raw["item_id"])
    reject(reason != None, "item_id", reason)  # noqa: E711
    # each event's item's row in `items` (NaN for none), by Arrow's hash lookup: a chunk of a streamed import
    # must not rebuild an index of every item
    lookup = items if isinstance(items, ItemLookup) else ItemLookup.of(items)
    item_row = pc.index_in(pa.array(item_ids, type=pa.string()), value_set=lookup.ids).to_numpy(zero_copy_only=False)
    reject(np.isnan(item_row), "item_id", "unknown item_id (not in items)")

    ts, missing, error = parse_numbers(raw["ts"])
    reject(error != None, "ts", error)  # noqa: E711
    reject(missing, "ts", "missing timestamp")
    finite = np.isfinite(ts)
    reject(~finite, "ts", "timestamp is not finite")
    reject(finite & (ts != np.round(ts)), "ts", "timestamp is not a whole number of seconds")
    if not rules.ordinal_time:
        out_of_range = finite & ((ts < rules.min_ts) | (ts > rules.max_ts))
        reject(out_of_range, "ts", f"timestamp out of range [{rules.min_ts}, {rules.max_ts}] (unix seconds expected)")

    rating = np.full(n, np.nan)
    if "rating" in raw.columns:
        rating, missing, error = parse_numbers(raw["rating"])
        reject(error != None, "rating", error)  # noqa: E711
        reject(~missing & ~np.isfinite(rating), "rating", "rating is not finite")

    label, missing, error = parse_numbers(raw["label"])
    reject(error != None, "label", error)  # noqa: E711
    reject(missing | ~np.isin(label, (0.0, 1.0)), "label", "label must be 0 or 1")

    known = ~np.isnan(item_row)
    default_value = np.full(n, 1.0)
    prices = lookup.prices[item_row[known].astype(np.int64)]
    default_value[known] = np.where(np.isnan(prices), 1.0, prices)
    if "value" in raw.columns:
        value, missing, error = parse_numbers(raw["value"])
        reject(error != None, "value", error)  # noqa: E711
        reject(~missing & ~np.isfinite(value), "value", "value is not finite")
        reject(~missing & (value < 0), "value", "value is negative")
        value = np.where(missing, default_value, value)
    else:
        value = default_value

    if "event" in raw.columns:
        events, reason = _text_problems(raw["event"], required=True)
        reject(reason != None, "event", reason)  # noqa: E711
    else:
        events = np.full(n, "interaction", dtype=object)

    frame = pd.DataFrame({"user_id": users, "item_id": item_ids, "ts": ts, "event": events})
    dup = frame.duplicated(keep="first").to_numpy() & ~bad if duplicates == "reject" else np.zeros(n, dtype=bool)
    if dup.any():
        keys = pd.Series(list(zip(users, item_ids, ts, events, strict=True)))
        first_row = _first_rows(raw, keys, ~bad)
        reasons = [
            f"duplicate event: same user_id, item_id, ts and event as row {first_row.get(k)}" for k in keys.tolist()
        ]
        reject(dup, "item_id", reasons, item_ids)

    keep = ~bad
    events_df = pd.DataFrame(
        {
            "user_id": pd.Series(users[keep], dtype=object),
            "item_id": pd.Series(item_ids[keep], dtype=object),
            "ts": ts[keep].astype("int64"),
            "event": pd.Series(events[keep], dtype=object),
            "label": label[keep].astype("int8"),
            "value": value[keep].astype("float64"),
            "rating": rating[keep].astype("float64"),
        }
    )
    extras = [c for c in raw.columns if c not in EVENT_COLUMNS and not c.startswith("_")]
    for c in extras:
        events_df[c] = raw[c].to_numpy()[keep]
    if duplicates == "keep":
        for c in (c for c in raw.columns if c.startswith("_")):
            events_df[c] = raw[c].to_numpy()[keep]
    return events_df


def validate_users(raw: pd.DataFrame, file: str, log: RejectLog) -> pd.DataFrame:
    require_columns(raw, ("user_id",), file)
    raw = raw.reset_index(drop=True)
    ids, reason = parse_ids(raw["user_id"])
    bad = reason != None  # noqa: E711
    log.add_many("users", raw, bad, "user_id", reason, raw["user_id"].to_numpy())
    dup = pd.Series(ids).duplicated(keep="first").to_numpy() & ~bad
    if dup.any():
        first_row = _first_rows(raw, pd.Series(ids), ~bad)
        log.add_many(
            "users", raw, dup, "user_id", [f"duplicate user_id (first at row {first_row.get(v)})" for v in ids], ids
        )
    keep = ~(bad | dup)
    users = raw.loc[keep, [c for c in raw.columns if not c.startswith("_")]].reset_index(drop=True)
    users["user_id"] = pd.Series(ids[keep], dtype=object)
    return users
