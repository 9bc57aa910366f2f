"""Drawing items while avoiding the ones an owner (a user, a request) already has (numpy only)."""

from __future__ import annotations

import numpy as np


def draw_avoiding(owners: np.ndarray, pool: np.ndarray, probs: np.ndarray | None, taken: set[tuple],
                  rng: np.random.Generator, tries: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """One item of `pool` (with probabilities `probs`; uniform when None) per entry of `owners`, redrawn
    while (owner, item) is in `taken`. Returns (items, kept): kept is False where a draw still clashes
    after `tries` redraws (an owner who has nearly the whole pool), for the caller to leave out and count."""

    def clashing(items: np.ndarray) -> np.ndarray:
        return np.fromiter(((o, i) in taken for o, i in zip(owners, items)), bool, len(items))

    items = rng.choice(pool, size=len(owners), p=probs)
    for _ in range(tries):
        clash = clashing(items)
        if not clash.any():
            break
        items[clash] = rng.choice(pool, size=int(clash.sum()), p=probs)
    return items, ~clashing(items)
