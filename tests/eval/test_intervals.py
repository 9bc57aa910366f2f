import numpy as np

from eval.intervals import difference_interval, interval_sign, mean_interval, user_resamples


def test_mean_interval_by_hand():
    values = np.array([1.0, 0.0, 0.0, 1.0])
    # replicate 1 draws users 0 and 3 twice each (mean 1.0); replicate 2 each user once (mean 0.5)
    weights = np.array([[2, 0, 0, 2], [1, 1, 1, 1]], dtype=float)
    block = mean_interval(values, weights)
    assert block["value"] == 0.5
    assert np.isclose(block["ci_low"], 0.5 + 0.025 * 0.5) and np.isclose(block["ci_high"], 0.5 + 0.975 * 0.5)


def test_difference_is_paired_on_the_same_users():
    a = np.array([0.2, 0.4, 0.9, 0.1])
    weights = user_resamples(4, 200, seed=0)
    same = difference_interval(a, a, weights)
    assert same == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0} and interval_sign(same) == 0
    better = difference_interval(a + 0.05, a, weights)  # better for every user: no resample can say otherwise
    assert np.isclose(better["ci_low"], 0.05) and interval_sign(better) == 1


def test_resamples_are_counts_of_draws():
    weights = user_resamples(5, 30, seed=1)
    assert weights.shape == (30, 5) and (weights.sum(1) == 5).all()
    assert np.array_equal(weights, user_resamples(5, 30, seed=1))
