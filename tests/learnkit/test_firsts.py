"""First-event times in DuckDB equal the pandas groupby they replace, ids ordered as Python orders them."""

from __future__ import annotations

import random

import pandas as pd

from learnkit.core.sql import EngineConfig
from learnkit.data.firsts import first_times


def test_first_times_equal_the_pandas_groupby() -> None:
    rng = random.Random(2)
    ids = ["a", "B", "b", "10", "9", "é", "z z", "Ω", "a\tb"]
    events = pd.DataFrame(
        {
            "user_id": [rng.choice(ids) for _ in range(500)],
            "item_id": [rng.choice(ids) for _ in range(500)],
            "ts": [1_600_000_000 + rng.randrange(30) for _ in range(500)],
            "label": 1,
        }
    )
    for keys in (["item_id"], ["user_id", "item_id"]):
        expected = events.groupby(keys)["ts"].min()
        got = first_times(events, keys, EngineConfig(buckets=3))
        assert got.index.tolist() == expected.index.tolist()  # the same groups in the same order
        assert got.tolist() == expected.tolist() and got.name == "ts" and got.dtype == "int64"
        assert list(got.index.names) == keys
    assert first_times(events.iloc[:0], ["item_id"]).empty
