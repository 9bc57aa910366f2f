"""The evaluator's cold-item slice and the reference rows, by hand."""

import numpy as np
import pandas as pd
import torch

from learn_embed.config import EvalConfig
from learn_embed.experiment import Comparison, EventClock, Scores, evaluate, reference_scores
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


def _comparison(cold: set[int]) -> Comparison:
    return Comparison(EXAMPLES, CATALOG, np.arange(6), cold, {}, CONFIG)


def test_popularity_ranks_by_training_counts_and_random_is_seeded():
    counts = np.array([9, 8, 1, 7, 0, 0])
    pop = reference_scores("popularity", counts, _comparison({4, 5}), EXAMPLES, seed=0)
    # a (i0 excluded): i1, i3 first -> misses i2; b (i1 excluded): i0, i3 -> finds i3 at rank 2
    assert pop.per_user["H@2"].tolist() == [0.0, 1.0]
    assert pop.cold_per_user["R@2"].tolist() == [0.0]
    r1 = reference_scores("random", counts, _comparison(set()), EXAMPLES, seed=3)
    r2 = reference_scores("random", counts, _comparison(set()), EXAMPLES, seed=3)
    assert all(np.array_equal(r1.per_user[k], r2.per_user[k]) for k in r1.per_user)


def test_a_period_target_is_ranked_among_the_items_that_exist_at_its_time_and_figures_are_per_user():
    # item n scores n; i5 first appears at ts 50, after a's first target (ts 20) and before a's second (ts 60)
    events = pd.DataFrame(
        {
            "user_id": ["z", "a", "a", "z", "a", "b", "b"],
            "item_id": ["i0", "i0", "i4", "i5", "i3", "i1", "i3"],
            "ts": [1, 10, 20, 50, 60, 5, 70],
        }
    )
    examples = pd.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "history": [["i0"], ["i0", "i4"], ["i1"]],
            "target": [["i4"], ["i3"], ["i3"]],
            "part": ["period"] * 3,
        }
    )
    clock = EventClock.of(events, CATALOG)
    period = Comparison(examples, CATALOG, np.arange(6), {4}, {}, CONFIG, clock, per_target=True)
    scores = period.score(torch.ones((3, 1)), torch.arange(6, dtype=torch.float32)[:, None], examples)
    # a at ts 20: i5 (ts 50) and i2 (no event: never exists) are out, so i4 is first (H@1 = 1); a at ts 60:
    # history i0, i4 out, i5 first, i3 second (H@1 = 0); b at ts 70: i5, i4, then i3 (H@2 = 0)
    assert scores.users == ["a", "b"]
    assert scores.per_user["H@1"].tolist() == [0.5, 0.0]
    assert scores.per_user["H@2"].tolist() == [1.0, 0.0]
    assert scores.cold_users == ["a"] and scores.cold_per_user["H@1"].tolist() == [1.0]
    # without the clock's times the same ranking puts i5 above i4: the first target is no longer found first
    unordered = Comparison(examples, CATALOG, np.arange(6), {4}, {}, CONFIG).score(
        torch.ones((3, 1)), torch.arange(6, dtype=torch.float32)[:, None], examples
    )
    assert unordered.per_user["H@1"][0] == 0.0
