"""Before any stage after `data` runs: can the canonical data serve every configured stage?

Each check names the stage, what it needs and what the data holds, so that a dataset too small for a stage, or
a test period with no events, stops the run in a second instead of as a library's error after minutes of
training (or as a version published from nothing).
"""

from __future__ import annotations

import pandas as pd

from learnkit.config import Config
from learnkit.core.errors import DataError
from learnkit.data.period import TestPeriod, test_period
from learnkit.data.splits import split_around_period
from learnkit.pipeline.layout import RunLayout


def preflight(config: Config, layout: RunLayout) -> None:
    """Raise one `DataError` naming every stage the data cannot serve; nothing when the data stage has not
    run yet (the stage that needs it says so)."""
    if not (layout.events.exists() and layout.items.is_file()):  # events: a file, or a folder of parts
        return
    events = pd.read_parquet(layout.events)
    items = pd.read_parquet(layout.items)
    problems = [*_i2i(config, items), *_pch(config, events)]
    if config.export is not None or config.ranking is not None:
        period = test_period(events, config.test_period)
        problems += _period(period, len(events)) or [*_ranking(config, events, period), *_ab(config, events, period)]
    if problems:
        raise DataError(f"{layout.events}: the data cannot serve the configured stages: " + "; ".join(problems))


def _i2i(config: Config, items: pd.DataFrame) -> list[str]:
    column = config.i2i.label_column
    problems = []
    if len(items) < 2:
        problems.append(f"i2i: needs at least 2 items to find neighbours; the catalog holds {len(items)}")
    if column is not None and column not in items.columns:
        known = ", ".join(c for c in items.columns if c != "item_id")
        problems.append(
            f"i2i: key 'i2i.label_column': the items have no column {column!r} (they have: {known}); set one of them "
            "or null for no label figure"
        )
    return problems


def _pch(config: Config, events: pd.DataFrame) -> list[str]:
    pch = config.pch
    if pch is None:
        return []
    try:
        _, split, _ = split_around_period(
            events, pch.split, config.test_period, pch.train_before_test_period, config.ranker_validation,
            config.run_engine(),
        )  # fmt: skip
    except DataError as exc:
        return [f"pch: {exc}"]
    missing = [part for part in ("train", "test") if not split.get(f"{part}_examples")]
    if pch.train.patience or pch.train.select_best:
        missing += [] if split.get("valid_examples") else ["valid"]
    if not missing:
        return []
    counts = ", ".join(f"{split.get(f'{p}_examples', 0)} {p}" for p in ("train", "valid", "test"))
    return [
        f"pch: needs {' and '.join(missing)} examples; the split gives {counts} ({events['user_id'].nunique()} "
        f"users, {len(events)} events): more data, or other pch.split settings"
    ]


def _period(period: TestPeriod, n_events: int) -> list[str]:
    held = int(period.in_test.sum())
    if held == 0:
        return [
            f"test_period: the test period ({period.description}) holds no events: export, ranking and the A/B "
            "test have nothing to score; move test_period.start_ts or start_quantile earlier"
        ]
    if held == n_events:
        return [
            f"test_period: the test period ({period.description}) holds every event: nothing comes before it to "
            "train on"
        ]
    return []


def _ranking(config: Config, events: pd.DataFrame, period: TestPeriod) -> list[str]:
    if config.ranking is None:
        return []
    mode = config.ranking.samples.negatives
    logged = mode == "logged" or (mode == "auto" and bool((events["label"] == 0).any()))
    problems = []
    for part, rows in (("training rows (before the test period)", events[~period.in_test]),
                       ("test rows (the test period)", events[period.in_test])):  # fmt: skip
        labels = set(rows["label"].unique().tolist())
        needed = {0, 1} if logged else {1}
        if not needed <= labels:
            absent = " and ".join(f"label {v} ({'conversions' if v else 'logged non-conversions'})"
                                  for v in sorted(needed - labels))  # fmt: skip
            problems.append(f"ranking: the ranker needs both labels in its {part}; they hold no {absent}")
    if not problems and logged:
        test = events[period.in_test]
        both = int((test.groupby("user_id")["label"].nunique() == 2).sum())
        if both == 0:
            problems.append(
                "ranking: no user has both a conversion and a non-conversion in the test period: UAUC is undefined"
            )
    return problems


def _ab(config: Config, events: pd.DataFrame, period: TestPeriod) -> list[str]:
    ab = config.ab
    if ab is None:
        return []
    users = int(events.loc[period.in_test, "user_id"].nunique())
    smaller = min(ab.control_share, ab.treatment_share)
    if users * smaller < 2:
        return [
            f"ab: the A/B test needs at least 2 users in each arm; {users} users have test-period events, and the "
            f"smaller arm takes {smaller:g} of them"
        ]
    return []
