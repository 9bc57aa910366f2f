"""The evaluator's cold-item slice and the reference rows, by hand."""

import numpy as np
import pandas as pd
import torch

from learn_embed.config import EvalConfig
from learn_embed.experiment import Scores, evaluate, reference_scores
from learnkit.data.catalog import Catalog

CATALOG = Catalog.from_ids([f"i{n}" for n in range(6)])
EXAMPLES = pd.DataFrame(
    {"user_id": ["a", "b"], "history": [["i0"], ["i1"]], "target": [["i2", "i5"], ["i3"]], "part": ["test", "test"]}
)
CONFIG = EvalConfig(ks=[1, 2], exclude_history=True, interval_metrics=["N@1"], monitor_metric="N@1")


def test_cold_slice_scores_only_the_cold_targets_of_the_users_who_have_one():
    # one dimension: the score of item n is n for every user -> ranking 5, 4, 3, 2, (history excluded)
    users = torch.ones((2, 1))
    items = torch.arange(6, dtype=torch.float32)[:, None]
    scores = evaluate(users, items, np.arange(6), EXAMPLES, CATALOG, CONFIG, cold_items={5})
    assert scores.per_user["H@1"].tolist() == [1.0, 0.0]  # a: i5 first; b: i3 is third
    assert scores.per_user["R@2"].tolist() == [0.5, 0.0]
    assert scores.cold_users == ["a"] and scores.cold_per_user["R@1"].tolist() == [1.0]
    again = Scores.from_frame(scores.to_frame())
    assert again.cold_users == ["a"] and again.per_user["R@2"].tolist() == [0.5, 0.0]


def test_popularity_ranks_by_training_counts_and_random_is_seeded():
    counts = np.array([9, 8, 1, 7, 0, 0])
    pop = reference_scores("popularity", counts, np.arange(6), EXAMPLES, CATALOG, CONFIG, {4, 5}, seed=0)
    # a (i0 excluded): i1, i3 first -> misses i2; b (i1 excluded): i0, i3 -> finds i3 at rank 2
    assert pop.per_user["H@2"].tolist() == [0.0, 1.0]
    assert pop.cold_per_user["R@2"].tolist() == [0.0]
    r1 = reference_scores("random", counts, np.arange(6), EXAMPLES, CATALOG, CONFIG, set(), seed=3)
    r2 = reference_scores("random", counts, np.arange(6), EXAMPLES, CATALOG, CONFIG, set(), seed=3)
    assert all(np.array_equal(r1.per_user[k], r2.per_user[k]) for k in r1.per_user)
