"""Ranking samples (framework-free): logged negatives on MovieLens, sampled exposures on implicit data."""

import re

import numpy as np
import pandas as pd
import pytest

from learnkit.core.errors import DataError
from learnkit.data.importers import load_dataset, validate
from learnkit.data.schema import ValidationRules
from ranking.config import RankingSamplesConfig
from ranking.samples import ranking_samples


def implicit_events():
    rows = [
        ("u1", "a", 1),
        ("u1", "b", 2),
        ("u2", "a", 3),
        ("u2", "c", 4),
        ("u3", "a", 5),
        ("u3", "b", 6),
        ("u4", "g", 2),
        ("u1", "c", 7),
        ("u2", "e", 8),
        ("u4", "f", 8),
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    events["label"], events["value"] = np.int8(1), 1.0
    items = pd.DataFrame({"item_id": list("abcdefg"), "price": [2.0, None, 5.0, 1.0, 3.0, 4.0, 6.0]})
    return events, items


def test_sampled_exposures_exist_at_their_time_and_are_not_yet_the_users():
    """By hand: training counts a 3, b 2, c 1, g 1; test counts c, e, f 1 each; items are first seen at
    a 1, b 2, g 2, c 4, e 8, f 8 (d never). At its positive's time a negative must already exist and not
    yet be the user's: (u1, a, 1) has no item before it, (u1, b, 2) only a (u1's own), in the test period
    only c exists before 8 and u1 and u2 have it: 4 of the 10 positives get no negative, 6 x 3 = 18 do."""
    events, items = implicit_events()
    samples = ranking_samples(
        events,
        items,
        events.ts.to_numpy() >= 7,
        config=RankingSamplesConfig(negatives_per_positive=3, valid_fraction=0.2),
        seed=0,
    )
    rows = samples.rows
    assert samples.negatives == "sampled"
    negatives = rows[rows.label == 0]
    assert len(negatives) == 18 and "12 draws given up (no such item found in 50 tries)" in samples.description
    first_seen = events.groupby("item_id").ts.min()
    owned_since = events.groupby(["user_id", "item_id"]).ts.min()
    for user, item, ts in zip(negatives.user_id, negatives.item_id, negatives.ts, strict=True):
        assert first_seen[item] < ts, (user, item, ts)  # no item is a negative before it exists
        assert owned_since.get((user, item), 10**9) > ts, (user, item, ts)  # nor once the user had it
    assert set(negatives[(negatives.user_id == "u4") & (negatives.ts == 2)].item_id) == {"a"}
    # u3 buys b only at 6: at 5 it may still be an exposure that did not convert
    assert set(negatives[(negatives.user_id == "u3") & (negatives.ts == 5)].item_id) <= {"b", "c", "g"}
    assert set(negatives[negatives.part == "test"].item_id) == {"c"}
    assert "d" not in set(negatives.item_id)  # no event on d: never an exposure
    # a negative carries its positive's time and the item's price (1.0 where none) as value
    prices = {"a": 2.0, "b": 1.0, "c": 5.0, "e": 3.0, "f": 4.0, "g": 6.0}
    assert all(prices[i] == v for i, v in zip(negatives.item_id, negatives.value, strict=True))
    assert set(rows[rows.ts >= 7].part) == {"test"} and set(rows[rows.ts < 7].part) <= {"train", "valid"}
    again = ranking_samples(
        events, items, events.ts.to_numpy() >= 7, RankingSamplesConfig(negatives_per_positive=3, valid_fraction=0.2), 0
    )
    pd.testing.assert_frame_equal(rows, again.rows)


def test_popularity_exponent_zero_draws_uniformly_over_existing_items():
    # h has 9 events and t 1, both at ts 0; 400 users then each buy an item of their own
    users = [f"u{k}" for k in range(400)]
    events = pd.DataFrame(
        {
            "user_id": [f"x{k}" for k in range(10)] + users,
            "item_id": ["h"] * 9 + ["t"] + [f"p{k}" for k in range(400)],
            "ts": [0] * 10 + list(np.random.default_rng(0).integers(10, 100, 400)),
        }
    )
    events["label"], events["value"] = np.int8(1), 1.0
    items = pd.DataFrame({"item_id": ["h", "t"] + [f"p{k}" for k in range(400)]})
    share = {}
    for exponent in (1.0, 0.0):
        rows = ranking_samples(
            events,
            items,
            events.ts.to_numpy() >= 95,
            RankingSamplesConfig(negatives_per_positive=4, popularity_exponent=exponent),
            0,
        ).rows
        negatives = rows[(rows.label == 0) & rows.item_id.isin(["h", "t"]) & (rows.part != "test")]
        share[exponent] = (negatives.item_id == "h").mean()
    assert 0.85 < share[1.0] < 0.95 and 0.4 < share[0.0] < 0.6  # 9 / 10 and 1 / 2


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


def test_draws_that_find_no_item_are_counted_not_dropped_silently():
    events, items = implicit_events()
    events = pd.concat(
        [
            events,
            pd.DataFrame(
                {"user_id": ["u1"] * 3, "item_id": ["e", "f", "g"], "ts": [2, 3, 4], "label": np.int8(1), "value": 1.0}
            ),
        ],
        ignore_index=True,
    )
    samples = ranking_samples(
        events, items, events.ts.to_numpy() >= 7, RankingSamplesConfig(negatives_per_positive=2), 0
    )
    given_up = int(re.search(r"([0-9,]+) draws given up", samples.description).group(1))
    assert given_up > 0 and (samples.rows.label == 0).sum() + given_up == 2 * (samples.rows.label == 1).sum()


def test_a_given_split_marks_test_and_validation_and_negatives_follow_their_positive():
    events, items = implicit_events()
    split = np.where(events.ts >= 7, "test", np.where(events.ts == 6, "valid", "train"))
    samples = ranking_samples(
        events, items, split == "test", RankingSamplesConfig(negatives_per_positive=2), 0, in_valid=split == "valid"
    )
    rows = samples.rows
    assert set(rows[rows.ts >= 7].part) == {"test"} and set(rows[rows.ts == 6].part) == {"valid"}
    assert set(rows[rows.ts < 6].part) == {"train"} and (rows.part == "valid").sum() == 3


def test_ordinal_time_orders_only_each_users_own_positions():
    """Ordinal ts are positions in each user's own sequence: across users they order nothing, so no item is
    held back as not existing yet, while a user's own items stay excluded from their own position on."""
    events, items = implicit_events()
    rows = ranking_samples(
        events, items, events.ts.to_numpy() >= 7, RankingSamplesConfig(negatives_per_positive=3), 0, ordinal_time=True
    ).rows
    negatives = rows[rows.label == 0]
    assert len(negatives) > 18  # more than with the existence rule (see above)
    assert not negatives[(negatives.user_id == "u1") & (negatives.ts == 1)].empty  # a at 1: nothing "exists" yet
    owned_since = events.groupby(["user_id", "item_id"]).ts.min()
    for user, item, ts in zip(negatives.user_id, negatives.item_id, negatives.ts, strict=True):
        assert owned_since.get((user, item), 10**9) > ts
