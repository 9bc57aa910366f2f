"""Ranking samples (framework-free): logged negatives on MovieLens, sampled exposures on implicit data."""

import numpy as np
import pandas as pd
import pytest

from learnkit.config import RankingSamplesConfig
from learnkit.errors import DataError
from learnkit.importers import load_dataset, validate
from learnkit.schema import ValidationRules
from ranking.samples import ranking_samples


def implicit_events():
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 3), ("u2", "c", 4), ("u3", "a", 5), ("u3", "b", 6),
            ("u4", "g", 2), ("u1", "c", 7), ("u2", "e", 8), ("u4", "f", 8)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    events["label"], events["value"] = np.int8(1), 1.0
    items = pd.DataFrame({"item_id": list("abcdefg"), "price": [2.0, None, 5.0, 1.0, 3.0, 4.0, 6.0]})
    return events, items


def test_sampled_exposures_skip_the_users_items_and_never_draw_items_without_events():
    events, items = implicit_events()
    samples = ranking_samples(events, items, events.ts.to_numpy() >= 7, config=RankingSamplesConfig(negatives_per_positive=3,
                                                                                        valid_fraction=0.2), seed=0)
    rows = samples.rows
    assert samples.negatives == "sampled"
    negatives = rows[rows.label == 0]
    assert len(negatives) == 3 * 10 and "given up" not in samples.description
    own = set(zip(events.user_id, events.item_id))
    assert not any((u, i) in own for u, i in zip(negatives.user_id, negatives.item_id))
    assert "d" not in set(negatives.item_id)  # no event on d: never an exposure
    # test negatives follow the test period's popularity: only c, e, f have test-period events
    assert set(negatives[negatives.part == "test"].item_id) <= {"c", "e", "f"}
    # a negative carries its positive's time and the item's price (1.0 where none) as value
    assert set(negatives.ts) <= set(events.ts)
    prices = {"a": 2.0, "b": 1.0, "c": 5.0, "e": 3.0, "f": 4.0, "g": 6.0}
    assert all(prices[i] == v for i, v in zip(negatives.item_id, negatives.value))
    assert set(rows[rows.ts >= 7].part) == {"test"} and set(rows[rows.ts < 7].part) <= {"train", "valid"}
    again = ranking_samples(events, items, events.ts.to_numpy() >= 7, RankingSamplesConfig(negatives_per_positive=3, valid_fraction=0.2), 0)
    pd.testing.assert_frame_equal(rows, again.rows)


def test_movielens_uses_its_logged_negatives(shared_data):
    data = validate(load_dataset("ml-100k", shared_data / "ml-100k", {"positive_min_rating": 4.0}), ValidationRules())
    events, items = data.events, data.items
    start = int(np.quantile(events.ts, 0.8, method="higher"))
    samples = ranking_samples(events, items, events.ts.to_numpy() >= start, RankingSamplesConfig(), seed=0)
    rows = samples.rows
    assert samples.negatives == "logged" and len(rows) == 100_000
    assert int(rows.label.sum()) == 55_375
    assert (rows[rows.part == "test"].ts >= start).all() and (rows[rows.part != "test"].ts < start).all()
    train = rows[rows.part != "test"]
    valid = rows[rows.part == "valid"]
    assert abs(len(valid) / len(train) - 0.1) < 0.01 and valid.ts.min() >= train[train.part == "train"].ts.max()


def test_clear_errors():
    events, items = implicit_events()
    with pytest.raises(DataError, match="have no label-0 rows"):
        ranking_samples(events, items, events.ts.to_numpy() >= 7, RankingSamplesConfig(negatives="logged"), 0)
    with pytest.raises(DataError, match="leaves no training or no test rows"):
        ranking_samples(events, items, events.ts.to_numpy() >= 100, RankingSamplesConfig(), 0)


def test_a_user_with_every_item_is_reported_not_dropped_silently():
    events, items = implicit_events()
    events = pd.concat([events, pd.DataFrame({"user_id": ["u1"] * 3, "item_id": ["e", "f", "g"], "ts": [2, 3, 4],
                                              "label": np.int8(1), "value": 1.0})], ignore_index=True)
    samples = ranking_samples(events, items, events.ts.to_numpy() >= 7, RankingSamplesConfig(negatives_per_positive=2), 0)
    assert "12 draws given up for users who have nearly every item" in samples.description
    assert "u1" not in set(samples.rows[samples.rows.label == 0].user_id)


def test_a_given_split_marks_test_and_validation_and_negatives_follow_their_positive():
    events, items = implicit_events()
    split = np.where(events.ts >= 7, "test", np.where(events.ts == 6, "valid", "train"))
    samples = ranking_samples(events, items, split == "test", RankingSamplesConfig(negatives_per_positive=2), 0,
                              in_valid=split == "valid")
    rows = samples.rows
    assert set(rows[rows.ts >= 7].part) == {"test"} and set(rows[rows.ts == 6].part) == {"valid"}
    assert set(rows[rows.ts < 6].part) == {"train"} and (rows.part == "valid").sum() == 3
