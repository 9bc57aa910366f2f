"""The retrieval losses against a plain-Python reference: each (position, positive) pair against the
candidates that are not the position's positives (or banned), with and without logQ correction."""

import math

import pytest
import torch

from learn_embed.config import TrainConfig
from learn_embed.losses import candidate_softmax_loss
from learn_embed.train import SequenceData, _candidates


def slow_reference(user, user_mask, positives, item_vectors, candidate_items, temperature, log_q=None, banned=None):
    """positives[b][t]: item ids; candidate_items: item ids scored; log_q: item id -> log q; banned[b][t]: ids."""
    losses = []
    for b in range(user.shape[0]):
        for t in range(user.shape[1]):
            if not user_mask[b, t] or not positives[b][t]:
                continue
            own = set(positives[b][t]) | set(banned[b][t] if banned else [])

            def score(item, b=b, t=t):
                s = float(user[b, t] @ item_vectors[item]) / temperature
                return s - (log_q[item] if log_q else 0.0)

            negatives = [score(c) for c in candidate_items if c not in own]
            for p in positives[b][t]:
                s = score(p)
                losses.append(-math.log(math.exp(s) / (math.exp(s) + sum(math.exp(n) for n in negatives))))
    return sum(losses) / len(losses)


def make(seed=0, B=3, L=4, d=8, n_items=12):
    g = torch.Generator().manual_seed(seed)
    user = torch.nn.functional.normalize(torch.randn(B, L, d, generator=g, dtype=torch.float64), dim=-1)
    items = torch.nn.functional.normalize(torch.randn(n_items, d, generator=g, dtype=torch.float64), dim=-1)
    history = torch.tensor([[0, 1, 2, -1], [3, 4, 5, 6], [7, -1, -1, -1]])
    return user, items, history


def as_lists(positives):
    return [[[int(i) for i in row if i >= 0] for row in user] for user in positives]


def loss_of(user, items, batch, kind, config, q=None):
    cands = _candidates(batch, kind, items.shape[0], q, config, step=0, world=1)
    value = candidate_softmax_loss(
        user,
        batch.history >= 0,
        cands.positive_cols,
        items[cands.ids],
        config.temperature,
        log_q=None if cands.log_q is None else cands.log_q.double(),
        banned_cols=cands.banned_cols,
    )
    return value, cands


NEXT = [[1, 2, 9], [4, 5, 6, 10], [11]]  # aligned targets: history[t] is followed by target[t]


def test_full_next_item_is_cross_entropy_over_the_catalog():
    user, items, history = make()
    batch = SequenceData.from_lists([h[h >= 0].tolist() for h in history], NEXT, aligned=True)
    config = TrainConfig(temperature=0.1)
    value, cands = loss_of(user, items, batch, "full", config)
    assert torch.equal(cands.ids, torch.arange(12))
    mask = batch.history >= 0
    logits = user[mask] @ items.T / 0.1
    expected = torch.nn.functional.cross_entropy(logits, batch.positives[mask][:, 0])
    assert abs(float(value) - float(expected)) < 1e-10
    assert abs(float(value) - slow_reference(user, mask, as_lists(batch.positives), items, range(12), 0.1)) < 1e-10


def test_window_makes_the_next_items_positives_and_no_negatives():
    user, items, history = make(seed=1)
    batch = SequenceData.from_lists([h[h >= 0].tolist() for h in history], NEXT, aligned=True, window=2)
    assert as_lists(batch.positives)[1] == [[4, 5], [5, 6], [6, 10], [10]]
    config = TrainConfig(temperature=0.05, window=2)
    value, _ = loss_of(user, items, batch, "full", config)
    reference = slow_reference(user, batch.history >= 0, as_lists(batch.positives), items, range(12), 0.05)
    assert abs(float(value) - reference) < 1e-10


def test_cuts_predict_the_whole_target_set_at_every_position():
    user, items, history = make(seed=2)
    histories = [[0, 1, 2], [3, 4, 5, 6], [7]]
    batch = SequenceData.from_lists(histories, [[8, 9], [10], [8, 11]])
    assert as_lists(batch.positives)[0] == [[8, 9]] * 3 + [[]]
    config = TrainConfig(temperature=0.1)
    for kind in ("full", "inbatch"):
        value, cands = loss_of(user, items, batch, kind, config)
        candidates = range(12) if kind == "full" else [8, 9, 10, 11]
        assert sorted(cands.ids.tolist()) == list(candidates)
        reference = slow_reference(user, batch.history >= 0, as_lists(batch.positives), items, candidates, 0.1)
        assert abs(float(value) - reference) < 1e-10, kind


def test_sampled_adds_shared_negatives_with_log_q_correction():
    user, items, history = make(seed=3)
    batch = SequenceData.from_lists([h[h >= 0].tolist() for h in history], NEXT, aligned=True)
    q = torch.linspace(1, 3, 12, dtype=torch.float64)
    q = q / q.sum()
    config = TrainConfig(temperature=0.1, sampled_negatives=5)
    value, cands = loss_of(user, items, batch, "sampled", config, q)
    ids = cands.ids.tolist()
    assert set(i for row in NEXT for i in row) <= set(ids)  # every positive is a candidate
    log_q = {i: math.log(float(q[i])) for i in range(12)}
    reference = slow_reference(user, batch.history >= 0, as_lists(batch.positives), items, ids, 0.1, log_q)
    assert abs(float(value) - reference) < 1e-6
    again, cands2 = loss_of(user, items, batch, "sampled", config, q)
    assert torch.equal(cands.ids, cands2.ids) and float(again) == float(value)  # seeded by the step


def test_masked_history_items_are_no_negatives():
    user, items, history = make(seed=4)
    batch = SequenceData.from_lists([h[h >= 0].tolist() for h in history], NEXT, aligned=True)
    config = TrainConfig(temperature=0.1, mask_history=True)
    value, _ = loss_of(user, items, batch, "full", config)
    banned = [[[int(i) for i in h[: t + 1] if i >= 0] for t in range(4)] for h in batch.history]
    reference = slow_reference(
        user, batch.history >= 0, as_lists(batch.positives), items, range(12), 0.1, banned=banned
    )
    assert abs(float(value) - reference) < 1e-10
    plain, _ = loss_of(user, items, batch, "full", TrainConfig(temperature=0.1))
    assert float(value) != float(plain)


def test_chunked_loss_equals_the_whole_and_so_do_its_gradients():
    user, items, history = make(seed=5)
    batch = SequenceData.from_lists([h[h >= 0].tolist() for h in history], NEXT, aligned=True, window=2)
    grads = []
    for max_logits in (10**9, 12):  # 12 logits: one position per chunk, under activation checkpointing
        u, it = user.clone().requires_grad_(True), items.clone().requires_grad_(True)
        value = candidate_softmax_loss(u, batch.history >= 0, batch.positives, it, 0.1, max_logits=max_logits)
        value.backward()
        grads.append((float(value.detach()), u.grad, it.grad))
    assert abs(grads[0][0] - grads[1][0]) < 1e-12
    torch.testing.assert_close(grads[0][1], grads[1][1])
    torch.testing.assert_close(grads[0][2], grads[1][2])


def test_padding_content_does_not_matter_and_gets_no_gradient():
    user, items, history = make(seed=6)
    batch = SequenceData.from_lists([h[h >= 0].tolist() for h in history], NEXT, aligned=True)
    mask = batch.history >= 0
    base = candidate_softmax_loss(user, mask, batch.positives, items, 0.1)
    junk = user.clone()
    junk[2, 1:] = 123.0
    assert torch.allclose(base, candidate_softmax_loss(junk, mask, batch.positives, items, 0.1))
    u, it = user.clone().requires_grad_(True), items.clone().requires_grad_(True)
    candidate_softmax_loss(u, mask, batch.positives, it, 0.1).backward()
    assert u.grad[2, 1:].abs().sum() == 0 and u.grad[0, :3].abs().sum() > 0 and it.grad.abs().sum() > 0


def test_sequence_data_keeps_positives_aligned_when_rows_are_trimmed():
    data = SequenceData.from_lists([[1, 2, 3], [4]], [[2, 3, 5], [6]], aligned=True, window=2)
    short = data.rows(torch.tensor([1]))
    assert short.history.tolist() == [[4]] and short.positives.tolist() == [[[6]]]
    # window 2: item 3 is a positive of positions 0 and 1, item 5 of positions 1 and 2
    assert data.item_counts(8).tolist() == [0, 0, 1, 2, 0, 2, 1, 0]


@pytest.mark.parametrize("bad", [{"window": 0}, {"patience": -1}, {"loss": "softmax"}])
def test_train_config_rejects_bad_values(bad):
    from learnkit.core.configload import from_mapping
    from learnkit.core.errors import ConfigError

    with pytest.raises((ValueError, ConfigError)):
        from_mapping(TrainConfig, bad, "pch.train", source="x.yaml")


def test_an_item_that_does_not_exist_yet_is_no_negative_and_gets_no_gradient():
    """The leak a full softmax has: every catalog item is a negative at every step, items that first appear
    later included, so a content tower learns that their text means "never chosen". With times, an item first
    seen after a position's time is no negative for it: the loss is the softmax over the items that exist, and
    a future item's vector gets exactly zero gradient (without the times it does not)."""
    torch.manual_seed(0)
    user = torch.randn(1, 2, 4)
    items = torch.randn(4, 4, requires_grad=True)
    positives = torch.tensor([[[0], [1]]])  # position 0 at time 10 predicts item 0, position 1 at time 30 item 1
    when = torch.tensor([[10, 30]])
    birth = torch.tensor([0, 5, 20, 40])  # item 2 exists from time 20, item 3 from 40: after both positions
    loss = candidate_softmax_loss(
        user, torch.ones(1, 2), positives, items, 1.0, position_time=when, candidate_birth=birth
    )
    # by hand: position 0 sees items {0, 1} (2 and 3 come later), position 1 sees {0, 1, 2}
    u = user[0].detach()
    v = items.detach()
    first = -torch.log_softmax(torch.stack([u[0] @ v[0], u[0] @ v[1]]), 0)[0]
    second = -torch.log_softmax(torch.stack([u[1] @ v[1], u[1] @ v[0], u[1] @ v[2]]), 0)[0]
    assert abs(float(loss.detach()) - float((first + second) / 2)) < 1e-5
    loss.backward()
    assert torch.count_nonzero(items.grad[3]) == 0 and torch.count_nonzero(items.grad[2]) > 0
    items.grad = None
    candidate_softmax_loss(user, torch.ones(1, 2), positives, items, 1.0).backward()
    assert torch.count_nonzero(items.grad[3]) > 0  # the leak, without times


def test_training_positions_carry_the_time_of_their_first_positive():
    import pandas as pd

    from learn_embed.experiment import EventClock
    from learn_embed.train import NO_TIME
    from learnkit.data.catalog import Catalog

    events = pd.DataFrame(
        {"user_id": ["u", "u", "u", "v", "u"], "item_id": ["a", "b", "c", "d", "b"], "ts": [1, 2, 3, 4, 9]}
    )
    catalog = Catalog.of_items(pd.DataFrame({"item_id": ["a", "b", "c", "d", "e"]}))
    clock = EventClock.of(events, catalog)
    assert clock.birth.tolist() == [1, 2, 3, 4, NO_TIME]  # e never appears: never a negative
    examples = pd.DataFrame({"user_id": ["u", "u"], "history": [["a", "b"], ["a"]], "target": [["b", "c"], ["c", "b"]]})
    assert clock.target_times(examples) == [[2, 3], [3, 2]]  # b's first time, though u met it again at 9
    aligned = SequenceData.from_lists([[0, 1]], [[1, 2]], aligned=True, target_times=[[2, 3]])
    cuts = SequenceData.from_lists([[0]], [[2, 1]], target_times=[[3, 2]])
    assert aligned.times.tolist() == [[2, 3]] and cuts.times.tolist() == [[2]]  # a cut: its earliest target
