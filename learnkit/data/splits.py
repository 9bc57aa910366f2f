"""Sequence splits for retrieval training and evaluation (framework-free).

Every split yields examples (user, history item ids, target item ids, part) with part in
train/valid/test. Positions never leak: a training example only holds events that come before anything
its user is evaluated on, and with a temporal split the valid and test users are disjoint from the
training users.

- `temporal` (paper section 4.1): each user's chronological events are divided into history and target
  at a global timestamp (`boundary: global_time`, the cutoff given or at a quantile of all event times)
  or at the user's own last `target_fraction` (`boundary: user_fraction`); histories keep the newest
  `history_max` events, targets the oldest `target_max`. Users go to train/valid/test by a salted hash.
  `boundary: test_period` evaluates *every* user with history before the run's test period on their
  events inside it; training uses every user's events before it, and the validation users' last
  `target_fraction` of those events is held out for model selection. `evaluate_all_users` does the same
  with each user's own boundary (`user_fraction`): every user is evaluated on their last
  `target_fraction`, and training uses everyone's events before their own targets.
- `leave_one_out`: the last item is the test target, the one before the validation target; training
  uses the rest.
- `given`: the dataset's own `split` column (train/valid/test), as in the UniSRec files.

Training examples (`train_examples`):
- `sequence` (default, SASRec / PinnerFormer style): a user's training sequence in windows of
  `history_max + 1` items; `history` is the window without its last item and `target` the window shifted
  by one, so history position t is aligned with the item that came next. The trainer turns this into
  next-item (or next-`window`-items) positives per position.
- `cuts`: the paper's history/target cuts, each target a set that every history position predicts
  (`train_cuts` cuts per user, each a target's length earlier).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from learnkit.core.configload import option
from learnkit.core.errors import DataError
from learnkit.core.sql import EngineConfig
from learnkit.data.period import TestPeriodConfig, test_period, validation_start
from learnkit.data.sequences import UserSequence, UserSequences, user_sequences


@dataclass
class SplitConfig:
    kind: Literal["temporal", "leave_one_out", "given"] = option(
        "temporal",
        help="temporal: by time; leave_one_out: each user's last item is the test, the one before validation; "
        "given: the dataset's own split column",
    )
    boundary: Literal["global_time", "user_fraction", "test_period"] = option(
        "user_fraction",
        help="temporal only: one cut-off time for everyone (global_time), each user's own last target_fraction "
        "(user_fraction), or the run's test period (test_period)",
    )
    cutoff_quantile: float = option(0.8, help="global_time: the cut-off as a quantile of all event times")
    cutoff_ts: int | None = option(None, help="global_time: the cut-off as a timestamp")
    target_fraction: float = option(0.2, help="user_fraction: the share of each user's events that are targets")
    history_max: int = option(80, help="the newest items of a history that are kept")
    target_max: int = option(40, help="the most targets per test user")
    valid_users: float = option(0.1, help="share of users held out for validation (early stopping)")
    test_users: float = option(0.1, help="share of users held out for the test (unless evaluate_all_users)")
    positives_only: bool = option(False, help="keep only label-1 events as interactions")
    train_examples: Literal["sequence", "cuts"] = option(
        "sequence",
        help="sequence: next item(s) at every position of the training sequences; cuts: the paper's "
        "history/target cuts",
    )
    train_cuts: int = option(
        1, help="with cuts: training examples per training user, each further one cut a target's length earlier"
    )
    salt: str = option("learn-kit", help="salt of the user hash that assigns held-out users")
    evaluate_all_users: bool = option(
        False,
        help="user_fraction: evaluate every user on their own last target_fraction (training on everyone's "
        "events before their targets) instead of a hashed share of held-out users",
    )

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
    return np.array([int(hashlib.sha256(f"{salt}:{u}".encode()).hexdigest()[:12], 16) / 16**12 for u in user_ids])


def _examples(rows: list[tuple[str, list[str], list[str], str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "history", "target", "part"])


Row = tuple[str, list[str], list[str], str]


def sequence_rows(user: str, sequence: list[str], history_max: int) -> list[Row]:
    """Next-item training rows of one sequence: windows of `history_max + 1` items from the newest back,
    overlapping by one item so that every item after the first is a target exactly once."""
    rows: list[Row] = []
    end = len(sequence)
    while end >= 2:
        start = max(0, end - (history_max + 1))
        window = sequence[start:end]
        rows.append((user, window[:-1], window[1:], "train"))
        if start == 0:
            break
        end = start + 1
    return rows


def make_split(
    events: pd.DataFrame,
    config: SplitConfig,
    in_test_period: np.ndarray | None = None,
    engine: EngineConfig | None = None,
    require_examples: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Returns (examples, stats); examples has columns user_id, history, target, part.
    `in_test_period` ([events] bool, aligned with `events`) is needed by `boundary: test_period`. The users'
    sequences are sorted in DuckDB under `engine` (`learnkit.data.sequences`). A split with no examples is an
    error unless `require_examples` is false (one bucket of users of a bucketed split)."""
    columns: list[str] = []
    if config.boundary == "test_period" and config.kind == "temporal":
        if in_test_period is None:
            raise DataError("split boundary 'test_period' needs the run's test period")
        events, columns = events.assign(_in_test=np.asarray(in_test_period, dtype=bool)), ["_in_test"]
    if config.kind == "given":
        if "split" not in events.columns:
            raise DataError("split kind 'given' needs a 'split' column in events (e.g. the unisrec importer)")
        columns = ["split"]
    sequences = user_sequences(events, config.positives_only, columns, engine)
    rows: list[Row] = []
    skipped = 0
    stats: dict = {"kind": config.kind, "example_kind": config.train_examples}
    if config.kind == "temporal" and config.boundary == "test_period":
        rows, skipped, stats["users_without_history"] = _test_period_rows(sequences, config, _in_test_period)
    elif config.kind == "temporal" and config.boundary == "user_fraction" and config.evaluate_all_users:
        rows, skipped, _ = _test_period_rows(sequences, config, _own_last_fraction(config.target_fraction))
    elif config.kind == "temporal":
        bucket = dict(zip(sequences.users, user_bucket(pd.Series(sequences.users), config.salt), strict=True))
        cutoff = None
        if config.boundary == "global_time":
            cutoff = (
                config.cutoff_ts
                if config.cutoff_ts is not None
                else int(np.quantile(sequences.ts, config.cutoff_quantile))
            )
            stats["cutoff_ts"] = int(cutoff)
        for sequence in sequences:
            user, items, ts = sequence.user, sequence.items, sequence.ts
            if cutoff is not None:
                split_at = int(np.searchsorted(ts, cutoff, side="left"))
            else:
                split_at = len(items) - max(1, int(round(config.target_fraction * len(items))))
            history, target = items[:split_at][-config.history_max :], items[split_at:][: config.target_max]
            if not history or not target:
                skipped += 1
                continue
            b = bucket[user]
            part = (
                "test"
                if b < config.test_users
                else ("valid" if b < config.test_users + config.valid_users else "train")
            )
            if part == "train" and config.train_examples == "sequence":
                rows += sequence_rows(user, items[: split_at + len(target)], config.history_max)
                continue
            rows.append((user, history, target, part))
            if part == "train":  # earlier cuts of the same user's sequence: more training examples
                stride = len(target)
                for cut in range(1, config.train_cuts):
                    at = split_at - cut * stride
                    if at < 1:
                        break
                    rows.append((user, items[:at][-config.history_max :], items[at : at + stride], part))
    elif config.kind == "leave_one_out":
        for sequence in sequences:
            items = sequence.items
            if len(items) < 3:
                skipped += 1
                continue
            rows += _leave_one_out(sequence.user, items[:-2], items[-2], items[-1], config)
    elif config.kind == "given":
        for sequence in sequences:
            user, parts, items = sequence.user, sequence.columns["split"].tolist(), sequence.items
            train = [i for i, p in zip(items, parts, strict=True) if p == "train"]
            valid = [i for i, p in zip(items, parts, strict=True) if p == "valid"]
            test = [i for i, p in zip(items, parts, strict=True) if p == "test"]
            if len(train) < 2 or len(valid) != 1 or len(test) != 1:
                skipped += 1
                continue
            rows += _leave_one_out(user, train, valid[0], test[0], config)
    examples = _examples(rows)
    if examples.empty and require_examples:
        raise DataError(f"split {config.kind!r} left no examples (users skipped: {skipped})")
    counts = examples["part"].value_counts()
    stats.update(
        {"users_skipped": skipped, **{f"{p}_examples": int(counts.get(p, 0)) for p in ("train", "valid", "test")}}
    )
    return examples, stats


def split_around_period(
    events: pd.DataFrame,
    config: SplitConfig,
    period: TestPeriodConfig,
    before_period: bool,
    ranker_valid_fraction: float | None = None,
    engine: EngineConfig | None = None,
    starts: tuple[int | None, int | None] | None = None,
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(examples, stats, the events the model may see). With `boundary: test_period` the test targets are
    the users' events in the run's test period and training sees only what came before it; with
    `before_period` the whole split is made inside the events before the test period, and with
    `ranker_valid_fraction` also before the ranker's validation slice (its newest share of those events).
    Either way, the examples also hold `period` rows: each target in the test period with the history just
    before it (`period_examples`), for scoring the towers where the rankers are judged.

    `starts`: (the test period's start, the ranker's validation start) found over more events than these, for
    one bucket of users of a bucketed split (`learnkit.data.bucketed`), which also takes a bucket with no
    examples."""
    on_period = config.kind == "temporal" and config.boundary == "test_period"
    bucket = starts is not None
    starts = starts or (None, None)
    found = test_period(events, period, starts[0]) if (before_period or on_period) else None
    if found is None:
        examples, stats = make_split(events, config, engine=engine, require_examples=not bucket)
        return examples, stats, events
    in_period = period_examples(events, found.in_test, config, engine)
    if on_period:
        examples, stats = make_split(events, config, found.in_test, engine, require_examples=not bucket)
        stats["test_period"] = found.description
        return _with_period_rows(examples, stats, in_period), stats, events[~found.in_test]
    events = events[~found.in_test]
    cutoff = None
    if ranker_valid_fraction is not None:
        cutoff = starts[1] if bucket else validation_start(events["ts"].to_numpy(), ranker_valid_fraction)
        events = events[events["ts"].to_numpy() < cutoff]
    examples, stats = make_split(events, config, engine=engine, require_examples=not bucket)
    stats["trained_before"] = found.description + (
        f", and before the ranker's validation slice (ts {cutoff} on)" if cutoff is not None else ""
    )
    return _with_period_rows(examples, stats, in_period), stats, events


def _with_period_rows(examples: pd.DataFrame, stats: dict, in_period: pd.DataFrame) -> pd.DataFrame:
    stats.update(period_examples=len(in_period), period_users=int(in_period["user_id"].nunique()))
    return pd.concat([examples, in_period], ignore_index=True) if len(in_period) else examples


def period_examples(
    events: pd.DataFrame, in_test: np.ndarray, config: SplitConfig, engine: EngineConfig | None = None
) -> pd.DataFrame:
    """One `period` row per interaction in the test period (positives with `positives_only`) of a user with
    an earlier one: the target alone, the history the user's newest `history_max` interactions strictly
    before it in time (earlier test-period ones included, as a refreshed user vector would hold them)."""
    marked = events.assign(_in_test=np.asarray(in_test, dtype=bool))
    rows: list[Row] = []
    for sequence in user_sequences(marked, config.positives_only, ["_in_test"], engine):
        items, ts, inside = sequence.items, sequence.ts, sequence.columns["_in_test"]
        before = np.searchsorted(ts, ts, side="left")  # how many of the user's events precede each one
        for at in np.flatnonzero(inside & (before > 0)):
            rows.append((sequence.user, items[: before[at]][-config.history_max :], [items[at]], "period"))
    return _examples(rows)


def _in_test_period(sequence: UserSequence) -> np.ndarray:
    return sequence.columns["_in_test"]


def _own_last_fraction(fraction: float):
    def split(sequence: UserSequence) -> np.ndarray:
        n = len(sequence)
        n_target = max(1, int(round(fraction * n))) if n >= 2 else 0
        return np.arange(n) >= n - n_target

    return split


def _test_period_rows(
    sequences: UserSequences, config: SplitConfig, is_target: Callable[[UserSequence], np.ndarray]
) -> tuple[list[Row], int, int]:
    """Every user with events before their targets (`is_target(sequence)`: [events] bool) and targets is a
    test example; training and validation only ever see the events before the targets."""
    rows: list[Row] = []
    skipped = without_history = 0
    bucket = dict(zip(sequences.users, user_bucket(pd.Series(sequences.users), config.salt), strict=True))
    for sequence in sequences:
        user, in_test, items = sequence.user, is_target(sequence), sequence.items
        before = [i for i, t in zip(items, in_test, strict=True) if not t]
        during = [i for i, t in zip(items, in_test, strict=True) if t]
        if not before:
            without_history += int(bool(during))
            skipped += 1
            continue
        train = before
        if bucket[user] < config.valid_users and len(before) >= 2:
            n_valid = min(len(before) - 1, max(1, int(round(config.target_fraction * len(before)))))
            train = before[:-n_valid]
            rows.append((user, train[-config.history_max :], before[-n_valid:][: config.target_max], "valid"))
        rows += _train_rows(user, train, config)
        if during:
            rows.append((user, before[-config.history_max :], during[: config.target_max], "test"))
    return rows, skipped, without_history


def _train_rows(user: str, train: list[str], config: SplitConfig) -> list[Row]:
    """The training examples of one user's training items, as `train_examples` asks."""
    if config.train_examples == "sequence":
        return sequence_rows(user, train, config.history_max)
    n_target = min(config.target_max, max(1, int(round(config.target_fraction * len(train)))))
    n_target = min(n_target, len(train) - 1)
    rows = []
    for cut in range(config.train_cuts if n_target >= 1 else 0):  # earlier cuts: more training examples
        at = len(train) - (cut + 1) * n_target
        if at < 1:
            break
        rows.append((user, train[:at][-config.history_max :], train[at : at + n_target], "train"))
    return rows


def _leave_one_out(user: str, train: list[str], valid: str, test: str, config: SplitConfig) -> list[Row]:
    rows = _train_rows(user, train, config)
    rows.append((user, train[-config.history_max :], [valid], "valid"))
    rows.append((user, (train + [valid])[-config.history_max :], [test], "test"))
    return rows


def training_item_counts(examples: pd.DataFrame, train_examples: str) -> pd.Series:
    """How often each item occurs in the events the training examples were made from (item_id -> count):
    popularity's scores, and the test targets with a count of 0 are the cold items.

    `sequence` windows overlap by one item, so each window counts its targets and a user's oldest window
    also its first item. `cuts` are nested, so each user's newest cut (the first row) holds them all, up to
    `history_max`."""
    train = examples[examples["part"] == "train"]
    if train.empty:
        return pd.Series(dtype="int64")
    if train_examples == "sequence":
        oldest = train.groupby("user_id", sort=False).tail(1)
        items = [i for t in train["target"] for i in t] + [h[0] for h in oldest["history"]]
    else:
        newest = train.groupby("user_id", sort=False).head(1)
        items = [i for h, t in zip(newest["history"], newest["target"], strict=True) for i in list(h) + list(t)]
    return pd.Series(items, dtype="object").value_counts()
