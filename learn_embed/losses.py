"""The retrieval losses of the LEARN towers: a softmax over a candidate set, per (position, positive) pair.

Every valid history position of a user holds a set of positive items: the next item (`window: 1`,
SASRec / PinnerFormer next-item), the next `window` items (the paper's dense all-action loss, Eq. 1, as a
window), or a cut's whole target set. Each (position, positive) pair is scored against the candidates:

    loss = -log( e^{s_pos} / (e^{s_pos} + sum over negatives e^{s_neg}) ),   s = u . v / T  (- log q)

The negatives are all candidates except the position's own positives (no accidental hits), every item that
does not exist yet at the position's time (its first event comes later: a softmax over the whole catalog would
otherwise teach the towers that the text of an item still to come means "never chosen") and, when asked, the
items the user has already seen up to that position. Three candidate sets:
- `full`: the whole catalog (exact softmax; chunked over positions so memory stays bounded);
- `sampled`: the batch's positives plus shared negatives drawn from the training popularity, with logQ
  correction (each logit minus the log of its candidate's sampling probability);
- `inbatch`: the batch's positives alone, no correction (popularity-biased negatives).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

# Logits computed at once (positions x candidates); above it the loss is computed in chunks of positions
# with activation checkpointing, so memory does not grow with the catalog times the batch.
MAX_LOGITS = 8_000_000


def _pair_loss_sum(
    user: torch.Tensor,
    positive_cols: torch.Tensor,
    banned_cols: torch.Tensor | None,
    candidates: torch.Tensor,
    log_q: torch.Tensor | None,
    temperature: float,
    position_time: torch.Tensor | None = None,
    candidate_birth: torch.Tensor | None = None,
) -> torch.Tensor:
    """user [P, d], positive_cols [P, W] (-1 = none), banned_cols [P, K] (-1 = none), position_time [P] and
    candidate_birth [C] (a candidate first seen after a position's time is no negative for it) -> summed
    pair loss."""
    n_cand = candidates.shape[0]
    logits = user @ candidates.T / temperature  # [P, C]
    if log_q is not None:
        logits = logits - log_q
    excluded = torch.zeros(logits.shape[0], n_cand + 1, dtype=torch.bool, device=logits.device)
    valid = positive_cols >= 0
    excluded.scatter_(1, torch.where(valid, positive_cols, n_cand), True)  # column C: a sink for -1
    if banned_cols is not None:
        excluded.scatter_(1, torch.where(banned_cols >= 0, banned_cols, n_cand), True)
    if position_time is not None and candidate_birth is not None:
        excluded[:, :n_cand] |= candidate_birth[None, :] > position_time[:, None]
    neg_lse = logits.masked_fill(excluded[:, :n_cand], float("-inf")).logsumexp(1)  # [P]
    positive = logits.gather(1, positive_cols.clamp(min=0))  # [P, W]
    # -log(e^s / (e^s + sum_neg e^n)) = softplus(lse_neg - s); no negatives at all gives 0
    per_pair = torch.nn.functional.softplus(neg_lse[:, None] - positive)
    return torch.where(valid, per_pair, torch.zeros_like(per_pair)).sum()


def candidate_softmax_loss(
    user: torch.Tensor,
    user_mask: torch.Tensor,
    positive_cols: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float,
    log_q: torch.Tensor | None = None,
    banned_cols: torch.Tensor | None = None,
    normaliser: float | None = None,
    max_logits: int = MAX_LOGITS,
    position_time: torch.Tensor | None = None,
    candidate_birth: torch.Tensor | None = None,
) -> torch.Tensor:
    """user [B, L, d] and user_mask [B, L]; positive_cols [B, L, W]: each position's positives as columns
    of `candidates` [C, d] (-1 = none); banned_cols [B, L, K]: columns that are no negative for that
    position (-1 = none); log_q [C]: subtracted from every logit (sampling correction); position_time [B, L]
    and candidate_birth [C]: a candidate first seen after a position's time is no negative for that position.
    Returns the mean over valid (position, positive) pairs, or their sum divided by `normaliser`."""
    mask = user_mask.bool() & (positive_cols >= 0).any(-1)
    flat_user, flat_pos = user[mask], positive_cols[mask]
    flat_ban = banned_cols[mask] if banned_cols is not None else None
    flat_time = position_time[mask] if position_time is not None else None
    pairs = (flat_pos >= 0).sum()
    chunk = max(1, max_logits // max(1, candidates.shape[0]))
    if flat_user.shape[0] <= chunk:
        total = _pair_loss_sum(
            flat_user, flat_pos, flat_ban, candidates, log_q, temperature, flat_time, candidate_birth
        )
    else:
        total = user.new_zeros(())
        for start in range(0, flat_user.shape[0], chunk):
            ban = flat_ban[start : start + chunk] if flat_ban is not None else None
            when = flat_time[start : start + chunk] if flat_time is not None else None
            total = total + checkpoint(
                _pair_loss_sum,
                flat_user[start : start + chunk],
                flat_pos[start : start + chunk],
                ban,
                candidates,
                log_q,
                temperature,
                when,
                candidate_birth,
                use_reentrant=False,
            )
    if normaliser is not None:
        return total / normaliser
    return total / pairs.clamp(min=1)
