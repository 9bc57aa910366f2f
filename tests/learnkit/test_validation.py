"""Every bad input of the canonical data contract, each with its exact error or rejected-row count."""

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learnkit.core.errors import DataError
from learnkit.data.importers import load_dataset, validate
from learnkit.data.schema import ValidationRules

ITEMS = (
    "item_id,title,category,brand,price\ni1,Red mug,Kitchen,Acme,9.99\ni2,Blue mug,Kitchen,,\n"
    "i3,Kettle,Kitchen,Acme,25\n"
)
EVENTS = "user_id,item_id,ts,event,label\nu1,i1,1700000000,buy,1\nu1,i2,1700000100,view,0\nu2,i3,1700000200,buy,1\n"


def dataset(tmp_path, items=ITEMS, events=EVENTS, on_error="drop", encoding="utf-8"):
    (tmp_path / "items.csv").write_bytes(items.encode(encoding) if isinstance(items, str) else items)
    (tmp_path / "events.csv").write_bytes(events.encode(encoding) if isinstance(events, str) else events)
    return validate(load_dataset("canonical", tmp_path, {}), ValidationRules(on_error=on_error))


def rejected(ds):
    return ds.rejected[["table", "row", "column", "reason"]].values.tolist()


def test_clean_input_passes_with_types_and_default_values(tmp_path):
    ds = dataset(tmp_path)
    assert len(ds.items) == 3 and len(ds.events) == 3 and ds.rejected.empty
    assert ds.items["price"].dtype == "float64" and pd.isna(ds.items.loc[1, "price"])
    assert pd.isna(ds.items.loc[1, "brand"])  # an empty field is null, not ""
    assert ds.events["ts"].dtype == "int64" and ds.events["label"].dtype == "int8"
    # value defaults to the item price, or 1.0 when the item has none
    assert ds.events["value"].tolist() == [9.99, 1.0, 25.0]


def test_missing_column_names_file_and_column(tmp_path):
    with pytest.raises(DataError, match=r"events.csv: missing required column\(s\) label"):
        dataset(tmp_path, events=EVENTS.replace(",label", "").replace(",1\n", "\n").replace(",0\n", "\n"))


def test_wrong_types(tmp_path):
    events = EVENTS + "u3,i1,yesterday,buy,1\nu3,i2,1700000300,buy,maybe\n"
    items = ITEMS + "i4,Spoon,Kitchen,Acme,cheap\n"
    ds = dataset(tmp_path, items=items, events=events)
    assert rejected(ds) == [
        ["items", 4, "price", "wrong type: not a number"],
        ["events", 4, "ts", "wrong type: not a number"],
        ["events", 5, "label", "wrong type: not a number"],
    ]
    with pytest.raises(DataError) as err:
        dataset(tmp_path, items=items, events=events, on_error="fail")
    assert "items.csv row 4 column 'price': wrong type: not a number (value 'cheap')" in str(err.value)


def test_empty_and_non_utf8_text(tmp_path):
    items = (ITEMS + "i4,   ,Kitchen,Acme,1\n").encode() + b"i5,Caf\xe9 cup,Kitchen,Acme,2\n"
    ds = dataset(tmp_path, items=items)
    assert rejected(ds) == [["items", 4, "title", "empty text"], ["items", 5, "title", "not valid UTF-8"]]
    assert len(ds.items) == 3


@pytest.mark.parametrize(
    "price, reason",
    [
        ("NaN", "price is NaN (leave it empty when unknown)"),
        ("-3", "price is negative"),
        ("inf", "price is infinite"),
        ("5e9", "price is implausibly large (> max_price 1e+06)"),
    ],
)
def test_bad_prices(tmp_path, price, reason):
    ds = dataset(tmp_path, items=ITEMS + f"i4,Spoon,Kitchen,Acme,{price}\n")
    assert rejected(ds) == [["items", 4, "price", reason]]


def test_duplicate_item_ids_keep_the_first(tmp_path):
    ds = dataset(tmp_path, items=ITEMS + "i1,Red mug again,Kitchen,Acme,1\n")
    assert rejected(ds) == [["items", 4, "item_id", "duplicate item_id (first at row 1)"]]
    assert ds.items.loc[ds.items.item_id == "i1", "title"].item() == "Red mug"


def test_unknown_items_and_duplicate_events(tmp_path):
    events = EVENTS + "u1,i9,1700000300,buy,1\nu1,i1,1700000000,buy,1\n"
    ds = dataset(tmp_path, events=events)
    assert rejected(ds) == [
        ["events", 4, "item_id", "unknown item_id (not in items)"],
        ["events", 5, "item_id", "duplicate event: same user_id, item_id, ts and event as row 1"],
    ]
    assert ds.report["events"] == {"kept": 3, "rejected": 2, "input_rows": 5}


def test_timestamps_out_of_range(tmp_path):
    events = EVENTS + "u3,i1,1700000000000,buy,1\nu3,i2,12,buy,1\nu3,i3,1700000000.5,buy,1\n"
    ds = dataset(tmp_path, events=events)
    reasons = [r[3] for r in rejected(ds)]
    assert reasons[:2] == ["timestamp out of range [631152000, 4102444800] (unix seconds expected)"] * 2
    assert reasons[2] == "timestamp is not a whole number of seconds"


def test_truncated_csv_rejects_the_short_last_row(tmp_path):
    ds = dataset(tmp_path, events=EVENTS + "u3,i1,17000")
    assert rejected(ds) == [["events", 4, "*", "row has 3 fields, expected 5 (line 5; truncated or malformed)"]]
    assert ds.report["events"]["input_rows"] == 4


def test_a_last_line_cut_inside_its_last_field_is_rejected_not_read(tmp_path):
    # the complete row would be "i4,Spoon,Kitchen,Acme,49.99\n": cut after the "4", it has every field
    ds = dataset(tmp_path, items=ITEMS + "i4,Spoon,Kitchen,Acme,4")
    assert rejected(ds) == [
        ["items", 4, "*", "last line has no line break: the file looks cut short (end a complete file with a newline)"]
    ]
    assert ds.items["item_id"].tolist() == ["i1", "i2", "i3"] and ds.report["items"]["input_rows"] == 4


def test_an_unclosed_quote_is_rejected_by_its_line_and_nothing_after_it_is_lost(tmp_path):
    later = "".join(f"u{k},i1,{1700000300 + k},buy,1\n" for k in range(32))
    ds = dataset(tmp_path, events=EVENTS + 'u3,"i1,1700000300,buy,1\n' + later)
    assert rejected(ds) == [
        [
            "events",
            4,
            "*",
            "a quote opened on line 5 is not closed on that line: line 6 would be swallowed though it reads as a "
            "row of its own",
        ]
    ]
    assert len(ds.events) == 3 + 32 and ds.report["events"]["input_rows"] == 36
    with pytest.raises(DataError, match=r"events.csv row 4 column '\*': a quote opened on line 5 is not closed"):
        dataset(tmp_path, events=EVENTS + 'u3,"i1,1700000300,buy,1\n' + later, on_error="fail")
    # a quote still open at the end of the file, with nothing after it that reads as a row
    ds = dataset(tmp_path, events=EVENTS + 'u3,"i1,1700000300,buy,1\nand more\n')
    assert rejected(ds)[0][3].endswith("it is never closed: every later line would be swallowed")


@pytest.mark.parametrize("table", ["items", "events"])
def test_a_quote_closed_by_an_inch_mark_rows_later_swallows_nothing(tmp_path, table):
    """The probe's case: an unclosed quote on row 1, "closed" by `55"` three rows later, turned five lines
    into two records with exit 0. Now the opening line alone is rejected and every other line is read."""
    items = (
        'item_id,title,category,brand,price\ni1,"Big TV,Video,Acme,500\ni2,Radio,Audio,Acme,20\n'
        'i3,Phone,Audio,Acme,90\ni4,TV 55",Video,Acme,400\ni5,Lamp,Home,Acme,15\n'
    )
    events = (
        'user_id,item_id,ts,event,label\nu1,"i1,1700000000,buy,1\nu1,i2,1700000100,buy,1\n'
        'u2,i3,1700000200,buy,1\nu2,i4,1700000300,view 55",0\nu3,i5,1700000400,buy,1\n'
    )
    good_items = ITEMS + "i4,TV,Video,Acme,400\ni5,Lamp,Home,Acme,15\n"
    if table == "items":
        ds = dataset(tmp_path, items=items, events=EVENTS.replace("i1", "i2").replace("i3", "i5"))
    else:
        ds = dataset(tmp_path, items=good_items, events=events)
    lines = 5
    frame = ds.items if table == "items" else ds.events
    assert [r[:2] for r in rejected(ds)] == [[table, 1]]
    assert len(frame) + len(ds.rejected) == lines == ds.report[table]["input_rows"]
    if table == "items":
        assert ds.items["title"].tolist() == ["Radio", "Phone", 'TV 55"', "Lamp"]


def test_a_quoted_field_may_hold_a_line_break_when_it_swallows_no_row(tmp_path):
    items = 'item_id,title,category,brand,price\ni1,"Red mug,\nbig",Kitchen,Acme,9.99\ni2,Blue mug,Kitchen,,\n'
    ds = dataset(tmp_path, items=items, events=EVENTS.replace("u2,i3", "u2,i1"))
    assert ds.rejected.empty and ds.items["title"].tolist() == ["Red mug, big", "Blue mug"]


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    ds = dataset(tmp_path, items="\ufeff" + ITEMS, events="\ufeff" + EVENTS)
    assert ds.rejected.empty and ds.items["item_id"].tolist() == ["i1", "i2", "i3"]


def test_two_formats_of_one_table_are_ambiguous(tmp_path):
    (tmp_path / "items.csv").write_text(ITEMS)
    (tmp_path / "events.csv").write_text(EVENTS)
    pq.write_table(
        pa.table({"user_id": ["u"], "item_id": ["i1"], "ts": [1700000000], "label": [1]}), tmp_path / "events.parquet"
    )
    with pytest.raises(DataError, match=r"events.parquet and events.csv are both here .* keep one"):
        load_dataset("canonical", tmp_path, {})


def test_values_of_the_wrong_type_are_refused_and_ids_kept_byte_exact(tmp_path):
    pq.write_table(
        pa.table(
            {
                "item_id": ["a", "a b", "a  b", " c", "d", "e", "f"],
                "title": ["A", "B", "C", "D", "E\x07bell", "x" * 20_001, "G"],
                "keywords": pa.array([None, None, None, None, None, None, ["k1", "k2"]]),
            }
        ),
        tmp_path / "items.parquet",
    )
    (tmp_path / "events.csv").write_text(
        "user_id,item_id,ts,label\nu1,a,1700000000,1\nu2,a b,1700000000,1\nu3,a  b,1700000000,1\n"
    )
    ds = validate(load_dataset("canonical", tmp_path, {}), ValidationRules(on_error="drop"))
    assert rejected(ds) == [
        ["items", 5, "title", "control character in text"],
        ["items", 6, "title", "text longer than 20000 characters (data.max_text_chars)"],
        ["items", 7, "keywords", "wrong type: list where text is expected"],
    ]
    # ids that differ only in whitespace stay apart, byte for byte
    assert ds.items["item_id"].tolist() == ["a", "a b", "a  b", " c"]
    assert ds.events["item_id"].tolist() == ["a", "a b", "a  b"]
    assert ds.report["items"]["input_rows"] == 7 and ds.report["events"]["input_rows"] == 3
    # float ids are refused (1.0 would become "1.0" and join nothing); integers are their decimal text
    (tmp_path / "events.csv").unlink()
    pq.write_table(
        pa.table({"user_id": [1.0, 2.0], "item_id": ["a", "a"], "ts": [1700000000] * 2, "label": [1, 1]}),
        tmp_path / "events.parquet",
    )
    with pytest.raises(
        DataError,
        match=r"events.parquet row 1 column 'user_id': wrong type: float where an id "
        r"\(text or integer\) is expected",
    ):
        validate(load_dataset("canonical", tmp_path, {}), ValidationRules(on_error="fail"))
    pq.write_table(
        pa.table({"user_id": [7, 8], "item_id": ["a", "a"], "ts": [1700000000, 1700000001], "label": [1, 1]}),
        tmp_path / "events.parquet",
    )
    ds = validate(load_dataset("canonical", tmp_path, {}), ValidationRules(on_error="drop"))
    assert ds.events["user_id"].tolist() == ["7", "8"]


def test_every_row_read_is_kept_or_rejected(tmp_path):
    from learnkit.data.importers import _check_accounting

    ds = dataset(tmp_path, events=EVENTS + "u3,i1,yesterday,buy,1\nu3,i9,1700000300,buy,1\nbad\n")
    assert (len(ds.events), ds.report["events"]["rejected"], ds.report["events"]["input_rows"]) == (3, 3, 6)
    with pytest.raises(
        RuntimeError,
        match=r"events.csv: 6 rows read, 3 kept and 2 rejected: 1 events rows "
        r"unaccounted for",
    ):
        _check_accounting("events", "events.csv", 6, 3, 2)


def test_truncated_gzip_and_parquet_and_json_lines(tmp_path):
    payload = gzip.compress(("x" * 5000 + "\n").encode())
    (tmp_path / "items.csv.gz").write_bytes(payload[: len(payload) // 2])
    (tmp_path / "events.csv").write_text(EVENTS)
    with pytest.raises(DataError, match=r"items.csv.gz: truncated or corrupt compressed file"):
        load_dataset("canonical", tmp_path, {})

    table = pa.table({"item_id": ["a"] * 1000, "title": ["t"] * 1000})
    pq.write_table(table, tmp_path / "full.parquet")
    data = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "items.csv.gz").unlink()
    (tmp_path / "items.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"items.parquet: not a readable Parquet file \(truncated or corrupt\?\)"):
        load_dataset("canonical", tmp_path, {})


def test_truncated_json_lines_in_amazon_reviews(tmp_path):
    meta = '{"asin": "A1", "title": "Gift card", "price": "$25.00"}\n'
    reviews = (
        '{"reviewerID": "u1", "asin": "A1", "overall": 5.0, "unixReviewTime": 1500000000}\n'
        '{"reviewerID": "u2", "asin": "A1", "overall": 4.0, "unixRev'
    )
    (tmp_path / "meta_X.json").write_text(meta)
    (tmp_path / "X_5.json").write_text(reviews)
    raw = load_dataset("amazon-reviews", tmp_path, {})
    ds = validate(raw, ValidationRules(on_error="drop"))
    assert len(ds.events) == 1 and ds.events["value"].tolist() == [25.0]
    assert rejected(ds) == [["events", 2, "*", "invalid JSON (Unterminated string starting at at char 51)"]]
    with pytest.raises(DataError, match=r"X_5.json row 2 column '\*': invalid JSON"):
        validate(load_dataset("amazon-reviews", tmp_path, {}), ValidationRules(on_error="fail"))


def test_empty_files(tmp_path):
    (tmp_path / "items.csv").write_text("")
    (tmp_path / "events.csv").write_text(EVENTS)
    with pytest.raises(DataError, match=r"items.csv: file is empty"):
        load_dataset("canonical", tmp_path, {})
    (tmp_path / "items.csv").write_text("item_id,title\n")
    with pytest.raises(DataError, match=r"items.csv: has a header but no rows"):
        load_dataset("canonical", tmp_path, {})


def test_parquet_keeps_null_apart_from_nan(tmp_path):
    pq.write_table(
        pa.table({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "price": pa.array([1.0, None, float("nan")])}),
        tmp_path / "items.parquet",
    )
    pq.write_table(
        pa.table({"user_id": ["u"], "item_id": ["a"], "ts": [1700000000], "label": [1]}), tmp_path / "events.parquet"
    )
    ds = validate(load_dataset("canonical", tmp_path, {}), ValidationRules(on_error="drop"))
    assert ds.items["item_id"].tolist() == ["a", "b"]
    assert rejected(ds) == [["items", 3, "price", "price is NaN (leave it empty when unknown)"]]


_ID_COLUMNS = {
    "plain": ["u1", "item-42", "A" * 1_000],
    "too long": ["u1", "A" * 1_001],
    "blank": ["u1", "   "],
    "empty": ["u1", ""],
    "tab and newline": ["u\t1", "u\n2"],
    "accent": ["u1", "café"],
    "surrogate": ["u1", "bad\udcff"],
    "None and NaN": ["u1", None, float("nan")],
    "bytes": ["u1", b"u2", b"\xff"],
    "integers and bool": [7, np.int64(8), True],
    "a float": ["u1", 2.5],
}
_NUMBER_COLUMNS = {
    "integers": [1, 2, 3],
    "floats with NaN": [1.5, float("nan")],
    "float64 column": np.array([1.0, np.nan]),
    "text": ["1", " 2.5 ", "x", ""],
    "None among numbers": [1, None],
    "bool among numbers": [1, True],
    "bytes": [1, b"2"],
}


@pytest.mark.parametrize("case", sorted(_ID_COLUMNS))
def test_the_ids_fast_path_equals_the_rules_cell_by_cell(case):
    """The Arrow kernels that accept plain ids in one call give exactly what the per-cell rules give."""
    from learnkit.data.schema import ids_per_cell, parse_ids

    values = pd.Series(_ID_COLUMNS[case], dtype=object)
    fast, slow = parse_ids(values), ids_per_cell(values)
    assert fast[0].tolist() == slow[0].tolist() and fast[1].tolist() == slow[1].tolist()
    assert (slow[1][0] is None) and (case != "plain" or all(r is None for r in slow[1]))


@pytest.mark.parametrize("case", sorted(_NUMBER_COLUMNS))
def test_the_numbers_fast_path_equals_the_rules_cell_by_cell(case):
    from learnkit.data.schema import parse_numbers, parse_numbers_per_cell

    raw = _NUMBER_COLUMNS[case]
    values = pd.Series(raw) if isinstance(raw, np.ndarray) else pd.Series(raw, dtype=object)
    fast, slow = parse_numbers(values), parse_numbers_per_cell(values)
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1].tolist() == slow[1].tolist() and fast[2].tolist() == slow[2].tolist()


def test_a_spilled_reject_log_counts_and_writes_what_one_in_memory_does(tmp_path):
    """Rows moved to disk part by part keep their counts (entries, distinct rows, reasons), and `write` merges
    the parts back in the in-memory order: by table (items, events, users), file and row, and a row's entries in
    the order logged."""
    from learnkit.data.schema import RejectLog

    entries = [
        ("events", "b.csv", 7, "ts", "not a whole number", "soon"),
        ("events", "b.csv", 7, "label", "label must be 0 or 1", 2),  # a second entry for one row
        ("items", "a.csv", 3, "price", "negative price", -1.0),
        ("users", "c.csv", 1, "user_id", "empty id", None),
        # spill here
        ("events", "a.csv", 9, "item_id", "unknown item_id (not in items)", "i9"),
        ("events", "b.csv", 2, "item_id", "duplicate event: same user_id, item_id, ts and event as row 1", "i1"),
        ("events", "b.csv", 2, "ts", "not a whole number", "x"),
        # spill here
        ("items", "a.csv", 1, "title", "empty text", ""),
        ("events", "b.csv", 10, "ts", "out of range", 5),
    ]
    whole, spilled = RejectLog(), RejectLog()
    for k, entry in enumerate(entries):
        whole.add(*entry)
        spilled.add(*entry)
        if k in (3, 6):
            spilled.spill(tmp_path / "parts")
    assert len(spilled.rows) == 2 and len(list((tmp_path / "parts").iterdir())) == 2
    assert spilled.count() == whole.count() == 9 and spilled.count("events") == 6
    assert [spilled.rows_of(t) for t in ("items", "events", "users")] == [2, 4, 1]
    assert spilled.by_reason() == whole.by_reason() and spilled.by_reason()["events.ts: not a whole number"] == 2
    spilled.write(tmp_path / "rejected.parquet")
    got = pd.read_parquet(tmp_path / "rejected.parquet")
    pd.testing.assert_frame_equal(got, whole.frame())
    assert got[["file", "row", "column"]].values.tolist() == [
        ["a.csv", 1, "title"],
        ["a.csv", 3, "price"],
        ["a.csv", 9, "item_id"],
        ["b.csv", 2, "item_id"],
        ["b.csv", 2, "ts"],
        ["b.csv", 7, "ts"],
        ["b.csv", 7, "label"],
        ["b.csv", 10, "ts"],
        ["c.csv", 1, "user_id"],
    ]
    assert pd.isna(got["value"].iloc[-1]) and got["value"].iloc[0] == ""  # a missing value stays missing
