"""The ranker comparison of one run (paper Fig. 5): the ID baseline and the LEARN rankers trained on the same
samples, each scored on the test period and saved as a SavedModel, beside a popularity reference row."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from export.content_inputs import MODEL
from export.tables import open_export, read_table
from learnkit.core.errors import ConfigError, DataError
from learnkit.core.sql import EngineConfig
from learnkit.data.period import TestPeriod
from ranking.config import RankingConfig
from ranking.model import Vocabulary
from ranking.pointintime import join_user_snapshots, learn_columns, vector_coverage
from ranking.samples import ranking_samples
from ranking.tables import FeatureTable, embed_new_items, read_feature_table
from ranking.train import predict, save_serving, train_ranker

log = logging.getLogger(__name__)
UAUC = Callable[[np.ndarray, np.ndarray, np.ndarray], float]  # (users, labels, scores) -> UAUC, from eval


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
    uauc: UAUC  # chooses the shipped ranker on the validation slice (the stage passes eval's)
    engine: EngineConfig = field(default_factory=EngineConfig)  # the as-of joins' DuckDB limits


@dataclass(frozen=True)
class RankingRun:
    rows: pd.DataFrame  # every sample: train, valid and test parts
    test: pd.DataFrame  # the test rows with a score column per ranker and `popularity`, and `snapshot`
    training: dict[str, Any]  # per ranker: history, best epoch, speed, SavedModel parity
    samples: dict[str, Any]  # the samples' figures and the user-vector coverage
    description: str  # how the negatives were drawn, in words
    selection: dict[str, Any]  # validation and test UAUC of every ranker and seed, and the shipped candidate


def attribute_maps(table: pd.DataFrame, id_column: str, columns: list[str], key: str) -> dict[str, dict[str, str]]:
    out = {}
    for column in columns:
        if column not in table.columns:
            raise ConfigError(f"key '{key}': column {column!r} is not in the data (has {', '.join(table.columns)})")
        values = table[column].astype("string").fillna("")
        out[column] = dict(zip(table[id_column].astype(str), values.astype(str), strict=True))
    return out


def _user_columns(cfg: RankingConfig) -> list[str]:
    """Every user column a ranker reads: the baseline's and each candidate's."""
    chosen = [c.user_features or [] for c in cfg.candidates.values()]
    return sorted({*cfg.model.user_features, *(column for columns in chosen for column in columns)})


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
        events,
        inputs.items,
        period.in_test,
        cfg.samples,
        inputs.seed,
        inputs.in_valid,
        inputs.ordinal_time,
        inputs.engine,
    )
    rows = samples.rows
    train_rows = rows[rows["part"] != "test"]
    vocabulary = Vocabulary(
        users=sorted(train_rows["user_id"].unique().tolist()),
        items=sorted(train_rows["item_id"].unique().tolist()),
        user_attributes=attribute_maps(inputs.users, "user_id", _user_columns(cfg), "ranking.model.user_features"),
        item_attributes=attribute_maps(inputs.items, "item_id", cfg.model.item_features, "ranking.model.item_features"),
    )
    fmt = cfg.train.table_format
    user_table = read_feature_table(inputs.exports, "users", fmt)
    item_table, from_text = _with_new_items(inputs, read_feature_table(inputs.exports, "items", fmt), manifest, rows)
    # every sample reads the user snapshot of its own time (never one built from its event or later ones)
    snapshots, _ = read_table(inputs.exports, "user_snapshots", expect_version=manifest["version"])
    joined = join_user_snapshots(rows, snapshots, inputs.engine)
    columns = learn_columns(
        rows, snapshots, item_table.ids.astype(str), item_table.vectors, item_table.flags, item_table.fallback, joined
    )
    is_test = (rows["part"] == "test").to_numpy()
    test = rows[is_test].reset_index(drop=True)
    test_columns = {k: v[is_test] for k, v in columns.items()}
    history = events[events["label"] == 1] if inputs.positives_only else events
    coverage = vector_coverage(rows, is_test, columns, joined, user_table.ids, user_table.flags, history, inputs.engine)
    training, scores, selection = _train_every_ranker(inputs, rows, vocabulary, (user_table, item_table), columns,
                                                      test, test_columns, savedmodel)  # fmt: skip
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
        **from_text,
    }
    scored = test.assign(**scores, snapshot=period.user_snapshot(test["user_id"]))
    return RankingRun(rows, scored, training, figures, samples.description, selection)


def _with_new_items(
    inputs: RankingInputs, table: FeatureTable, manifest: dict[str, Any], rows: pd.DataFrame
) -> tuple[FeatureTable, dict[str, Any]]:
    """The export's item table plus the samples' items it lacks (those new in the test period), embedded from
    their text through the export's content model and item tower, as production embeds a new item; an export
    without a content model leaves them on the fallback vector (flag 0)."""
    missing = table.missing(rows["item_id"])
    if not missing:
        return table, {"items_embedded_from_text": 0}
    if f"towers/{MODEL}" not in manifest["files"]:
        log.warning("%d items of the samples are not in the export and it has no content model: fallback", len(missing))
        return table, {"items_embedded_from_text": 0, "items_on_fallback": len(missing)}
    items = inputs.items.assign(item_id=inputs.items["item_id"].astype(str)).set_index("item_id")
    new = items.loc[missing].reset_index()
    started = time.perf_counter()
    vectors = embed_new_items(inputs.exports, new, manifest["version"])
    took = time.perf_counter() - started
    log.info("%d items new to the export embedded from their text in %.1f s", len(missing), took)
    return table.with_rows(missing, vectors), {
        "items_embedded_from_text": len(missing),
        "items_from_text": "ranking.tables.embed_new_items: the export's tokenizer, CEG model (ONNX Runtime) and "
        "TF item tower",
    }


def _train_every_ranker(
    inputs: RankingInputs,
    rows: pd.DataFrame,
    vocabulary: Vocabulary,
    tables: tuple[FeatureTable, FeatureTable],
    columns: dict[str, np.ndarray],
    test: pd.DataFrame,
    test_columns: dict[str, np.ndarray],
    savedmodel: Callable[[str], Path],
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """The baseline and every candidate, once per seed; the candidate with the best validation UAUC (of the
    first seed) ships as `learn`. Returns (training figures, test scores, selection)."""
    cfg = inputs.config
    valid = rows[rows["part"] == "valid"]
    is_valid = (rows["part"] == "valid").to_numpy()
    valid_columns = {k: v[is_valid] for k, v in columns.items()}

    def uauc_of(part: pd.DataFrame, probabilities: np.ndarray) -> float:
        return inputs.uauc(part["user_id"].to_numpy(), part["label"].to_numpy(), probabilities)

    per_seed: dict[str, dict[str, list[float]]] = {}
    training: dict[str, Any] = {}
    scores: dict[str, np.ndarray] = {}
    models: dict[str, Any] = {}
    for seed in [cfg.train.seed, *cfg.seeds]:
        first = seed == cfg.train.seed
        trained_baseline = None
        for name in ["baseline", *cfg.candidates]:
            log.info("ranker %s, seed %d: training on %d rows (%d validation)", name, seed,
                     int((rows.part == "train").sum()), int(is_valid.sum()))  # fmt: skip
            trained = train_ranker(
                rows, vocabulary, cfg, *tables, columns=columns, candidate=None if name == "baseline" else name,
                seed=seed, baseline=trained_baseline, valid_score=lambda p: uauc_of(valid, p),
            )  # fmt: skip
            if name == "baseline":
                trained_baseline = trained.model
            figures = per_seed.setdefault(name, {"valid_uauc": [], "test_uauc": []})
            figures["valid_uauc"].append(uauc_of(valid, predict(trained.model, valid, columns=valid_columns)))
            test_scores = predict(trained.model, test, columns=test_columns)
            figures["test_uauc"].append(uauc_of(test, test_scores))
            if first:
                scores[name], models[name] = test_scores, trained.model
                training[name] = {
                    "history": trained.history,
                    "best_epoch": trained.best_epoch,
                    "epochs_run": trained.epochs_run,
                    "examples_per_s": round(trained.examples_per_s, 1),
                }
    valid_first = {name: figures["valid_uauc"][0] for name, figures in per_seed.items()}
    shipped = max(cfg.learn_candidates, key=lambda name: valid_first[name])
    scores["learn"] = scores[shipped]
    for name, model in (("baseline", models["baseline"]), ("learn", models[shipped])):
        training.setdefault(name, dict(training[shipped]))
        training[name]["savedmodel_max_abs_diff"] = save_serving(model, savedmodel(name), test.head(256))
    selection = {
        "shipped": shipped,
        "valid_uauc": valid_first,
        "beats_baseline": bool(valid_first[shipped] > valid_first["baseline"]),
        "seeds": [cfg.train.seed, *cfg.seeds],
        "per_seed": per_seed,
    }
    return training, scores, selection
