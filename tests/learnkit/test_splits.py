import pandas as pd
import pytest

from learnkit.errors import DataError
from learnkit.importers import load_dataset, validate
from learnkit.schema import ValidationRules
from learnkit.splits import SplitConfig, make_split


def events_of(sequences: dict[str, list[tuple[str, int]]]) -> pd.DataFrame:
    rows = [(u, i, ts, 1) for u, seq in sequences.items() for i, ts in seq]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "label"])


EVENTS = events_of({
    "a": [("i1", 10), ("i2", 20), ("i3", 30), ("i4", 40), ("i5", 50)],
    "b": [("i3", 15), ("i1", 25), ("i6", 35)],
    "c": [("i7", 60), ("i8", 70)],
})


def test_temporal_user_fraction_by_hand():
    examples, stats = make_split(EVENTS.sample(frac=1, random_state=1), SplitConfig(
        kind="temporal", boundary="user_fraction", target_fraction=0.4, test_users=0.3, valid_users=0.0))
    by_user = examples.set_index("user_id")
    assert by_user.loc["a", "history"] == ["i1", "i2", "i3"] and by_user.loc["a", "target"] == ["i4", "i5"]
    assert by_user.loc["b", "history"] == ["i3", "i1"] and by_user.loc["b", "target"] == ["i6"]
    assert by_user.loc["c", "history"] == ["i7"] and by_user.loc["c", "target"] == ["i8"]
    assert stats["users_skipped"] == 0


def test_temporal_caps_keep_newest_history_and_oldest_targets():
    examples, _ = make_split(EVENTS, SplitConfig(kind="temporal", target_fraction=0.4, history_max=2, target_max=1))
    a = examples.set_index("user_id").loc["a"]
    assert a["history"] == ["i2", "i3"] and a["target"] == ["i4"]


def test_temporal_global_time():
    examples, stats = make_split(EVENTS, SplitConfig(kind="temporal", boundary="global_time", cutoff_ts=30))
    by_user = examples.set_index("user_id")
    assert stats["cutoff_ts"] == 30 and stats["users_skipped"] == 1  # c has nothing before 30
    assert by_user.loc["a", "history"] == ["i1", "i2"] and by_user.loc["a", "target"] == ["i3", "i4", "i5"]
    assert by_user.loc["b", "target"] == ["i6"]


def test_leave_one_out_never_trains_on_evaluated_positions():
    examples, _ = make_split(EVENTS, SplitConfig(kind="leave_one_out", target_fraction=0.4))
    a = examples[examples.user_id == "a"].set_index("part")
    assert a.loc["test", "history"] == ["i1", "i2", "i3", "i4"] and a.loc["test", "target"] == ["i5"]
    assert a.loc["valid", "history"] == ["i1", "i2", "i3"] and a.loc["valid", "target"] == ["i4"]
    assert a.loc["train", "history"] == ["i1", "i2"] and a.loc["train", "target"] == ["i3"]
    b = examples[examples.user_id == "b"]
    assert set(b["part"]) == {"valid", "test"}  # one training item: no training example, nothing leaks
    assert "c" not in set(examples.user_id)


def test_temporal_users_are_disjoint_and_deterministic(shared_data):
    events = validate(load_dataset("ml-100k", shared_data / "ml-100k", {}), ValidationRules()).events
    config = SplitConfig(kind="temporal", valid_users=0.1, test_users=0.2)
    examples, stats = make_split(events, config)
    parts = examples.groupby("part")["user_id"].apply(set)
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["valid"])
    assert stats["train_examples"] + stats["valid_examples"] + stats["test_examples"] == 943
    assert 0.15 < stats["test_examples"] / 943 < 0.25
    again, _ = make_split(events.sample(frac=1, random_state=3), config)
    assert again.sort_values("user_id").reset_index(drop=True).equals(examples.sort_values("user_id").reset_index(drop=True))
    # every history event of a user comes no later than its first target event
    ts = events.groupby(["user_id", "item_id"])["ts"].min()
    for row in examples.head(100).itertuples():
        assert max(ts[(row.user_id, i)] for i in row.history) <= min(ts[(row.user_id, i)] for i in row.target)


def test_given_split_of_scientific(shared_data):
    events = validate(load_dataset("unisrec", shared_data / "amazon18-scientific-unisrec", {}),
                      ValidationRules()).events
    examples, stats = make_split(events, SplitConfig(kind="given", history_max=50))
    assert stats["test_examples"] == stats["valid_examples"] == 8_442
    seq = events[events.user_id == "0"].sort_values("ts")["item_id"].tolist()
    user0 = examples[examples.user_id == "0"].set_index("part")
    assert user0.loc["test", "target"] == [seq[-1]] and user0.loc["test", "history"] == seq[:-1]
    assert user0.loc["valid", "target"] == [seq[-2]]
    assert seq[-2] not in user0.loc["train", "history"] + user0.loc["train", "target"]


def test_given_split_needs_the_column():
    with pytest.raises(DataError, match="needs a 'split' column"):
        make_split(EVENTS, SplitConfig(kind="given"))


def test_train_cuts_add_earlier_examples_without_touching_evaluated_items():
    examples, _ = make_split(EVENTS, SplitConfig(kind="leave_one_out", target_fraction=0.4, train_cuts=3))
    a = examples[(examples.user_id == "a") & (examples.part == "train")]
    assert a[["history", "target"]].values.tolist() == [[["i1", "i2"], ["i3"]], [["i1"], ["i2"]]]
    temporal, _ = make_split(EVENTS, SplitConfig(kind="temporal", target_fraction=0.4, train_cuts=2,
                                                 test_users=0.01, valid_users=0.0))
    a = temporal[temporal.user_id == "a"]
    assert set(a.part) == {"train"}
    assert a[["history", "target"]].values.tolist() == [[["i1", "i2", "i3"], ["i4", "i5"]], [["i1"], ["i2", "i3"]]]
