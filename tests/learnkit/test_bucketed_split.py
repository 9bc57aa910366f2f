"""A split made one user bucket at a time equals the in-memory split, example for example and in its stats:
the test period's start and the ranker's validation start placed over all buckets as numpy places them."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnkit.core.errors import DataError
from learnkit.core.sql import EngineConfig, connect, kth_smallest
from learnkit.data.bucketed import split_bucketed
from learnkit.data.importers import load_dataset, validate
from learnkit.data.period import TestPeriodConfig, start_position
from learnkit.data.schema import ValidationRules
from learnkit.data.splits import SplitConfig, split_around_period
from learnkit.data.streamed import import_canonical_streamed


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """(the in-memory import's events, the same events streamed into 4 buckets): 60 users, times with ties."""
    folder = tmp_path_factory.mktemp("data")
    rng = random.Random(5)
    items = [f"i{k}" for k in range(40)]
    pd.DataFrame({"item_id": items, "title": [f"film {i}" for i in items]}).to_csv(folder / "items.csv", index=False)
    rows = [
        (f"u{rng.randrange(60)}", rng.choice(items), 1_600_000_000 + rng.randrange(9000) * 60, rng.choice([0, 1, 1, 1]))
        for _ in range(3000)
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "label"]).drop_duplicates(
        ["user_id", "item_id", "ts"]
    )
    events.to_csv(folder / "events.csv", index=False)
    rules = ValidationRules()
    in_memory = validate(load_dataset("canonical", folder, {}), rules).events
    out = tmp_path_factory.mktemp("run") / "events.parquet"
    import_canonical_streamed(folder, rules, out, out.with_name("rejected.parquet"), EngineConfig(buckets=4), 700)
    return in_memory, out


def _sorted(examples: pd.DataFrame) -> pd.DataFrame:
    keyed = examples.assign(
        history=[tuple(h) for h in examples["history"]], target=[tuple(t) for t in examples["target"]]
    )
    return keyed.sort_values(["part", "user_id", "history", "target"]).reset_index(drop=True)


CASES = {
    "the demo's": (
        SplitConfig(boundary="user_fraction", evaluate_all_users=True, positives_only=True, history_max=20),
        TestPeriodConfig(start_quantile=0.8),
        True,
        0.1,
    ),
    "test period": (SplitConfig(boundary="test_period", train_examples="cuts"), TestPeriodConfig(), False, None),
    "leave one out": (
        SplitConfig(kind="leave_one_out", history_max=5),
        TestPeriodConfig(start_quantile=0.7),
        True,
        None,
    ),
    "held-out users": (SplitConfig(boundary="user_fraction", history_max=10), TestPeriodConfig(), False, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bucketed_split_equals_the_in_memory_split(imported, tmp_path: Path, case: str) -> None:
    events, folder = imported
    config, period, before, valid_fraction = CASES[case]
    expected, expected_stats, _ = split_around_period(events, config, period, before, valid_fraction)
    stats = split_bucketed(folder, config, period, before, tmp_path / "examples", valid_fraction, EngineConfig())
    got = pd.concat(
        [pd.read_parquet(p) for p in sorted((tmp_path / "examples").glob("part-*.parquet"))], ignore_index=True
    )
    got = got.assign(history=[list(h) for h in got["history"]], target=[list(t) for t in got["target"]])
    assert len(got) == len(expected) > 100
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))
    assert stats == expected_stats


def test_kth_smallest_places_a_quantile_as_numpy_does() -> None:
    rng = np.random.default_rng(0)
    for values in (rng.integers(0, 50, size=1001), rng.permutation(1000), rng.integers(0, 10**9, size=997)):
        with connect() as con:
            con.register("t", pd.DataFrame({"ts": values}))
            for q in (0.01, 0.5, 0.8, 0.9, 0.999):
                expected = np.quantile(values, q, method="higher")
                assert kth_smallest(con, "t", "ts", start_position(len(values), q)) == expected


def test_a_bucketed_split_refuses_what_it_cannot_place(imported, tmp_path: Path) -> None:
    _, folder = imported
    with pytest.raises(DataError, match="cutoff_ts"):
        split_bucketed(folder, SplitConfig(boundary="global_time"), TestPeriodConfig(), False, tmp_path / "x")
    assert not (tmp_path / "x").exists()
