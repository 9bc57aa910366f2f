"""User and item segments of paper table 7, relative to the test period's start (pandas only).

`snapshot` gives, per event row, the start of that event's user's test period (one time for everyone with
a time-based period; each user's own with a leave-one-out split), so every window ends where the user's
test period begins.

Users: cold-start (no interaction of any kind in the look-back window), long-tail (1 to
`user_long_tail_max` interactions), others. Items: cold-start (no conversion before the test period),
long-tail (at most `item_long_tail_max` conversions in the last window, and at least one ever), others.
Beside them, items new in the test period (every event of theirs in it: a subset of cold-start items, whose
LEARN vectors the ranker embeds from text) are a slice of their own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from learnkit.data.period import SegmentConfig

SEGMENTS = ("cold_start", "long_tail", "others")
NEW_ITEMS = "new_in_test_period"  # an item slice beside SEGMENTS (it overlaps cold_start)


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
    rows: pd.DataFrame,
    events: pd.DataFrame,
    snapshot: np.ndarray,
    config: SegmentConfig,
    day_seconds: int,
    new_items: set[str] | None = None,
) -> pd.DataFrame:
    """`rows` with `user_segment` and `item_segment` columns added, and `item_new` (the item is in `new_items`)
    when given."""
    users = user_segments(events, snapshot, rows["user_id"].unique(), config, day_seconds)
    items = item_segments(events, snapshot, rows["item_id"].unique(), config, day_seconds)
    out = rows.assign(
        user_segment=users.reindex(rows["user_id"]).to_numpy(), item_segment=items.reindex(rows["item_id"]).to_numpy()
    )
    if new_items is not None:
        out["item_new"] = rows["item_id"].astype(str).isin(new_items).to_numpy()
    return out


def segment_masks(rows: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """kind (user, item) -> segment -> [rows] bool: the three segments of each kind, and the items new in the
    test period where `rows` mark them."""
    masks = {kind: {s: (rows[f"{kind}_segment"] == s).to_numpy() for s in SEGMENTS} for kind in ("user", "item")}
    if "item_new" in rows.columns:
        masks["item"][NEW_ITEMS] = rows["item_new"].to_numpy(dtype=bool)
    return masks
