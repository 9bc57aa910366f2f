"""The dense all-action InfoNCE loss of LEARN (paper Eq. 1, after PinnerFormer's dense all-action loss)."""

from __future__ import annotations

import torch


def dense_all_action_infonce(user: torch.Tensor, user_mask: torch.Tensor, items: torch.Tensor,
                             item_mask: torch.Tensor, item_ids: torch.Tensor, temperature: float,
                             owner: torch.Tensor | None = None, row_owner: torch.Tensor | None = None,
                             normaliser: float | None = None) -> torch.Tensor:
    """Every user embedding of a history position against every item embedding of the same user's
    targets (positives) and of the other users' targets in the batch (negatives).

    user [B, Lh, d], user_mask [B, Lh]; items [N, Lt, d], item_mask [N, Lt], item_ids [N, Lt].
    Normally N == B and row b of `items` belongs to user b; under data parallelism `items` holds the
    targets gathered from every process and `owner` [N] / `row_owner` [B] say which user each row is.
    Negatives equal to any of the user's positive item ids (accidental hits) and padding are masked.
    Returns the mean over (position, positive) pairs, or the sum divided by `normaliser` if given.
    """
    batch, hist_len, dim = user.shape
    n_users, tgt_len, _ = items.shape
    owner = torch.arange(n_users, device=user.device) if owner is None else owner
    row_owner = torch.arange(batch, device=user.device) if row_owner is None else row_owner

    logits = user.reshape(-1, dim) @ items.reshape(-1, dim).T / temperature       # [B*Lh, N*Lt]
    logits = logits.reshape(batch, hist_len, n_users * tgt_len)
    col_owner = owner.repeat_interleave(tgt_len)                                    # [N*Lt]
    col_ids = item_ids.reshape(-1)
    col_valid = item_mask.reshape(-1).bool()
    positive = (col_owner[None, :] == row_owner[:, None]) & col_valid[None, :]       # [B, N*Lt]
    # ids of each user's own targets; a negative column with one of those ids is an accidental hit
    own_row = (owner[None, :] == row_owner[:, None]).to(torch.int64).argmax(1)       # [B]
    own_ids = torch.where(item_mask[own_row].bool(), item_ids[own_row], torch.full_like(item_ids[own_row], -2))
    hit = (col_ids[None, :, None] == own_ids[:, None, :]).any(-1)                   # [B, N*Lt]
    negative = col_valid[None, :] & ~positive & ~hit
    neg_logits = logits.masked_fill(~negative[:, None, :], float("-inf"))
    neg_lse = torch.logsumexp(neg_logits, dim=-1)                                   # [B, Lh]
    # -log(e^s / (e^s + sum_neg e^n)) = softplus(lse_neg - s); no negatives at all -> 0 loss
    per_pair = torch.nn.functional.softplus(neg_lse[:, :, None] - logits)          # [B, Lh, N*Lt]
    per_pair = torch.where(torch.isfinite(neg_lse)[:, :, None], per_pair, torch.zeros_like(per_pair))
    pair_mask = user_mask.bool()[:, :, None] & positive[:, None, :]
    total = (per_pair * pair_mask).sum()
    if normaliser is not None:
        return total / normaliser
    return total / pair_mask.sum().clamp(min=1)
