"""The test period of a run (framework-free): which events it holds and where each user's starts.

Every stage after the embeddings uses this one definition: the export embeds users from what came before,
the rankers train before it and are tested in it, the segments look back from it, the A/B test replays it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from learnkit.config import TestPeriodConfig
from learnkit.errors import DataError

NEVER = float("inf")  # the snapshot of a user with no test event: all their events come before


@dataclass
class TestPeriod:
    in_test: np.ndarray  # [events] bool
    snapshot: pd.Series  # user_id -> first ts of the user's test period (NEVER if none)
    start_ts: int | None  # the common start (kind time)
    description: str

    def user_snapshot(self, user_ids: pd.Series | np.ndarray) -> np.ndarray:
        return self.snapshot.reindex(np.asarray(user_ids)).fillna(NEVER).to_numpy(dtype=float)


def test_period(events: pd.DataFrame, config: TestPeriodConfig) -> TestPeriod:
    if events.empty:
        raise DataError("no events: the test period cannot be placed")
    users = events["user_id"].unique()
    if config.kind == "time":
        start = (
            config.start_ts
            if config.start_ts is not None
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
