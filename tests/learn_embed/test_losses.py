import math

import torch

from learn_embed.losses import dense_all_action_infonce


def slow_reference(user, user_mask, items, item_mask, item_ids, temperature):
    """Paper Eq. 1 written plainly: for each user b, valid history position i, valid target j of b:
    -log(exp(s_bij) / (exp(s_bij) + sum over other users' valid targets not sharing an id with b's targets))."""
    losses = []
    B = user.shape[0]
    for b in range(B):
        own = {int(item_ids[b, j]) for j in range(items.shape[1]) if item_mask[b, j]}
        for i in range(user.shape[1]):
            if not user_mask[b, i]:
                continue
            negatives = []
            for c in range(B):
                if c == b:
                    continue
                for j in range(items.shape[1]):
                    if item_mask[c, j] and int(item_ids[c, j]) not in own:
                        negatives.append(float(user[b, i] @ items[c, j]) / temperature)
            for j in range(items.shape[1]):
                if not item_mask[b, j]:
                    continue
                s = float(user[b, i] @ items[b, j]) / temperature
                denominator = math.exp(s) + sum(math.exp(n) for n in negatives)
                losses.append(-math.log(math.exp(s) / denominator))
    return sum(losses) / len(losses)


def make(seed=0, B=4, Lh=5, Lt=3, d=8):
    g = torch.Generator().manual_seed(seed)
    user = torch.nn.functional.normalize(torch.randn(B, Lh, d, generator=g, dtype=torch.float64), dim=-1)
    items = torch.nn.functional.normalize(torch.randn(B, Lt, d, generator=g, dtype=torch.float64), dim=-1)
    user_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    item_mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    # user 0 and user 2 share item 7 (an accidental hit each way); padding ids are junk on purpose
    item_ids = torch.tensor([[7, 3, 99], [4, 99, 99], [5, 7, 6], [8, 9, 99]])
    return user, user_mask, items, item_mask, item_ids


def test_matches_the_slow_reference():
    args = make()
    fast = dense_all_action_infonce(*args, temperature=0.1)
    assert abs(float(fast) - slow_reference(*args, 0.1)) < 1e-9


def test_matches_the_reference_on_other_shapes():
    for seed in range(3):
        args = make(seed=seed, d=16)
        assert abs(float(dense_all_action_infonce(*args, temperature=0.05)) - slow_reference(*args, 0.05)) < 1e-9


def test_padding_content_does_not_matter():
    user, user_mask, items, item_mask, item_ids = make()
    base = dense_all_action_infonce(user, user_mask, items, item_mask, item_ids, 0.1)
    user2, items2 = user.clone(), items.clone()
    user2[0, 3:] = 123.0
    items2[1, 1:] = -55.0
    again = dense_all_action_infonce(user2, user_mask, items2, item_mask, item_ids, 0.1)
    assert torch.allclose(base, again)


def test_accidental_hits_are_masked():
    user, user_mask, items, item_mask, item_ids = make()
    # user 2's copy of item 7 becomes a perfect match for user 0's first position: it is the same id as
    # one of user 0's positives, so it is not a negative for user 0
    items2 = items.clone()
    items2[2, 1] = user[0, 0]
    masked = dense_all_action_infonce(user, user_mask, items2, item_mask, item_ids, 0.1)
    ids_unmasked = item_ids.clone()
    ids_unmasked[2, 1] = 70  # another id: now a hard negative for user 0, and the loss rises
    unmasked = dense_all_action_infonce(user, user_mask, items2, item_mask, ids_unmasked, 0.1)
    assert unmasked > masked + 0.1
    assert abs(float(unmasked) - slow_reference(user, user_mask, items2, item_mask, ids_unmasked, 0.1)) < 1e-9


def test_gradient_flows_to_both_towers():
    user, user_mask, items, item_mask, item_ids = make()
    user.requires_grad_(True)
    items.requires_grad_(True)
    dense_all_action_infonce(user, user_mask, items, item_mask, item_ids, 0.1).backward()
    assert user.grad.abs().sum() > 0 and items.grad.abs().sum() > 0
    assert user.grad[0, 3:].abs().sum() == 0  # padded positions get no gradient
