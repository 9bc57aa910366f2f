"""The users' sequences sorted in DuckDB equal the pandas sort they replaced, with ties in time and repeated
events kept in input order, by any number of user buckets; and the splits cut from them are unchanged."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnkit.core.sql import EngineConfig
from learnkit.data.sequences import user_sequences

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO / "bench"))  # after the packages: bench/export.py must not shadow export/
import pandas_path  # noqa: E402  (the pre-DuckDB logic, kept by bench/scale.py as its baseline)


def tied_events(seed: int, rows: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{int(u)}" for u in rng.zipf(1.3, rows) % 150],  # string order is not numeric order
            "item_id": [f"i{int(i)}" for i in rng.zipf(1.2, rows) % 300],
            "ts": rng.integers(0, 100, rows),  # many events share a time
            "label": rng.integers(0, 2, rows),
            "mark": np.arange(rows),  # tells equal (user, time, item) events apart: their input order
        }
    )
    return pd.concat([frame, frame.iloc[::7].assign(mark=-1)], ignore_index=True)  # exact repeats


@pytest.mark.parametrize("positives_only", [True, False])
@pytest.mark.parametrize("buckets", [1, 7])
def test_sequences_equal_the_pandas_sort(positives_only, buckets):
    events = tied_events(seed=3)
    got = user_sequences(events, positives_only, ["mark"], EngineConfig(buckets=buckets))
    want = pandas_path.user_sequences(events, positives_only, ["mark"])
    assert got.users == [user for user, *_ in want] and len(got.users) > 100
    for sequence, (user, items, ts, columns) in zip(got, want, strict=True):
        assert sequence.user == user and sequence.items == items
        assert np.array_equal(sequence.ts, ts) and np.array_equal(sequence.columns["mark"], columns["mark"])
    assert sum(len(s) for s in got) == (events["label"] == 1).sum() if positives_only else len(events)


def test_no_events_give_no_sequences():
    empty = tied_events(seed=1).iloc[:0]
    got = user_sequences(empty, False, ["mark"])
    assert len(got) == 0 and list(got) == [] and got.items == []


def test_user_buckets_hold_each_user_once_with_rows_in_input_order_as_the_import_numbers_them():
    """One pass numbers every row's bucket; each bucket gets its rows alone, in their order, and a user's
    bucket is the one the streamed import writes them to (`bucket_number`)."""
    import duckdb

    from learnkit.core.sql import bucket_number, split_by_bucket

    events = pd.concat([tied_events(seed=5, rows=60_000)] * 2, ignore_index=True)  # past a DuckDB vector
    parts = split_by_bucket(events, EngineConfig(buckets=7, threads=2))
    assert len(parts) == 7 and all(len(part) > 0 for part in parts)
    for part in parts:
        assert part.index.is_monotonic_increasing  # input order
    assert sorted(np.concatenate([part.index.to_numpy() for part in parts]).tolist()) == list(range(len(events)))
    with duckdb.connect() as con:
        con.register("users", pd.DataFrame({"user_id": sorted(events["user_id"].unique())}))
        imported = dict(con.sql(f"SELECT user_id, {bucket_number('user_id', 7)} FROM users").fetchall())
    for number, part in enumerate(parts):
        assert {imported[user] for user in part["user_id"]} == {number}
    assert split_by_bucket(events, EngineConfig(buckets=1))[0] is events
