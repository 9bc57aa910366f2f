"""The A/B simulator on synthetic traffic: stable arms, top-K per request, CUPED, a real lift found, and an
A/A check whose false-positive rate sits near 5%."""

import numpy as np
import pandas as pd
import pytest

from eval.ab import (
    add_requests,
    assign_arms,
    cuped,
    min_detectable_lift,
    request_resolution,
    run_ab,
    shown,
    widen_requests,
)
from eval.ab_report import ab_report, cannot_tell
from eval.config import AbConfig


def test_arms_are_stable_salted_and_sized():
    users = np.array([f"u{i}" for i in range(20_000)])
    arms = assign_arms(users, "s", 0.2, 0.2)
    again = assign_arms(users[::-1], "s", 0.2, 0.2).set_index("user_id").loc[users].reset_index()
    assert arms["arm"].tolist() == again["arm"].tolist()  # the same user, the same arm, whatever the order
    shares = arms["arm"].value_counts(normalize=True)
    assert abs(shares["control"] - 0.2) < 0.01 and abs(shares["treatment"] - 0.2) < 0.01
    other = assign_arms(users, "t", 0.2, 0.2)
    assert (other["arm"] != arms["arm"]).mean() > 0.3  # another salt, another split


def test_shown_takes_each_requests_top_k_with_ties_by_item_id():
    rows = pd.DataFrame(
        {
            "request": [0, 0, 0, 0, 1, 1],
            "item_id": ["d", "c", "b", "a", "x", "y"],
            "score": [0.1, 0.5, 0.5, 0.9, 0.2, 0.3],
        }
    )
    assert shown(rows, "score", 2).tolist() == [False, False, True, True, True, True]


def test_cuped_removes_the_variance_explained_by_the_pre_period():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.0, 5000)
    y = 2 * x + rng.normal(0, 0.5, 5000)
    adjusted = cuped(y, x)
    assert abs(adjusted.mean() - y.mean()) < 1e-9 and adjusted.var() < 0.1 * y.var()


def traffic(n_users=600, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for day in range(3):
            for k in range(8):
                item = int(rng.integers(0, 40))
                rows.append((f"u{u}", f"i{item}", 1000 + day * 100 + k, int(rng.random() < 0.3)))
    rows = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "label"]).drop_duplicates(
        ["user_id", "item_id", "ts"]
    )
    rows["snapshot"] = 1000.0
    rows["value"] = 1.0 + (rows["item_id"].str[1:].astype(int) % 3)
    rows["baseline"] = rng.random(len(rows))
    rows["learn"] = rows["label"] * 0.5 + rng.random(len(rows))  # knows the outcome: a real lift
    rows["user_segment"] = np.where(rows["user_id"].str[1:].astype(int) % 2 == 0, "long_tail", "others")
    rows["item_segment"] = np.where(rows["item_id"].str[1:].astype(int) < 5, "cold_start", "long_tail")
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(40)], "category": [f"c{k % 4}" for k in range(40)]})
    pre = pd.Series(rng.gamma(2.0, 1.0, n_users), index=[f"u{u}" for u in range(n_users)])
    return rows, items, pre


def test_a_better_ranker_wins_and_the_aa_check_is_calibrated():
    rows, items, pre = traffic()
    config = AbConfig(control_share=0.5, treatment_share=0.5, top_k=3, simulated_seeds=3, bootstrap=400, aa_runs=200)
    result = run_ab(rows, rows[["user_id", "item_id", "label"]], items, pre, 100, config, seed=0)
    replay = result["replay"]
    assert replay["revenue_lift"] > 0.1 and replay["ci_low"] > 0 and replay["p_value"] < 0.01
    assert replay["cvr_lift"] > 0.1 and replay["cvr_ci_low"] > 0
    assert result["days"] == 3 and len(replay["daily"]) == 3
    assert set(replay["segments"]["user"]) == {"cold_start", "long_tail", "others"}
    assert replay["segments"]["item"]["cold_start"]["share"] == (rows["item_segment"] == "cold_start").mean()
    assert 0.02 <= replay["aa"]["false_positive_rate"] <= 0.09 and replay["aa"]["runs"] == 200
    assert 0.02 <= result["simulated"]["aa"]["false_positive_rate"] <= 0.09
    assert set(result["assignment"]["arm"]) == {"control", "treatment"}


def test_widened_candidates_are_new_to_their_request_and_only_the_simulation_sees_them():
    rows, items, pre = traffic(n_users=200)
    requests = add_requests(rows, 100)
    extra = widen_requests(requests, items["item_id"].to_numpy(), 4, seed=0)
    assert len(extra) == 4 * requests["request"].nunique()
    logged = set(zip(requests.user_id, requests.ts // 100, requests.item_id, strict=True))
    assert not any((u, t // 100, i) in logged for u, t, i in zip(extra.user_id, extra.ts, extra.item_id, strict=True))
    pd.testing.assert_frame_equal(extra, widen_requests(requests, items["item_id"].to_numpy(), 4, seed=0))
    # the widened items score highest for both arms: replay must not change, the simulation must
    widened = extra.assign(
        label=np.nan, value=1.0, baseline=2.0, learn=2.0, user_segment="others", item_segment="long_tail", widened=True
    )
    config = AbConfig(control_share=0.5, treatment_share=0.5, top_k=3, simulated_seeds=2, bootstrap=50, aa_runs=5)
    samples = rows[["user_id", "item_id", "label"]]
    plain = run_ab(rows, samples, items, pre, 100, config, seed=0)
    wide = run_ab(
        pd.concat([rows.assign(widened=False), widened], ignore_index=True), samples, items, pre, 100, config, seed=0
    )
    assert wide["widened_candidates"] == len(extra) and plain["widened_candidates"] == 0
    assert wide["replay"]["revenue_lift"] == plain["replay"]["revenue_lift"]
    assert wide["simulated"]["revenue_per_user"] != plain["simulated"]["revenue_per_user"]


def test_min_detectable_lift_by_hand():
    # values 1 and 3: mean 2, sd sqrt(2); arms of 100: sd * sqrt(1/100 + 1/100) = 0.2
    # (1.959964 + 0.841621) * 0.2 / 2 = 0.2801585
    values = np.array([1.0, 3.0] * 50)
    assert min_detectable_lift(values[:2], 100, 100) == pytest.approx(0.2801585, abs=1e-6)
    assert np.isnan(min_detectable_lift(np.zeros(4), 100, 100))  # no revenue: nothing to resolve


def test_a_test_that_re_ranking_cannot_change_says_so():
    frame = pd.DataFrame({"request": [0, 1, 2, 2, 2, 3, 3, 3, 3, 3]})
    assert request_resolution(frame, top_k=3) == {
        "single_candidate_share": 0.5,
        "rerankable_share": 0.25,
        "candidates_per_request": {"mean": 2.5, "median": 2.0},
    }
    rows, items, pre = traffic()
    config = AbConfig(control_share=0.5, treatment_share=0.5, top_k=50, simulated_seeds=1, bootstrap=50, aa_runs=5)
    result = run_ab(rows, rows[["user_id", "item_id", "label"]], items, pre, 100, config, seed=0)
    assert result["replay"]["rerankable_share"] == 0.0 and cannot_tell(result["replay"])
    assert 0 < result["replay"]["min_detectable_lift"] < 1
    text = ab_report(result, None, None, 50, (0.5, 0.5))
    assert "replay: this test cannot tell: re-ranking can change only 0% of the requests" in text
    assert "min. detectable revenue lift (80% power)" in text
