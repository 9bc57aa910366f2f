"""Two-model comparison: point figures equal the one-pass metrics, bootstrap replicates are weighted
figures (checked against duplicating rows by hand), and identical models give a zero interval."""

import numpy as np

from eval.compare import _WeightedAuc, compare_models
from eval.metrics import auc, user_auc

USERS = np.array(["a", "a", "a", "b", "b", "b", "b", "c", "d"])
LABELS = np.array([1, 0, 0, 1, 1, 0, 0, 1, 0])
SCORE_A = np.array([0.9, 0.5, 0.9, 0.3, 0.7, 0.3, 0.1, 0.5, 0.2])
SCORE_B = np.array([0.9, 0.5, 0.1, 0.3, 0.7, 0.2, 0.1, 0.5, 0.2])


def test_weighted_auc_equals_auc_of_duplicated_rows():
    weights = np.array([[2, 1, 0, 1, 3, 1, 1, 0, 2]], dtype=float)
    repeated = np.repeat(np.arange(len(LABELS)), weights[0].astype(int))
    got = _WeightedAuc(LABELS, SCORE_A)(weights)[0]
    assert abs(got - auc(LABELS[repeated], SCORE_A[repeated])) < 1e-12
    assert abs(_WeightedAuc(LABELS, SCORE_A)(np.ones((1, 9)))[0] - auc(LABELS, SCORE_A)) < 1e-12


def test_point_figures_and_delta_by_hand():
    result = compare_models(USERS, LABELS, SCORE_A, SCORE_B, bootstrap=200, seed=1)
    a, b = result["a"], result["b"]
    ua, ub = user_auc(USERS, LABELS, SCORE_A), user_auc(USERS, LABELS, SCORE_B)
    assert (a["UAUC"], a["WUAUC"], b["UAUC"], b["WUAUC"]) == (ua.uauc, ua.wuauc, ub.uauc, ub.wuauc)
    # user a: B ranks its positive above both negatives (1.0 instead of 0.75); user b: 0.875 -> 1.0
    assert b["UAUC"] == 1.0 and a["UAUC"] == (0.75 + 0.875) / 2
    assert abs(result["delta"]["UAUC"]["value"] - (1.0 - 0.8125)) < 1e-12
    assert abs(a["AUC"] - auc(LABELS, SCORE_A)) < 1e-12 and a["users_excluded"] == 2 and a["rows"] == 9
    d = result["delta"]["UAUC"]
    assert d["ci_low"] <= d["value"] <= d["ci_high"] and d["ci_low"] >= 0  # B is never worse for any user


def test_identical_models_have_a_zero_interval():
    result = compare_models(USERS, LABELS, SCORE_A, SCORE_A.copy(), bootstrap=100, seed=0)
    for metric in ("AUC", "UAUC", "WUAUC"):
        assert result["delta"][metric] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_interval_covers_and_shrinks_with_more_users():
    rng = np.random.default_rng(0)

    def data(n_users):
        users = np.repeat(np.arange(n_users), 10)
        labels = rng.integers(0, 2, len(users))
        a = rng.random(len(users)) + 0.3 * labels
        b = a + 0.2 * labels * rng.random(len(users))
        return users, labels, a, b

    small = compare_models(*data(50), bootstrap=300, seed=0)["delta"]["UAUC"]
    large = compare_models(*data(800), bootstrap=300, seed=0)["delta"]["UAUC"]
    assert small["ci_low"] < small["value"] < small["ci_high"] and large["ci_low"] > 0
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 2
