"""The ranker comparison of one run (paper Fig. 5): the ID baseline and the LEARN rankers trained on the same
samples, each scored on the test period and saved as a SavedModel, beside a popularity reference row."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from export.tables import open_export, read_table
from learnkit.core.errors import ConfigError, DataError
from learnkit.data.period import TestPeriod
from ranking.config import RankingConfig
from ranking.model import Vocabulary
from ranking.pointintime import join_user_snapshots, learn_columns, vector_coverage
from ranking.samples import ranking_samples
from ranking.tables import read_feature_table
from ranking.train import predict, save_serving, train_ranker

log = logging.getLogger(__name__)
RANKERS = (("baseline", False, False), ("learn", True, False), ("learn_similarity", True, True))  # name, LEARN, sim


@dataclass(frozen=True)
class RankingInputs:
    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame  # user attributes (may be empty)
    period: TestPeriod
    exports: Path  # the export stage's folder
    config: RankingConfig
    seed: int
    in_valid: np.ndarray | None  # [events] bool: the validation slice, where the data names one
    ordinal_time: bool
    positives_only: bool  # user histories count positive events only (as PCH's split did)


@dataclass(frozen=True)
class RankingRun:
    rows: pd.DataFrame  # every sample: train, valid and test parts
    test: pd.DataFrame  # the test rows with a score column per ranker and `popularity`, and `snapshot`
    training: dict[str, Any]  # per ranker: history, best epoch, speed, SavedModel parity
    samples: dict[str, Any]  # the samples' figures and the user-vector coverage
    description: str  # how the negatives were drawn, in words


def attribute_maps(table: pd.DataFrame, id_column: str, columns: list[str], key: str) -> dict[str, dict[str, str]]:
    out = {}
    for column in columns:
        if column not in table.columns:
            raise ConfigError(f"key '{key}': column {column!r} is not in the data (has {', '.join(table.columns)})")
        values = table[column].astype("string").fillna("")
        out[column] = dict(zip(table[id_column].astype(str), values.astype(str), strict=True))
    return out


def train_and_score(inputs: RankingInputs, savedmodel: Callable[[str], Path]) -> RankingRun:
    """Draw the samples, join each to its user's point-in-time snapshot, train every ranker on them (each
    saved as a SavedModel at `savedmodel(name)`) and score the test rows."""
    cfg, events, period = inputs.config, inputs.events, inputs.period
    _, manifest = open_export(inputs.exports)
    if manifest["metadata"].get("snapshot") != period.description:
        raise DataError(
            f"{inputs.exports}: the export's snapshot ({manifest['metadata'].get('snapshot')}) "
            f"is not this run's test period ({period.description}); re-run the export stage"
        )
    samples = ranking_samples(
        events, inputs.items, period.in_test, cfg.samples, inputs.seed, inputs.in_valid, inputs.ordinal_time
    )
    rows = samples.rows
    train_rows = rows[rows["part"] != "test"]
    vocabulary = Vocabulary(
        users=sorted(train_rows["user_id"].unique().tolist()),
        items=sorted(train_rows["item_id"].unique().tolist()),
        user_attributes=attribute_maps(inputs.users, "user_id", cfg.model.user_features, "ranking.model.user_features"),
        item_attributes=attribute_maps(inputs.items, "item_id", cfg.model.item_features, "ranking.model.item_features"),
    )
    fmt = cfg.train.table_format
    user_table = read_feature_table(inputs.exports, "users", fmt)
    item_table = read_feature_table(inputs.exports, "items", fmt)
    # every sample reads the user snapshot of its own time (never one built from its event or later ones)
    snapshots, _ = read_table(inputs.exports, "user_snapshots", expect_version=manifest["version"])
    joined = join_user_snapshots(rows, snapshots)
    columns = learn_columns(
        rows, snapshots, item_table.ids.astype(str), item_table.vectors, item_table.flags, item_table.fallback, joined
    )
    is_test = (rows["part"] == "test").to_numpy()
    test = rows[is_test].reset_index(drop=True)
    test_columns = {k: v[is_test] for k, v in columns.items()}
    history = events[events["label"] == 1] if inputs.positives_only else events
    coverage = vector_coverage(rows, is_test, columns, joined, user_table.ids, user_table.flags, history)
    training, scores = {}, {}
    for name, uses_learn, similarity in RANKERS:
        log.info(
            "ranker %s: training on %d rows (%d validation)",
            name,
            int((rows.part == "train").sum()),
            int((rows.part == "valid").sum()),
        )
        tables = (user_table, item_table) if uses_learn else (None, None)
        trained = train_ranker(rows, vocabulary, cfg, *tables, similarity=similarity, columns=columns)
        scores[name] = predict(trained.model, test, columns=test_columns)
        training[name] = {
            "history": trained.history,
            "best_epoch": trained.best_epoch,
            "epochs_run": len(trained.history),
            "examples_per_s": round(trained.examples_per_s, 1),
            "savedmodel_max_abs_diff": save_serving(trained.model, savedmodel(name), test.head(256)),
        }
    # the reference row: each item's positive training samples (what a most-popular list ranks by)
    train_part = rows[~is_test]
    positives = train_part.loc[train_part["label"] == 1, "item_id"].value_counts()
    scores["popularity"] = positives.reindex(test["item_id"]).fillna(0).to_numpy(dtype=float)
    figures = {
        "negatives": samples.negatives,
        **({"negatives_per_conversion": cfg.samples.negatives_per_positive} if samples.negatives == "sampled" else {}),
        "description": samples.description,
        "test_period": period.description,
        "export_version": manifest["version"],
        "table_format": fmt,
        **{f"{p}_rows": int((rows.part == p).sum()) for p in ("train", "valid", "test")},
        "test_positive_rate": float(test["label"].mean()) if len(test) else float("nan"),
        **coverage,
    }
    scored = test.assign(**scores, snapshot=period.user_snapshot(test["user_id"]))
    return RankingRun(rows, scored, training, figures, samples.description)
