import pandas as pd
import pytest

from learnkit.core.errors import DataError
from learnkit.data.importers import load_dataset, validate
from learnkit.data.period import TestPeriodConfig
from learnkit.data.schema import ValidationRules
from learnkit.data.splits import SplitConfig, make_split, sequence_rows, split_around_period, training_item_counts


def events_of(sequences: dict[str, list[tuple[str, int]]]) -> pd.DataFrame:
    rows = [(u, i, ts, 1) for u, seq in sequences.items() for i, ts in seq]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "label"])


EVENTS = events_of(
    {
        "a": [("i1", 10), ("i2", 20), ("i3", 30), ("i4", 40), ("i5", 50)],
        "b": [("i3", 15), ("i1", 25), ("i6", 35)],
        "c": [("i7", 60), ("i8", 70)],
    }
)


def test_temporal_user_fraction_by_hand():
    examples, stats = make_split(
        EVENTS.sample(frac=1, random_state=1),
        SplitConfig(
            kind="temporal",
            boundary="user_fraction",
            target_fraction=0.4,
            test_users=0.3,
            valid_users=0.0,
            train_examples="cuts",
        ),
    )
    by_user = examples.set_index("user_id")
    assert by_user.loc["a", "history"] == ["i1", "i2", "i3"] and by_user.loc["a", "target"] == ["i4", "i5"]
    assert by_user.loc["b", "history"] == ["i3", "i1"] and by_user.loc["b", "target"] == ["i6"]
    assert by_user.loc["c", "history"] == ["i7"] and by_user.loc["c", "target"] == ["i8"]
    assert stats["users_skipped"] == 0


def test_temporal_caps_keep_newest_history_and_oldest_targets():
    examples, _ = make_split(
        EVENTS, SplitConfig(kind="temporal", target_fraction=0.4, history_max=2, target_max=1, train_examples="cuts")
    )
    a = examples.set_index("user_id").loc["a"]
    assert a["history"] == ["i2", "i3"] and a["target"] == ["i4"]


def test_temporal_global_time():
    examples, stats = make_split(
        EVENTS, SplitConfig(kind="temporal", boundary="global_time", cutoff_ts=30, train_examples="cuts")
    )
    by_user = examples.set_index("user_id")
    assert stats["cutoff_ts"] == 30 and stats["users_skipped"] == 1  # c has nothing before 30
    assert by_user.loc["a", "history"] == ["i1", "i2"] and by_user.loc["a", "target"] == ["i3", "i4", "i5"]
    assert by_user.loc["b", "target"] == ["i6"]


def test_leave_one_out_never_trains_on_evaluated_positions():
    examples, _ = make_split(EVENTS, SplitConfig(kind="leave_one_out", target_fraction=0.4, train_examples="cuts"))
    a = examples[examples.user_id == "a"].set_index("part")
    assert a.loc["test", "history"] == ["i1", "i2", "i3", "i4"] and a.loc["test", "target"] == ["i5"]
    assert a.loc["valid", "history"] == ["i1", "i2", "i3"] and a.loc["valid", "target"] == ["i4"]
    assert a.loc["train", "history"] == ["i1", "i2"] and a.loc["train", "target"] == ["i3"]
    b = examples[examples.user_id == "b"]
    assert set(b["part"]) == {"valid", "test"}  # one training item: no training example, nothing leaks
    assert "c" not in set(examples.user_id)


def test_temporal_users_are_disjoint_and_deterministic(shared_data):
    events = validate(load_dataset("ml-100k", shared_data / "ml-100k", {}), ValidationRules()).events
    config = SplitConfig(kind="temporal", valid_users=0.1, test_users=0.2, train_examples="cuts")
    examples, stats = make_split(events, config)
    parts = examples.groupby("part")["user_id"].apply(set)
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["valid"])
    assert stats["train_examples"] + stats["valid_examples"] + stats["test_examples"] == 943
    assert 0.15 < stats["test_examples"] / 943 < 0.25
    again, _ = make_split(events.sample(frac=1, random_state=3), config)
    assert (
        again.sort_values("user_id")
        .reset_index(drop=True)
        .equals(examples.sort_values("user_id").reset_index(drop=True))
    )
    # every history event of a user comes no later than its first target event
    ts = events.groupby(["user_id", "item_id"])["ts"].min()
    for row in examples.head(100).itertuples():
        assert max(ts[(row.user_id, i)] for i in row.history) <= min(ts[(row.user_id, i)] for i in row.target)


def test_given_split_of_scientific(shared_data):
    events = validate(
        load_dataset("unisrec", shared_data / "amazon18-scientific-unisrec", {}), ValidationRules()
    ).events
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
    examples, _ = make_split(
        EVENTS, SplitConfig(kind="leave_one_out", target_fraction=0.4, train_cuts=3, train_examples="cuts")
    )
    a = examples[(examples.user_id == "a") & (examples.part == "train")]
    assert a[["history", "target"]].values.tolist() == [[["i1", "i2"], ["i3"]], [["i1"], ["i2"]]]
    temporal, _ = make_split(
        EVENTS,
        SplitConfig(
            kind="temporal", target_fraction=0.4, train_cuts=2, test_users=0.01, valid_users=0.0, train_examples="cuts"
        ),
    )
    a = temporal[temporal.user_id == "a"]
    assert set(a.part) == {"train"}
    assert a[["history", "target"]].values.tolist() == [[["i1", "i2", "i3"], ["i4", "i5"]], [["i1"], ["i2", "i3"]]]


def test_sequence_rows_predict_every_next_item_once():
    seq = [f"i{n}" for n in range(1, 8)]
    rows = sequence_rows("u", seq, history_max=3)
    assert [(h, t) for _, h, t, _ in rows] == [
        (["i4", "i5", "i6"], ["i5", "i6", "i7"]),
        (["i1", "i2", "i3"], ["i2", "i3", "i4"]),
    ]
    targets = [i for _, _, t, _ in rows for i in t]
    assert sorted(targets) == seq[1:]  # every item after the first is a target exactly once


def test_sequence_is_the_default_and_never_trains_on_evaluated_items():
    examples, stats = make_split(EVENTS, SplitConfig(kind="leave_one_out"))
    assert stats["example_kind"] == "sequence"
    a = examples[examples.user_id == "a"].set_index("part")
    assert a.loc["train", "history"] == ["i1", "i2"] and a.loc["train", "target"] == ["i2", "i3"]
    assert a.loc["valid", "target"] == ["i4"] and a.loc["test", "target"] == ["i5"]
    counts = training_item_counts(examples, "sequence")
    assert counts.to_dict() == {"i1": 1, "i2": 1, "i3": 1}  # b has one training item: no sequence


def test_test_period_boundary_evaluates_every_user_with_history_before_it():
    events = events_of(
        {
            "a": [("i1", 10), ("i2", 20), ("i3", 30), ("i4", 40), ("i5", 50)],
            "b": [("i3", 15), ("i1", 25), ("i6", 45)],
            "c": [("i7", 60), ("i8", 70)],  # arrives during the test period: no history, not evaluated
            "d": [("i2", 5), ("i9", 12)],  # no test-period event: trains, is not evaluated
        }
    )
    in_test = events["ts"].to_numpy() >= 40
    config = SplitConfig(kind="temporal", boundary="test_period", valid_users=0.0)
    examples, stats = make_split(events, config, in_test)
    test = examples[examples.part == "test"].set_index("user_id")
    assert sorted(test.index) == ["a", "b"]
    assert test.loc["a", "history"] == ["i1", "i2", "i3"] and test.loc["a", "target"] == ["i4", "i5"]
    assert test.loc["b", "target"] == ["i6"]
    train = examples[examples.part == "train"]
    trained_on = {i for h, t in zip(train.history, train.target, strict=True) for i in h + t}
    assert trained_on == {"i1", "i2", "i3", "i9"}  # nothing from the test period
    assert stats["users_without_history"] == 1
    with pytest.raises(DataError, match="needs the run's test period"):
        make_split(events, config)


def test_test_period_validation_holds_out_the_users_last_events():
    events = events_of({f"u{n}": [(f"i{k}", 10 * k) for k in range(1, 7)] for n in range(40)})
    in_test = events["ts"].to_numpy() >= 60
    examples, _ = make_split(
        events, SplitConfig(kind="temporal", boundary="test_period", valid_users=0.3, target_fraction=0.4), in_test
    )
    valid = examples[examples.part == "valid"]
    assert 5 <= len(valid) <= 20
    for user in valid.user_id:
        rows = examples[examples.user_id == user].set_index("part")
        assert rows.loc["valid", "target"] == ["i4", "i5"]
        assert rows.loc["train", "history"] + rows.loc["train", "target"][-1:] == ["i1", "i2", "i3"]
        assert rows.loc["test", "history"] == ["i1", "i2", "i3", "i4", "i5"]


def test_user_fraction_can_evaluate_every_user_on_their_own_last_events():
    config = SplitConfig(
        kind="temporal", boundary="user_fraction", target_fraction=0.4, valid_users=0.0, evaluate_all_users=True
    )
    examples, _ = make_split(EVENTS, config)
    test = examples[examples.part == "test"].set_index("user_id")
    assert sorted(test.index) == ["a", "b", "c"]
    assert test.loc["a", "history"] == ["i1", "i2", "i3"] and test.loc["a", "target"] == ["i4", "i5"]
    assert test.loc["c", "history"] == ["i7"] and test.loc["c", "target"] == ["i8"]
    train = examples[examples.part == "train"].set_index("user_id")
    assert train.loc["a", "history"] == ["i1", "i2"] and train.loc["a", "target"] == ["i2", "i3"]
    assert "c" not in train.index  # one training item: nothing to predict


def test_a_split_before_the_test_period_never_sees_its_events():
    # test period from ts 45: a's i5 (50) and all of c (60, 70) fall in it
    period = TestPeriodConfig(start_ts=45)
    loo = SplitConfig(kind="leave_one_out", train_examples="cuts")
    examples, stats, seen = split_around_period(EVENTS, loo, period, before_period=True)
    assert sorted(seen["ts"]) == [10, 15, 20, 25, 30, 35, 40]
    inside = examples[examples.part != "period"]
    assert "trained_before" in stats and "c" not in set(inside["user_id"])
    assert inside.set_index(["user_id", "part"]).loc[("a", "test"), "target"] == ["i4"]
    # the period rows: each target in it with the history strictly before it, test-period events included
    period_rows = examples[examples.part == "period"]
    assert period_rows[["user_id", "history", "target"]].values.tolist() == [
        ["a", ["i1", "i2", "i3", "i4"], ["i5"]],
        ["c", ["i7"], ["i8"]],  # c's first event (60) has no history before it: no row
    ]
    assert stats["period_examples"] == 2 and stats["period_users"] == 2
    # boundary test_period: the targets are the test period's events, the history what came before
    on_period = SplitConfig(kind="temporal", boundary="test_period", train_examples="cuts")
    examples, stats, seen = split_around_period(EVENTS, on_period, period, before_period=False)
    test = examples[examples.part == "test"].set_index("user_id")
    assert test.loc["a", "history"] == ["i1", "i2", "i3", "i4"] and test.loc["a", "target"] == ["i5"]
    assert "test_period" in stats and seen["ts"].max() == 40
    # neither: the split sees everything
    assert len(split_around_period(EVENTS, loo, period, before_period=False)[2]) == len(EVENTS)


def test_towers_before_the_ranker_validation_slice_never_see_its_events():
    """The towers fitted on the very rows a ranker is chosen on make the LEARN features look better there than
    on the test period (configs/tuning/demo-ranker.yaml). With the ranker's validation share, the towers' events
    end where the ranker's validation rows begin: the same `validation_start` over the same events."""
    import numpy as np

    from learnkit.data.period import test_period, validation_start
    from ranking.config import RankingSamplesConfig
    from ranking.samples import ranking_samples

    events = pd.DataFrame(
        {
            "user_id": [f"u{k % 7}" for k in range(60)],
            "item_id": [f"i{k % 11}" for k in range(60)],
            "ts": 1_700_000_000 + np.arange(60) * 100,
            "label": [k % 2 for k in range(60)],
            "value": 1.0,
        }
    )
    period = TestPeriodConfig(start_quantile=0.8)
    config = SplitConfig(kind="temporal", boundary="user_fraction", evaluate_all_users=True)
    _, stats, seen = split_around_period(events, config, period, True, ranker_valid_fraction=0.25)
    in_test = test_period(events, period).in_test
    cutoff = validation_start(events.loc[~in_test, "ts"].to_numpy(), 0.25)
    assert seen["ts"].max() < cutoff and len(seen) == int((events["ts"] < cutoff).sum())
    assert f"before the ranker's validation slice (ts {cutoff} on)" in stats["trained_before"]
    samples = ranking_samples(
        events, pd.DataFrame({"item_id": []}), in_test, RankingSamplesConfig(valid_fraction=0.25), 0
    )
    assert samples.rows.loc[samples.rows["part"] == "valid", "ts"].min() == cutoff  # where the towers stop


def test_period_rows_keep_only_earlier_seconds_positives_and_the_newest_history():
    from learnkit.data.splits import period_examples

    events = events_of({"a": [("i1", 10), ("i2", 20), ("i3", 30), ("i4", 30), ("i5", 40)]})
    events.loc[events.item_id == "i2", "label"] = 0  # a negative: never history nor target with positives_only
    in_test = (events["ts"] >= 30).to_numpy()
    rows = period_examples(events, in_test, SplitConfig(history_max=1, positives_only=True))
    # i3 and i4 share a second: neither is the other's history; history_max 1 keeps the newest item only
    assert rows[["history", "target"]].values.tolist() == [[["i1"], ["i3"]], [["i1"], ["i4"]], [["i4"], ["i5"]]]
    assert set(rows["part"]) == {"period"}
