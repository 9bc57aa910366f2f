"""Drawing items while avoiding the ones an owner (a user, a request) may not get (numpy only)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Clashes = Callable[[np.ndarray, np.ndarray], np.ndarray]


def draw_avoiding(
    draws: int, pool_size: int, probs: np.ndarray | None, clashes: Clashes, rng: np.random.Generator, tries: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """`draws` indices into a pool of `pool_size` (with probabilities `probs`; uniform when None), each
    redrawn while `clashes(draw_indices, pool_indices)` holds for it. Returns (pool indices, kept): kept is
    False where a draw still clashes after `tries` redraws (an owner who has nearly the whole pool), for
    the caller to leave out and count."""
    picks = rng.choice(pool_size, size=draws, p=probs)
    open_ = np.arange(draws)  # the draws still to check: only a redrawn pick can newly clash
    for _ in range(tries):
        open_ = open_[clashes(open_, picks[open_])]
        if not len(open_):
            break
        picks[open_] = rng.choice(pool_size, size=len(open_), p=probs)
    kept = np.ones(draws, bool)
    if len(open_):
        kept[open_] = ~clashes(open_, picks[open_])
    return picks, kept


def in_pairs(owners: np.ndarray, pool: np.ndarray, taken: set[tuple]) -> Clashes:
    """A draw clashes when (its owner, the drawn item) is in `taken`."""

    def clashes(index: np.ndarray, picks: np.ndarray) -> np.ndarray:
        return np.fromiter(((o, i) in taken for o, i in zip(owners[index], pool[picks], strict=True)), bool, len(index))

    return clashes
