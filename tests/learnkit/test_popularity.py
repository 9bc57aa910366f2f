"""Popularity counts in DuckDB equal pandas' value_counts, its order of ties included (the order decides
which item a weighted random draw picks)."""

from __future__ import annotations

import random

import pandas as pd

from learnkit.data.popularity import item_counts


def test_item_counts_equal_value_counts_order_of_ties_included() -> None:
    rng = random.Random(4)
    ids = ["a", "B", "b", "10", "9", "é", "z z", "Ω", "a\tb", "i1", "i2", "i3"]
    items = pd.Series([rng.choice(ids) for _ in range(60)], name="item_id", dtype=object)
    expected = items.value_counts()
    got = item_counts(items)
    assert expected.duplicated().any()  # ties, so their order is tested
    pd.testing.assert_series_equal(got, expected)


def test_item_counts_by_hand() -> None:
    got = item_counts(pd.Series(["x", "y", "y", "z", "x", "w"], name="item_id"))
    assert got.index.tolist() == ["x", "y", "z", "w"] and got.tolist() == [2, 2, 1, 1]
    assert item_counts(pd.Series([], dtype=object, name="item_id")).empty
