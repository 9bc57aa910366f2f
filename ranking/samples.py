"""Ranking samples from the canonical events (numpy and pandas only; no framework).

One row per exposure: user_id, item_id, ts, label, value, part. Events of the test period are test rows;
the others are training rows, of which a validation slice is held out for early stopping (the events the
dataset's split marks `valid` when it has such a split, else the newest `valid_fraction` by time). Datasets with logged negatives (label 0, e.g. MovieLens ratings
<= 3) use them as they are. Implicit-only datasets get sampled exposures: for each conversion,
`negatives_per_positive` items drawn in proportion to their number of events (items with no event are
never drawn), excluding the user's own items, at the conversion's time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from learnkit.config import RankingSamplesConfig
from learnkit.errors import DataError
from learnkit.sampling import draw_avoiding

COLUMNS = ["user_id", "item_id", "ts", "label", "value", "part"]


@dataclass
class Samples:
    rows: pd.DataFrame   # COLUMNS
    negatives: str       # "logged" or "sampled"
    description: str     # one sentence for the report, with any draws given up


def item_values(items: pd.DataFrame) -> pd.Series:
    """Revenue of one conversion of each item: its price, 1.0 where the data has none."""
    price = items.set_index("item_id")["price"] if "price" in items.columns else pd.Series(dtype=float)
    return price.reindex(items["item_id"]).fillna(1.0).astype(float)


def _draw(positives: pd.DataFrame, period: pd.DataFrame, per_positive: int, seen: set[tuple[str, str]],
          rng: np.random.Generator) -> pd.DataFrame:
    """`per_positive` items per positive, in proportion to their number of events in `period`, never an
    item its user has; a draw is given up (left out) only when 50 redraws all hit the user's own items."""
    counts = period["item_id"].value_counts()
    pool, probs = counts.index.to_numpy(), (counts / counts.sum()).to_numpy()
    if len(pool) < 2:
        raise DataError("negative sampling needs events on at least two items in each period")
    owner = np.repeat(np.arange(len(positives)), per_positive)
    users = positives["user_id"].to_numpy()[owner]
    items, kept = draw_avoiding(users, pool, probs, seen, rng)
    return pd.DataFrame({"row": owner[kept], "user_id": users[kept], "item_id": items[kept]})


def sampled_negatives(events: pd.DataFrame, items: pd.DataFrame, per_positive: int,
                      seed: int) -> tuple[pd.DataFrame, int]:
    """(negatives, draws given up). Training negatives follow the popularity of the training events, test
    negatives that of the test period: drawn from all events, an item that sells mostly in the test period
    would look like a negative in training and the test would reward guessing against it."""
    rng = np.random.default_rng(seed)
    seen = set(zip(events["user_id"], events["item_id"]))
    values = item_values(items)
    out, given_up = [], 0
    for in_test in (False, True):
        period = events[events["_test"] == in_test]
        positives = period[period["label"] == 1]
        if positives.empty:
            continue
        drawn = _draw(positives, period, per_positive, seen, rng)
        given_up += len(positives) * per_positive - len(drawn)
        source = positives.iloc[drawn["row"].to_numpy()]
        out.append(source.drop(columns=["item_id", "label", "value"]).assign(
            item_id=drawn["item_id"].to_numpy(), label=np.int8(0),
            value=values.reindex(drawn["item_id"]).to_numpy())[list(events.columns)])
    return pd.concat(out, ignore_index=True), given_up


def ranking_samples(events: pd.DataFrame, items: pd.DataFrame, in_test: np.ndarray, config: RankingSamplesConfig,
                    seed: int, in_valid: np.ndarray | None = None) -> Samples:
    """`in_test` marks the events of the test period; `in_valid` (optional) the validation events."""
    has_negatives = bool((events["label"] == 0).any())
    mode = config.negatives if config.negatives != "auto" else ("logged" if has_negatives else "sampled")
    base = events[["user_id", "item_id", "ts", "label", "value"]].assign(
        _test=np.asarray(in_test, bool), _valid=np.zeros(len(events), bool) if in_valid is None else in_valid)
    if mode == "logged":
        if not has_negatives:
            raise DataError("ranking.samples.negatives is 'logged' but the events have no label-0 rows")
        rows = base.copy()
        description = (f"logged exposures: {int((rows.label == 1).sum()):,} conversions and "
                       f"{int((rows.label == 0).sum()):,} logged non-conversions")
    else:
        positives = base[base["label"] == 1]
        negatives, given_up = sampled_negatives(base, items, config.negatives_per_positive, seed)
        rows = pd.concat([positives, negatives], ignore_index=True)
        description = (f"sampled exposures: {len(positives):,} conversions, each with "
                       f"{config.negatives_per_positive} non-converted items drawn in proportion to their "
                       "number of events in the same period, training or test (the user's own items excluded)"
                       + (f"; {given_up:,} draws given up for users who have nearly every item" if given_up else ""))
    rows = rows.sort_values(["ts", "user_id", "item_id", "label"], kind="stable").reset_index(drop=True)
    train = ~rows["_test"].to_numpy()
    if not train.any() or train.all():
        raise DataError("the test period leaves no training or no test rows")
    valid = rows["_valid"].to_numpy() & train
    if in_valid is None:
        valid_from = np.quantile(rows.loc[train, "ts"].to_numpy(), 1 - config.valid_fraction, method="higher")
        valid = train & (rows["ts"].to_numpy() >= valid_from)
    rows["part"] = np.where(~train, "test", np.where(valid, "valid", "train"))
    if not (rows["part"] == "train").any():
        raise DataError("the validation slice took every training row; lower ranking.samples.valid_fraction")
    rows["label"] = rows["label"].astype(np.int8)
    return Samples(rows[COLUMNS], mode, description)
