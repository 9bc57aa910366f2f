"""Sequence splits for retrieval training and evaluation (framework-free).

Every split yields examples (user, history item ids, target item ids, part) with part in
train/valid/test. Positions never leak: a training example only holds events that come before anything
its user is evaluated on, and with a temporal split the valid and test users are disjoint from the
training users.

- `temporal` (paper section 4.1): each user's chronological events are divided into history and target
  at a global timestamp (`boundary: global_time`, the cutoff given or at a quantile of all event times)
  or at the user's own last `target_fraction` (`boundary: user_fraction`); histories keep the newest
  `history_max` events, targets the oldest `target_max`. Users go to train/valid/test by a salted hash.
- `leave_one_out`: the last item is the test target, the one before the validation target; training
  divides the rest into history and target (the last `target_fraction` of it).
- `given`: the dataset's own `split` column (train/valid/test), as in the UniSRec files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from learnkit.errors import DataError


@dataclass
class SplitConfig:
    kind: Literal["temporal", "leave_one_out", "given"] = "temporal"
    boundary: Literal["global_time", "user_fraction"] = "user_fraction"
    cutoff_quantile: float = 0.8
    cutoff_ts: int | None = None
    target_fraction: float = 0.2
    history_max: int = 80
    target_max: int = 40
    valid_users: float = 0.1
    test_users: float = 0.1
    positives_only: bool = False  # keep only label-1 events as interactions
    # training examples per training user: each further one cut a target's length earlier in the sequence
    train_cuts: int = 1
    salt: str = "learn-kit"

    def __post_init__(self) -> None:
        if not 0 < self.target_fraction < 1:
            raise ValueError("target_fraction must be in (0, 1)")
        if not 0 < self.cutoff_quantile < 1:
            raise ValueError("cutoff_quantile must be in (0, 1)")
        if self.valid_users < 0 or self.test_users <= 0 or self.valid_users + self.test_users >= 1:
            raise ValueError("valid_users and test_users must be fractions with test_users > 0 and a sum < 1")
        if self.history_max < 1 or self.target_max < 1 or self.train_cuts < 1:
            raise ValueError("history_max, target_max and train_cuts must be >= 1")


def user_bucket(user_ids: pd.Series, salt: str) -> np.ndarray:
    """A stable number in [0, 1) per user from a salted sha256 (independent of row order)."""
    return np.array([int(hashlib.sha256(f"{salt}:{u}".encode()).hexdigest()[:12], 16) / 16**12
                     for u in user_ids])


def _ordered(events: pd.DataFrame, positives_only: bool) -> pd.DataFrame:
    """Chronological per user; events in the same second are ordered by item id, so that the split does
    not depend on the order of the input rows."""
    if positives_only:
        events = events[events["label"] == 1]
    return events.sort_values(["user_id", "ts", "item_id"], kind="stable").reset_index(drop=True)


def _examples(rows: list[tuple[str, list[str], list[str], str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "history", "target", "part"])


def make_split(events: pd.DataFrame, config: SplitConfig) -> tuple[pd.DataFrame, dict]:
    """Returns (examples, stats); examples has columns user_id, history, target, part."""
    ordered = _ordered(events, config.positives_only)
    sequences = ordered.groupby("user_id", sort=True)
    rows: list[tuple[str, list[str], list[str], str]] = []
    skipped = 0
    stats: dict = {"kind": config.kind}
    if config.kind == "temporal":
        users = pd.Series(sorted(ordered["user_id"].unique()))
        bucket = dict(zip(users, user_bucket(users, config.salt)))
        cutoff = None
        if config.boundary == "global_time":
            cutoff = config.cutoff_ts if config.cutoff_ts is not None else int(
                np.quantile(ordered["ts"].to_numpy(), config.cutoff_quantile))
            stats["cutoff_ts"] = int(cutoff)
        for user, group in sequences:
            items, ts = group["item_id"].tolist(), group["ts"].to_numpy()
            if cutoff is not None:
                split_at = int(np.searchsorted(ts, cutoff, side="left"))
            else:
                split_at = len(items) - max(1, int(round(config.target_fraction * len(items))))
            history, target = items[:split_at][-config.history_max:], items[split_at:][: config.target_max]
            if not history or not target:
                skipped += 1
                continue
            b = bucket[user]
            part = "test" if b < config.test_users else (
                "valid" if b < config.test_users + config.valid_users else "train")
            rows.append((user, history, target, part))
            if part == "train":  # earlier cuts of the same user's sequence: more training examples
                stride = len(target)
                for cut in range(1, config.train_cuts):
                    at = split_at - cut * stride
                    if at < 1:
                        break
                    rows.append((user, items[:at][-config.history_max:], items[at:at + stride], part))
    elif config.kind == "leave_one_out":
        for user, group in sequences:
            items = group["item_id"].tolist()
            if len(items) < 3:
                skipped += 1
                continue
            rows += _leave_one_out(user, items[:-2], items[-2], items[-1], config)
    elif config.kind == "given":
        if "split" not in ordered.columns:
            raise DataError("split kind 'given' needs a 'split' column in events (e.g. the unisrec importer)")
        for user, group in sequences:
            parts = group["split"].tolist()
            items = group["item_id"].tolist()
            train = [i for i, p in zip(items, parts) if p == "train"]
            valid = [i for i, p in zip(items, parts) if p == "valid"]
            test = [i for i, p in zip(items, parts) if p == "test"]
            if len(train) < 2 or len(valid) != 1 or len(test) != 1:
                skipped += 1
                continue
            rows += _leave_one_out(user, train, valid[0], test[0], config)
    examples = _examples(rows)
    if examples.empty:
        raise DataError(f"split {config.kind!r} left no examples (users skipped: {skipped})")
    counts = examples["part"].value_counts()
    stats.update({"users_skipped": skipped, **{f"{p}_examples": int(counts.get(p, 0))
                                                for p in ("train", "valid", "test")}})
    return examples, stats


def _leave_one_out(user: str, train: list[str], valid: str, test: str,
                   config: SplitConfig) -> list[tuple[str, list[str], list[str], str]]:
    n_target = min(config.target_max, max(1, int(round(config.target_fraction * len(train)))))
    n_target = min(n_target, len(train) - 1)
    rows = []
    for cut in range(config.train_cuts if n_target >= 1 else 0):  # earlier cuts: more training examples
        at = len(train) - (cut + 1) * n_target
        if at < 1:
            break
        rows.append((user, train[:at][-config.history_max:], train[at:at + n_target], "train"))
    rows.append((user, train[-config.history_max:], [valid], "valid"))
    rows.append((user, (train + [valid])[-config.history_max:], [test], "test"))
    return rows

