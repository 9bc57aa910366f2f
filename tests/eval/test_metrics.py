"""Hand-computed cases (after torchrec's metric tests) and a per-user sklearn loop on real data."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from eval.metrics import auc, user_auc

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))  # after the packages: no shadowing
import pandas_path  # noqa: E402  (the numpy version the DuckDB grouping replaced: the oracle)


def test_auc_by_hand_with_ties():
    # positives at 0.8, 0.4; negatives at 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4 -> 1/2) (0.4>0.1)
    assert auc(np.array([1, 1, 0, 0]), np.array([0.8, 0.4, 0.4, 0.1])) == 3.5 / 4
    assert auc(np.array([1, 0]), np.array([0.2, 0.2])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_uauc_wuauc_by_hand():
    users = np.array(["a", "a", "a", "b", "b", "b", "b", "c", "d"])
    labels = np.array([1, 0, 0, 1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.5, 0.9, 0.3, 0.7, 0.3, 0.1, 0.5, 0.2])
    r = user_auc(users, labels, scores)
    # a: positive 0.9 vs negatives 0.5 (win), 0.9 (tie) -> 0.75; b: 0.3 vs {0.3 tie, 0.1 win}, 0.7 wins both -> 3.5/4
    assert r.per_user_auc[:2].tolist() == [0.75, 0.875]
    assert r.users_evaluated == 2 and r.users_excluded == 2  # c and d have one class only (one row each)
    assert r.uauc == (0.75 + 0.875) / 2
    assert r.wuauc == (0.75 * 3 + 0.875 * 4) / 7
    clicks = user_auc(users, labels, scores, weight="clicks")
    assert clicks.wuauc == (0.75 * 1 + 0.875 * 2) / 3


def test_single_class_only_and_bad_input():
    r = user_auc(np.array([1, 1, 2]), np.array([1, 1, 0]), np.array([0.1, 0.2, 0.3]))
    assert np.isnan(r.uauc) and r.users_excluded == 2
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        user_auc(np.array([1]), np.array([2]), np.array([0.5]))
    with pytest.raises(ValueError, match="NaN"):
        user_auc(np.array([1, 1]), np.array([1, 0]), np.array([0.5, np.nan]))


def test_row_order_does_not_matter():
    rng = np.random.default_rng(0)
    users, labels, scores = rng.integers(0, 50, 2000), rng.integers(0, 2, 2000), rng.integers(0, 10, 2000) / 10
    a = user_auc(users, labels, scores)
    perm = rng.permutation(2000)
    b = user_auc(users[perm], labels[perm], scores[perm])
    np.testing.assert_array_equal(a.per_user_auc, b.per_user_auc)


def test_equals_a_per_user_sklearn_loop_on_movielens(shared_data):
    ratings = pd.read_csv(shared_data / "ml-100k" / "ml-100k.inter", sep="\t")
    ratings.columns = ["user", "item", "rating", "ts"]
    labels = (ratings.rating >= 4).astype(int).to_numpy()
    # a real, tie-heavy score: the item's mean rating rounded to one decimal
    scores = ratings.groupby("item")["rating"].transform("mean").round(1).to_numpy()
    ours = user_auc(ratings.user.to_numpy(), labels, scores)
    expected, weights = [], []
    for _, g in ratings.assign(label=labels, score=scores).groupby("user"):
        if g.label.nunique() == 2:
            expected.append(roc_auc_score(g.label, g.score))
            weights.append(len(g))
    assert ours.users_evaluated == len(expected) == 940 and ours.users_excluded == 3
    assert abs(ours.uauc - np.mean(expected)) < 1e-9
    assert abs(ours.wuauc - np.average(expected, weights=weights)) < 1e-9
    assert abs(auc(labels, scores) - roc_auc_score(labels, scores)) < 1e-9


@pytest.mark.parametrize("kind", ["text", "int"])
@pytest.mark.parametrize("weight", ["samples", "clicks"])
def test_duckdb_grouping_equals_the_numpy_lexsort_bit_for_bit(kind, weight):
    """The per-user rank sums come from DuckDB as exact integers, so every figure equals the one-sort numpy
    version it replaced exactly (not within a tolerance): ties, -0.0 beside 0.0, single-class users."""
    rng = np.random.default_rng(11)
    rows = 20_000
    ids = rng.zipf(1.4, rows) % 900
    users = np.array([f"u{i}" for i in ids], dtype=object) if kind == "text" else ids.astype(np.int64)
    labels = (rng.random(rows) < 0.3).astype(np.int64)
    scores = np.round(rng.normal(size=rows), 2)  # many ties within a user
    scores[rng.random(rows) < 0.05] = -0.0
    scores[rng.random(rows) < 0.05] = 0.0
    got = user_auc(users, labels, scores, weight=weight)
    want = pandas_path.user_auc(users, labels, scores, weight=weight)
    assert got.users.tolist() == want["users"].tolist() and got.users_excluded > 0
    assert np.array_equal(got.per_user_auc, want["per_user_auc"], equal_nan=True)
    assert got.uauc == want["uauc"] and got.wuauc == want["wuauc"]
