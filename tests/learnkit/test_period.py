import numpy as np
import pandas as pd
import pytest

from learnkit.core.errors import DataError
from learnkit.data import period as periods
from learnkit.data.period import NEVER, TestPeriodConfig

EVENTS = pd.DataFrame(
    {
        "user_id": ["a", "a", "a", "b", "b", "c"],
        "ts": [1, 2, 3, 1, 2, 9],
        "split": ["train", "valid", "test", "valid", "test", "train"],
    }
)


def test_time_period_is_one_start_for_everyone():
    period = periods.test_period(EVENTS, TestPeriodConfig(start_ts=2))
    assert period.in_test.tolist() == [False, True, True, False, True, True]
    assert period.start_ts == 2 and period.user_snapshot(["a", "c", "new"]).tolist() == [2.0, 2.0, NEVER]
    quantile = periods.test_period(EVENTS, TestPeriodConfig(start_quantile=0.5))
    assert quantile.start_ts == 2 and "0.5 quantile" in quantile.description


def test_split_period_starts_at_each_users_own_test_event():
    period = periods.test_period(EVENTS, TestPeriodConfig(kind="split"))
    assert period.in_test.tolist() == [False, False, True, False, True, False]
    assert period.start_ts is None
    assert period.user_snapshot(np.array(["a", "b", "c"])).tolist() == [3.0, 2.0, NEVER]  # c has no test event
    with pytest.raises(DataError, match="needs a 'split' column"):
        periods.test_period(EVENTS.drop(columns="split"), TestPeriodConfig(kind="split"))


def test_an_item_is_new_in_the_test_period_when_every_event_of_it_lies_there():
    events = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "y", "z"], "ts": [1, 5, 1, 6]})
    period = periods.test_period(events, TestPeriodConfig(start_ts=5))
    assert period.new_items(events) == {"z"}  # y was seen before the period, x never in it
    with pytest.raises(ValueError, match="not the ones"):
        period.new_items(events.head(3))
