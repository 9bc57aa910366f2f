"""User and item segments of paper table 7, relative to the test period's start (pandas only).

`snapshot` gives, per event row, the start of that event's user's test period (one time for everyone with
a time-based period; each user's own with a leave-one-out split), so every window ends where the user's
test period begins.

Users: cold-start (no interaction of any kind in the look-back window), long-tail (1 to
`user_long_tail_max` interactions), others. Items: cold-start (no conversion before the test period),
long-tail (at most `item_long_tail_max` conversions in the last window, and at least one ever), others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from learnkit.data.period import SegmentConfig

SEGMENTS = ("cold_start", "long_tail", "others")


def _label(counts: np.ndarray, cold: np.ndarray, long_tail_max: int) -> np.ndarray:
    return np.where(cold, "cold_start", np.where(counts <= long_tail_max, "long_tail", "others"))


def user_segments(
    events: pd.DataFrame, snapshot: np.ndarray, users: np.ndarray, config: SegmentConfig, day_seconds: int
) -> pd.Series:
    ts = events["ts"].to_numpy()
    window = events[(ts >= snapshot - config.user_lookback_days * day_seconds) & (ts < snapshot)]
    counts = window["user_id"].value_counts().reindex(users, fill_value=0).to_numpy()
    return pd.Series(_label(counts, counts == 0, config.user_long_tail_max), index=users, name="user_segment")


def item_segments(
    events: pd.DataFrame, snapshot: np.ndarray, items: np.ndarray, config: SegmentConfig, day_seconds: int
) -> pd.Series:
    ts = events["ts"].to_numpy()
    converted_before = (events["label"] == 1).to_numpy() & (ts < snapshot)
    ever = events[converted_before]["item_id"].value_counts().reindex(items, fill_value=0).to_numpy()
    recent_rows = events[converted_before & (ts >= snapshot - config.item_window_days * day_seconds)]
    recent = recent_rows["item_id"].value_counts().reindex(items, fill_value=0).to_numpy()
    return pd.Series(_label(recent, ever == 0, config.item_long_tail_max), index=items, name="item_segment")


def segment_rows(
    rows: pd.DataFrame, events: pd.DataFrame, snapshot: np.ndarray, config: SegmentConfig, day_seconds: int
) -> pd.DataFrame:
    """`rows` with `user_segment` and `item_segment` columns added."""
    users = user_segments(events, snapshot, rows["user_id"].unique(), config, day_seconds)
    items = item_segments(events, snapshot, rows["item_id"].unique(), config, day_seconds)
    return rows.assign(
        user_segment=users.reindex(rows["user_id"]).to_numpy(), item_segment=items.reindex(rows["item_id"]).to_numpy()
    )
