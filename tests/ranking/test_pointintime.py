"""The point-in-time join: a sample reads only a user snapshot built from events before it."""

import numpy as np
import pandas as pd
import pytest

from export.snapshots import snapshot_histories
from export.tables import EmbeddingTable
from learnkit.core.errors import DataError
from ranking.pointintime import NONE, join_user_snapshots, learn_columns, vector_coverage


def test_event_refreshes_cover_every_row_with_an_earlier_event():
    # the same events refreshed after each event: u valid from 2 (x), 6 (x, y), 13 (x, y, z); v from 16 (x);
    # partitions of 10 from the first event (ts 1): as_of 1 for 2 and 6, 11 for 13 and 16
    events = pd.DataFrame(
        {"user_id": ["u", "u", "u", "v"], "item_id": ["x", "y", "z", "x"], "ts": [1, 5, 12, 15], "label": [1, 1, 1, 1]}
    )
    snapshots = snapshot_histories(events, "event", 50, positives_only=True, partition_every=10)
    # user, valid_from, history_end, as_of, and how many of the user's events each row sees
    assert snapshots.rows.values.tolist() == [
        ["u", 2, 1, 1, 1],
        ["u", 6, 5, 1, 2],
        ["u", 13, 12, 11, 3],
        ["v", 16, 15, 11, 1],
    ]
    assert snapshots.histories == [["x"], ["x", "y"], ["x", "y", "z"], ["x"]]
    rows = snapshots.rows
    table = EmbeddingTable(
        rows.user_id.tolist(),
        np.eye(4, 2, dtype=np.float32),
        np.ones(4, bool),
        None,
        rows.valid_from.to_numpy(),
        rows.history_end.to_numpy(),
        rows.as_of.to_numpy(),
    )
    # u at 5 reads the row after its event at 1 (not the one holding 5 itself); u at 12 reads 6; v at 15 has no
    # earlier event, v at 16 has one
    samples = pd.DataFrame({"user_id": ["u", "u", "u", "v", "v"], "ts": [1, 5, 12, 15, 16], "item_id": ["x"] * 5})
    joined = join_user_snapshots(samples, table)
    assert joined["snapshot"].tolist() == [NONE, 0, 1, NONE, 3]
    assert joined["history_end"].tolist() == [NONE, 1, 5, NONE, 15]


def test_a_hand_built_case_where_leakage_would_change_rows():
    # u buys x at 1, y at 5, z at 12; v buys x at 15. Snapshots every 10 from ts 1: u at 11 (x, y; newest 5)
    # and 21 (x, y, z; newest 12), v at 21 (x; newest 15).
    events = pd.DataFrame(
        {"user_id": ["u", "u", "u", "v"], "item_id": ["x", "y", "z", "x"], "ts": [1, 5, 12, 15], "label": [1, 1, 1, 1]}
    )
    snapshots = snapshot_histories(events, 10, 50, positives_only=True, partition_every=10)
    assert snapshots.rows.values.tolist() == [["u", 11, 5, 11, 2], ["u", 21, 12, 21, 3], ["v", 21, 15, 21, 1]]
    assert snapshots.histories == [["x", "y"], ["x", "y", "z"], ["x"]]
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    table = EmbeddingTable(
        snapshots.rows.user_id.tolist(),
        vectors,
        np.ones(3, bool),
        np.array([9.0, 9.0], np.float32),
        snapshots.rows.valid_from.to_numpy(),
        snapshots.rows.history_end.to_numpy(),
        snapshots.rows.as_of.to_numpy(),
    )
    # rows out of time order, as samples come: u at 5 (no snapshot yet: the one from 11 holds its own event),
    # u at 11 (exactly at a snapshot: built from events before 11), u at 12 (still 11: 21 holds this event),
    # u at 30, v at 16 (nothing yet), w (never seen)
    samples = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "v", "w"],
            "ts": [12, 5, 11, 30, 16, 40],
            "item_id": ["z", "y", "q", "q", "x", "x"],
        }
    )
    joined = join_user_snapshots(samples, table)
    assert joined["snapshot"].tolist() == [0, NONE, 0, 1, NONE, NONE]
    assert joined["valid_from"].tolist() == [11, NONE, 11, 21, NONE, NONE]
    has = joined["snapshot"].to_numpy() >= 0
    assert (joined["history_end"].to_numpy()[has] < samples["ts"].to_numpy()[has]).all()
    columns = learn_columns(
        samples,
        table,
        np.array(["x", "y", "z"]),
        np.eye(3, 2, dtype=np.float32),
        np.ones(3),
        np.array([7.0, 7.0], np.float32),
    )
    assert columns["user_learn"].tolist() == [[1, 0], [9, 9], [1, 0], [0, 1], [9, 9], [9, 9]]
    assert columns["user_has_embedding"].tolist() == [1, 0, 1, 1, 0, 0]
    assert columns["item_learn"].tolist() == [[0, 0], [0, 1], [7, 7], [7, 7], [1, 0], [1, 0]]
    assert columns["item_has_embedding"].tolist() == [1, 1, 0, 0, 1, 1]


def test_vector_coverage_counts_real_vectors_and_rows_awaiting_their_first_snapshot():
    # four rows, the last three test: u at 5 and 12 with snapshots (valid 2 and 6, history to 1 and 5); v at 15
    # has no earlier event (no vector, nothing to wait for); w at 9 has an event at 3 but no snapshot yet
    rows = pd.DataFrame(
        {"user_id": ["u", "u", "v", "w"], "ts": [5, 12, 15, 9], "part": ["train", "test", "test", "test"]}
    )
    joined = pd.DataFrame(
        {"snapshot": [0, 1, NONE, NONE], "valid_from": [2, 6, NONE, NONE], "history_end": [1, 5, NONE, NONE]}
    )
    columns = {"user_has_embedding": np.array([1, 1, 0, 0], dtype=np.float32)}
    history = pd.DataFrame({"user_id": ["u", "u", "w"], "ts": [1, 5, 3]})
    # the one-snapshot table has u (with history) and w (a fallback row)
    single_ids, single_flags = np.array([b"u", b"w"]), np.array([1.0, 0.0], dtype=np.float32)
    is_test = (rows["part"] == "test").to_numpy()
    coverage = vector_coverage(rows, is_test, columns, joined, single_ids, single_flags, history)
    assert coverage["test_rows_with_user_vector"] == pytest.approx(1 / 3)  # float32 flags
    assert coverage["test_rows_with_user_vector_single_snapshot"] == pytest.approx(1 / 3)
    assert coverage["test_rows_with_history_and_vector"] == 1 / 2  # u at 12 has one, w at 9 waits
    assert coverage["test_rows_awaiting_first_snapshot"] == 1 / 3
    assert coverage["train_rows_with_user_vector"] == 1.0


def test_vector_coverage_refuses_a_vector_built_from_its_own_row_or_later():
    rows = pd.DataFrame({"user_id": ["u"], "ts": [5]})
    joined = pd.DataFrame({"snapshot": [0], "valid_from": [2], "history_end": [5]})  # holds the event at 5 itself
    with pytest.raises(DataError, match="leakage"):
        vector_coverage(
            rows, np.array([True]), {"user_has_embedding": np.ones(1)}, joined, np.array([b"u"]), np.ones(1), rows
        )
