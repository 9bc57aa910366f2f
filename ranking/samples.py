"""Ranking samples from the canonical events (numpy and pandas only; no framework).

One row per exposure: user_id, item_id, ts, label, value, part. Events of the test period are test rows;
the others are training rows, of which a validation slice is held out for early stopping (the events the
dataset's split marks `valid` when it has such a split, else the newest `valid_fraction` by time).
Datasets with logged negatives (label 0, e.g. MovieLens ratings <= 3) use them as they are. Implicit-only
datasets get sampled exposures: for each conversion, `negatives_per_positive` items drawn at the
conversion's time, with weights (events in the period) ** `popularity_exponent`, from the items that exist
then (first seen in an event before it: no item is a negative before it exists; items with no event are
never drawn), never one the user already had by then. Nothing after the conversion decides its negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from learnkit.core.errors import DataError
from learnkit.core.sql import EngineConfig
from learnkit.data.firsts import first_times
from learnkit.data.period import validation_start
from learnkit.data.popularity import item_counts
from learnkit.data.sampling import draw_avoiding
from ranking.config import RankingSamplesConfig

COLUMNS = ["user_id", "item_id", "ts", "label", "value", "part"]


@dataclass
class Samples:
    rows: pd.DataFrame  # COLUMNS
    negatives: str  # "logged" or "sampled"
    description: str  # one sentence for the report, with any draws given up


def item_values(items: pd.DataFrame) -> pd.Series:
    """Revenue of one conversion of each item: its price, 1.0 where the data has none."""
    price = items.set_index("item_id")["price"] if "price" in items.columns else pd.Series(dtype=float)
    return price.reindex(items["item_id"]).fillna(1.0).astype(float)


def _draw(
    positives: pd.DataFrame,
    period: pd.DataFrame,
    per_positive: int,
    first_seen: pd.Series,
    owned_since: dict[tuple[str, str], int],
    exponent: float,
    rng: np.random.Generator,
    engine: EngineConfig | None = None,
) -> pd.DataFrame:
    """`per_positive` items per positive, weighted by (events in `period`) ** exponent, each existing before
    the positive's time and not yet the user's; a draw is given up (left out) only when 50 redraws clash."""
    counts = item_counts(period["item_id"], engine)
    pool = counts.index.to_numpy()
    weights = counts.to_numpy(dtype=float) ** exponent
    if len(pool) < 2:
        raise DataError("negative sampling needs events on at least two items in each period")
    owner = np.repeat(np.arange(len(positives)), per_positive)
    users = positives["user_id"].to_numpy()[owner]
    at = positives["ts"].to_numpy()[owner]
    born = first_seen.reindex(pool).to_numpy()
    never = np.iinfo(np.int64).max

    def clashes(index: np.ndarray, picks: np.ndarray) -> np.ndarray:
        not_yet = born[picks] >= at[index]
        had = np.fromiter(
            (owned_since.get((u, i), never) <= t for u, i, t in zip(users[index], pool[picks], at[index], strict=True)),
            bool,
            len(index),
        )
        return not_yet | had

    picks, kept = draw_avoiding(len(owner), len(pool), weights / weights.sum(), clashes, rng)
    return pd.DataFrame({"row": owner[kept], "user_id": users[kept], "item_id": pool[picks[kept]]})


def sampled_negatives(
    events: pd.DataFrame,
    items: pd.DataFrame,
    per_positive: int,
    seed: int,
    exponent: float = 1.0,
    ordinal_time: bool = False,
    engine: EngineConfig | None = None,
) -> tuple[pd.DataFrame, int]:
    """(negatives, draws given up). Training negatives follow the popularity of the training events, test
    negatives that of the test period: drawn from all events, an item that sells mostly in the test period
    would look like a negative in training and the test would reward guessing against it. The per-item and
    per-user aggregates (popularity, first-seen times) run in DuckDB under `engine`."""
    rng = np.random.default_rng(seed)
    first_seen = first_times(events, ["item_id"], engine)
    if ordinal_time:  # positions in different users' sequences say nothing about when an item existed
        first_seen = first_seen * 0 + np.iinfo(np.int64).min
    owned_since = first_times(events, ["user_id", "item_id"], engine).to_dict()
    values = item_values(items)
    out, given_up = [], 0
    for in_test in (False, True):
        period = events[events["_test"] == in_test]
        positives = period[period["label"] == 1]
        if positives.empty:
            continue
        drawn = _draw(positives, period, per_positive, first_seen, owned_since, exponent, rng, engine)
        given_up += len(positives) * per_positive - len(drawn)
        source = positives.iloc[drawn["row"].to_numpy()]
        out.append(
            source.drop(columns=["item_id", "label", "value"]).assign(
                item_id=drawn["item_id"].to_numpy(), label=np.int8(0), value=values.reindex(drawn["item_id"]).to_numpy()
            )[list(events.columns)]
        )
    return pd.concat(out, ignore_index=True), given_up


def ranking_samples(
    events: pd.DataFrame,
    items: pd.DataFrame,
    in_test: np.ndarray,
    config: RankingSamplesConfig,
    seed: int,
    in_valid: np.ndarray | None = None,
    ordinal_time: bool = False,
    engine: EngineConfig | None = None,
) -> Samples:
    """`in_test` marks the events of the test period; `in_valid` (optional) the validation events."""
    if "request_id" in events:  # an impressions log: the ranker's rows are exactly the logged impressions
        shown = (events["request_id"].fillna("") != "").to_numpy()
        in_test, events = np.asarray(in_test, bool)[shown], events[shown]
        in_valid = None if in_valid is None else np.asarray(in_valid, bool)[shown]
    has_negatives = bool((events["label"] == 0).any())
    mode = config.negatives if config.negatives != "auto" else ("logged" if has_negatives else "sampled")
    base = events[
        ["user_id", "item_id", "ts", "label", "value", *(["request_id"] if "request_id" in events else [])]
    ].assign(_test=np.asarray(in_test, bool), _valid=np.zeros(len(events), bool) if in_valid is None else in_valid)
    if mode == "logged":
        if not has_negatives:
            raise DataError("ranking.samples.negatives is 'logged' but the events have no label-0 rows")
        rows = base.copy()
        description = (
            f"logged exposures: {int((rows.label == 1).sum()):,} conversions and "
            f"{int((rows.label == 0).sum()):,} logged non-conversions"
        )
    else:
        positives = base[base["label"] == 1]
        negatives, given_up = sampled_negatives(
            base, items, config.negatives_per_positive, seed, config.popularity_exponent, ordinal_time, engine
        )
        rows = pd.concat([positives, negatives], ignore_index=True)
        description = (
            f"sampled exposures: {len(positives):,} conversions, each with "
            f"{config.negatives_per_positive} non-converted items drawn at the conversion's time with "
            f"weights (events in the same period, training or test) ** {config.popularity_exponent:g}, "
            + (
                "from every item with an event (ordinal time: positions of different users' sequences "
                "do not order items) not already the user's at that position"
                if ordinal_time
                else "from the items first seen before that time and not already the user's"
            )
            + (f"; {given_up:,} draws given up (no such item found in 50 tries)" if given_up else "")
        )
    rows = rows.sort_values(["ts", "user_id", "item_id", "label"], kind="stable").reset_index(drop=True)
    train = ~rows["_test"].to_numpy()
    if not train.any() or train.all():
        raise DataError("the test period leaves no training or no test rows")
    valid = rows["_valid"].to_numpy() & train
    if in_valid is None:
        valid_from = validation_start(rows.loc[train, "ts"].to_numpy(), config.valid_fraction)
        valid = train & (rows["ts"].to_numpy() >= valid_from)
    rows["part"] = np.where(~train, "test", np.where(valid, "valid", "train"))
    if not (rows["part"] == "train").any():
        raise DataError("the validation slice took every training row; lower ranking.samples.valid_fraction")
    rows["label"] = rows["label"].astype(np.int8)
    extra = ["request_id"] if mode == "logged" and "request_id" in rows else []
    return Samples(rows[COLUMNS + extra], mode, description)
