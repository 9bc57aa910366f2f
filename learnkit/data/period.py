"""The test period of a run (framework-free): which events it holds and where each user's starts.

Every stage after the embeddings uses this one definition: the export embeds users from what came before,
the rankers train before it and are tested in it, the segments look back from it, the A/B test replays it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from learnkit.core.configload import option
from learnkit.core.errors import DataError

NEVER = float("inf")  # the snapshot of a user with no test event: all their events come before


@dataclass
class TestPeriodConfig:
    """Where the test period starts: the export's snapshot, the rankers' train/test boundary, the segment
    windows and the A/B days all count from here. `time`: one start for everyone (a timestamp or a
    quantile of all event times). `split`: the events the dataset's own `split` column marks `test` (a
    leave-one-out dataset such as the UniSRec files); each user's period starts at their first test event."""

    __test__ = False  # not a pytest test class, whatever its name
    kind: Literal["time", "split"] = option(
        "time", help="time: one start for everyone; split: the dataset's own split column"
    )
    start_ts: int | None = option(None, help="the start as a timestamp (time)")
    start_quantile: float = option(0.8, help="the start as a quantile of all event times, when start_ts is not given")
    day_seconds: int = option(86_400, help="the length of one A/B day (a period) in ts units")

    def __post_init__(self) -> None:
        if not 0 < self.start_quantile < 1:
            raise ValueError("start_quantile must be in (0, 1)")
        if self.day_seconds < 1:
            raise ValueError("day_seconds must be >= 1")


@dataclass
class SegmentConfig:
    """Paper table 7, relative to the test period's start (windows in days of `test_period.day_seconds`)."""

    user_lookback_days: float = option(
        180.0,
        help="a user with no interaction in this many days before the test period is cold-start",
        above=0,
    )
    user_long_tail_max: int = option(35, help="1..35 interactions in the look-back window: long-tail", least=1)
    item_window_days: float = option(
        7.0,
        help="an item's conversions are counted over this many days before the test period",
        above=0,
    )
    item_long_tail_max: int = option(30, help="at most 30 conversions in the window (and at least one ever)", least=1)


@dataclass
class TestPeriod:
    in_test: np.ndarray  # [events] bool
    snapshot: pd.Series  # user_id -> first ts of the user's test period (NEVER if none)
    start_ts: int | None  # the common start (kind time)
    description: str

    def user_snapshot(self, user_ids: pd.Series | np.ndarray) -> np.ndarray:
        return self.snapshot.reindex(np.asarray(user_ids)).fillna(NEVER).to_numpy(dtype=float)

    def new_items(self, events: pd.DataFrame) -> set[str]:
        """Items new in the test period: every event of theirs lies in it (`events` aligned with `in_test`),
        so nothing built before the period may know them; production embeds such an item from its text."""
        if len(events) != len(self.in_test):
            raise ValueError("new_items: events are not the ones the test period was placed on")
        ids = events["item_id"].astype(str)
        return set(ids[self.in_test].unique()) - set(ids[~self.in_test].unique())


def validation_start(ts: np.ndarray, valid_fraction: float) -> int:
    """Where a ranker's validation slice begins: the newest `valid_fraction` of its training rows' times."""
    return int(np.quantile(np.asarray(ts), 1 - valid_fraction, method="higher"))


def start_position(events: int, quantile: float) -> int:
    """The 0-based position in ascending order of the value `np.quantile(values, quantile, method="higher")`
    takes from `events` values (numpy's own arithmetic), for an engine that finds it without the values."""
    return int(np.ceil((events - 1) * np.float64(quantile)))


def test_period(events: pd.DataFrame, config: TestPeriodConfig, start_ts: int | None = None) -> TestPeriod:
    """The test period of `events`. `start_ts`: the start of kind `time` when it was found over more events
    than these (one bucket of users of a bucketed split)."""
    if events.empty:
        raise DataError("no events: the test period cannot be placed")
    users = events["user_id"].unique()
    if config.kind == "time":
        start = (
            config.start_ts
            if config.start_ts is not None
            else start_ts
            if start_ts is not None
            else int(np.quantile(events["ts"].to_numpy(), config.start_quantile, method="higher"))
        )
        snapshot = pd.Series(float(start), index=users)
        in_test = events["ts"].to_numpy() >= start
        how = f"events from ts {start} on" + (
            "" if config.start_ts is not None else f" (the {config.start_quantile:g} quantile of event times)"
        )
        return TestPeriod(in_test, snapshot, int(start), how)
    if "split" not in events.columns:
        raise DataError("test_period.kind 'split' needs a 'split' column in events (e.g. the unisrec importer)")
    in_test = (events["split"] == "test").to_numpy()
    snapshot = events[in_test].groupby("user_id")["ts"].min().astype(float)
    return TestPeriod(
        in_test,
        snapshot,
        None,
        "the events the dataset's split column marks 'test' (each user's period starts at their first test event)",
    )
