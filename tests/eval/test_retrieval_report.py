"""The retrieval comparison's evaluation: hand-computed intervals, the paired difference and the
below-popularity check."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from eval.intervals import user_resamples
from eval.retrieval_report import below_popularity, retrieval_report, with_intervals


@dataclass
class Settings:
    ks: list = field(default_factory=lambda: [10])
    exclude_history: bool = True
    monitor_metric: str = "N@10"
    interval_metrics: list = field(default_factory=lambda: ["N@10"])
    compare_to: str = "m"
    bootstrap: int = 50


def frame(users, values):
    return pd.DataFrame({"user_id": users, "N@10": values})


def test_a_tie_with_popularity_counts_as_below_it():
    metrics = {
        "popularity": {"N@10": 0.2, "R@50": 0.5},
        "a": {"N@10": 0.2, "R@50": 0.6},
        "b": {"N@10": 0.3, "R@50": 0.4},
        "c": {"N@10": 0.3, "R@50": 0.6},
    }
    assert below_popularity(metrics, ["a", "b", "c", "missing"], ["N@10", "R@50"]) == {"a": ["N@10"], "b": ["R@50"]}


def test_intervals_share_one_set_of_resamples_and_pair_each_difference_on_the_same_users():
    users = ["u1", "u2", "u3", "u4"]
    pop, m = np.array([0.0, 0.0, 1.0, 0.0]), np.array([1.0, 0.5, 1.0, 0.0])
    per_user = {"popularity": frame(users, pop), "random": frame(users, np.zeros(4)), "m": frame(users, m)}
    metrics = {"popularity": {"N@10": 0.25}, "random": {"N@10": 0.0}, "m": {"N@10": 0.625}}
    out = with_intervals(metrics, per_user, ("popularity", "random"), ["m"], Settings(), seed=3)
    weights = user_resamples(4, 50, 3)
    replicates = weights @ (pop - m) / weights.sum(1)
    difference = out["popularity"]["ci"]["vs_m"]["N@10"]
    assert difference["value"] == pytest.approx(-0.375)
    assert difference["ci_low"] == pytest.approx(np.percentile(replicates, 2.5))
    assert difference["ci_high"] == pytest.approx(np.percentile(replicates, 97.5))
    assert out["m"]["ci"]["N@10"]["value"] == pytest.approx(0.625) and "vs_m" not in out["m"]["ci"]
    assert out["random"]["ci"]["N@10"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert out["below_popularity"] == {}


def test_a_method_scored_on_fewer_users_is_compared_on_those_users_only():
    everyone, fewer = ["u1", "u2", "u3"], ["u3", "u1"]
    per_user = {
        "popularity": frame(everyone, [0.0, 1.0, 0.0]),
        "random": frame(everyone, [0.0, 0.0, 0.0]),
        "m": frame(everyone, [0.5, 0.5, 0.5]),
        "sub": frame(fewer, [1.0, 1.0]),
    }
    metrics = {name: {"N@10": float(f["N@10"].mean())} for name, f in per_user.items()}
    out = with_intervals(metrics, per_user, ("popularity", "random"), ["m", "sub"], Settings(), seed=0)
    assert out["sub"]["ci"]["vs_m"]["N@10"]["value"] == pytest.approx(0.5)  # u3 and u1: 1 - 0.5 each


def test_the_report_names_the_rows_below_popularity_and_marks_differences_that_exclude_zero():
    row = {
        "H@10": 0.1, "R@10": 0.1, "N@10": 0.1, "cold_items": {"users": 0, "R@10": float("nan"), "N@10": float("nan")}
    }  # fmt: skip
    metrics = {
        "split": {"kind": "temporal", "train_examples": 5, "valid_examples": 1, "test_examples": 2, "users_skipped": 0},
        "gallery_items": 9,
        "test_users": 2,
        "cold_items_in_catalog": 0,
        "popularity": {**row, "ci": {"N@10": {"value": 0.1, "ci_low": 0.05, "ci_high": 0.2}}},
        "m": {
            **row,
            "ci": {"N@10": {"value": 0.1, "ci_low": 0.05, "ci_high": 0.2}},
        },
        "n": {
            **row,
            "ci": {
                "N@10": {"value": 0.1, "ci_low": 0.05, "ci_high": 0.2},
                "vs_m": {"N@10": {"value": 0.02, "ci_low": 0.01, "ci_high": 0.03}},
            },
        },
        "below_popularity": {"m": ["N@10"]},
    }
    text = retrieval_report(metrics, ("popularity",), ["m", "n"], Settings(), curves="pch/curves.png")
    assert "**Below popularity**" in text and "`m` on N@10" in text
    assert "| n | 0.1000 [0.0500, 0.2000] | +0.0200 [+0.0100, +0.0300] * |" in text
    assert text.endswith("![training curves](pch/curves.png)\n")


def test_period_intervals_compare_the_new_item_slice_with_random_on_the_users_who_have_one():
    from eval.retrieval_report import with_period_intervals

    users = ["u1", "u2", "u3"]

    def period_frame(everyone, new):  # `cold_` columns: NaN for a user without a new-item target
        return pd.DataFrame({"user_id": users, "N@10": everyone, "cold_N@10": new})

    per_user = {
        "popularity": period_frame([0.5, 0.0, 0.0], [0.0, np.nan, 0.0]),
        "random": period_frame([0.0, 0.0, 0.1], [0.25, np.nan, 0.0]),
        "m": period_frame([1.0, 0.5, 0.0], [1.0, np.nan, 0.5]),
    }
    metrics = {name: {"test_period": {"N@10": 0.0, "new_items": {"users": 2}}} for name in per_user}
    out = with_period_intervals(metrics, per_user, ("popularity", "random"), ["m"], Settings(), seed=0)
    new = out["m"]["test_period"]["new_items"]["ci"]
    assert new["N@10"]["value"] == pytest.approx(0.75)  # u1 and u3 only
    assert new["vs_random"]["N@10"]["value"] == pytest.approx((1.0 - 0.25 + 0.5 - 0.0) / 2)
    assert out["m"]["test_period"]["ci"]["N@10"]["value"] == pytest.approx(0.5)
    assert "vs_random" not in out["random"]["test_period"]["new_items"]["ci"]
    assert with_period_intervals({}, {}, ("popularity", "random"), ["m"], Settings(), seed=0) == {}
