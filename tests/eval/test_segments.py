"""Paper table 7 segments relative to the test period's start, on a hand-made log."""

import numpy as np
import pandas as pd

from eval.segments import item_segments, segment_rows, user_segments
from learnkit.data.period import SegmentConfig

DAY = 10
START = 1000


def log():
    rows = [("old", "x", 0, 1)]  # only outside the 3-day look-back
    rows += [("tail", "y", START - 2 * DAY, 0), ("tail", "y", START - DAY, 1)]  # 2 interactions
    rows += [("busy", "z", START - k, 1) for k in range(1, 6)]  # 5 recent conversions of z
    rows += [("busy", "x", START - 25 * DAY, 1)]  # x: converted, but long ago
    rows += [("new", "w", START + 1, 1)]  # w: first conversion in the test period
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "label"])


CONFIG = SegmentConfig(user_lookback_days=3, user_long_tail_max=2, item_window_days=3, item_long_tail_max=4)


def test_user_segments():
    got = user_segments(log(), np.full(len(log()), START), np.array(["old", "tail", "busy", "new"]), CONFIG, DAY)
    assert got.to_dict() == {"old": "cold_start", "tail": "long_tail", "busy": "others", "new": "cold_start"}


def test_item_segments():
    got = item_segments(log(), np.full(len(log()), START), np.array(["x", "y", "z", "w"]), CONFIG, DAY)
    # x: converted before (twice, long ago) -> 0 recent -> long tail; y: 1 recent; z: 5 > 4 -> others
    assert got.to_dict() == {"x": "long_tail", "y": "long_tail", "z": "others", "w": "cold_start"}


def test_segment_rows_adds_both_columns():
    rows = pd.DataFrame({"user_id": ["busy", "new"], "item_id": ["w", "z"]})
    got = segment_rows(rows, log(), np.full(len(log()), START), CONFIG, DAY)
    assert got[["user_segment", "item_segment"]].values.tolist() == [["others", "cold_start"], ["cold_start", "others"]]


def test_items_new_in_the_test_period_are_a_slice_beside_the_three_segments():
    from eval.segments import NEW_ITEMS, segment_masks

    rows = pd.DataFrame({"user_id": ["busy", "new", "tail"], "item_id": ["w", "z", "w"]})
    got = segment_rows(rows, log(), np.full(len(log()), START), CONFIG, DAY, new_items={"w"})
    assert got["item_new"].tolist() == [True, False, True]
    masks = segment_masks(got)
    assert masks["item"][NEW_ITEMS].tolist() == [True, False, True]
    assert masks["item"]["cold_start"].tolist() == [True, False, True]  # the new items overlap cold-start
    assert NEW_ITEMS not in segment_masks(got.drop(columns="item_new"))["item"]
