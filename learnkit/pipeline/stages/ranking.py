"""The ranking stage (`learn-kit rank --config CONFIG`): the ID baseline and the LEARN rankers (paper
Fig. 5, and Fig. 5 with the LEARN similarity as an input) trained on the same samples, scored on the test
period, saved as SavedModels, and compared overall and by segment (TensorFlow, lazily; the comparison
itself is numpy-only `eval`)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from learnkit.config import Config
from learnkit.core.errors import ConfigError, DataError
from learnkit.core.formatting import md_table
from learnkit.core.frameworks import prepare_tensorflow
from learnkit.core.fsutil import read_json, write_json, write_parquet
from learnkit.pipeline.report import nan_to_null
from learnkit.pipeline.runner import Context, StageOutput
from learnkit.pipeline.stages.data import read_items

log = logging.getLogger(__name__)


def attribute_maps(table: pd.DataFrame, id_column: str, columns: list[str], key: str) -> dict[str, dict[str, str]]:
    out = {}
    for column in columns:
        if column not in table.columns:
            raise ConfigError(f"key '{key}': column {column!r} is not in the data (has {', '.join(table.columns)})")
        values = table[column].astype("string").fillna("")
        out[column] = dict(zip(table[id_column].astype(str), values.astype(str), strict=True))
    return out


def run_ranking(ctx: Context) -> StageOutput:
    prepare_tensorflow()
    from eval.ranking_report import ranking_metrics, ranking_report
    from eval.segments import segment_rows
    from export.tables import open_export, read_table
    from learnkit.data.period import test_period
    from ranking.model import Vocabulary
    from ranking.pointintime import join_user_snapshots, learn_columns
    from ranking.samples import ranking_samples
    from ranking.tables import read_feature_table
    from ranking.train import predict, save_serving, train_ranker

    config: Config = ctx.config
    cfg = config.ranking
    assert cfg is not None
    events = pd.read_parquet(ctx.layout.events)
    items = read_items(ctx.layout)
    _, manifest = open_export(ctx.layout.exports)
    period = test_period(events, config.test_period)
    if manifest["metadata"].get("snapshot") != period.description:
        raise DataError(
            f"{ctx.layout.exports}: the export's snapshot ({manifest['metadata'].get('snapshot')}) "
            f"is not this run's test period ({period.description}); re-run the export stage"
        )
    in_valid = None
    if config.test_period.kind == "split":
        in_valid = (events["split"] == "valid").to_numpy()
    ordinal = read_json(ctx.layout.validation).get("time") == "ordinal"
    samples = ranking_samples(events, items, period.in_test, cfg.samples, config.seed, in_valid, ordinal)
    rows = samples.rows
    write_parquet(ctx.stage_dir / "samples.parquet", rows)
    train_rows = rows[rows["part"] != "test"]
    users_file = ctx.layout.users
    users = pd.read_parquet(users_file) if users_file.is_file() else pd.DataFrame({"user_id": []})
    vocabulary = Vocabulary(
        users=sorted(train_rows["user_id"].unique().tolist()),
        items=sorted(train_rows["item_id"].unique().tolist()),
        user_attributes=attribute_maps(users, "user_id", cfg.model.user_features, "ranking.model.user_features"),
        item_attributes=attribute_maps(items, "item_id", cfg.model.item_features, "ranking.model.item_features"),
    )
    fmt = cfg.train.table_format
    user_table = read_feature_table(ctx.layout.exports, "users", fmt)
    item_table = read_feature_table(ctx.layout.exports, "items", fmt)
    # every sample reads the user snapshot of its own time (never one built from its event or later ones)
    snapshots, _ = read_table(ctx.layout.exports, "user_snapshots", expect_version=manifest["version"])
    joined = join_user_snapshots(rows, snapshots)
    columns = learn_columns(
        rows, snapshots, item_table.ids.astype(str), item_table.vectors, item_table.flags, item_table.fallback, joined
    )
    is_test = (rows["part"] == "test").to_numpy()
    test = rows[is_test].reset_index(drop=True)
    test_columns = {k: v[is_test] for k, v in columns.items()}
    history = events[events["label"] == 1] if config.pch is not None and config.pch.split.positives_only else events
    coverage = _vector_coverage(rows, is_test, columns, joined, user_table, history)
    training, scores, serving = {}, {}, {}
    learn_tables = (user_table, item_table)
    for name, tables, similarity in (
        ("baseline", (None, None), False),
        ("learn", learn_tables, False),
        ("learn_similarity", learn_tables, True),
    ):
        log.info(
            "ranker %s: training on %d rows (%d validation)",
            name,
            int((rows.part == "train").sum()),
            int((rows.part == "valid").sum()),
        )
        trained = train_ranker(rows, vocabulary, cfg, *tables, similarity=similarity, columns=columns)
        scores[name] = predict(trained.model, test, columns=test_columns)
        serving[name] = save_serving(trained.model, ctx.stage_dir / f"{name}_savedmodel", test.head(256))
        training[name] = {
            "history": trained.history,
            "best_epoch": trained.best_epoch,
            "epochs_run": len(trained.history),
            "examples_per_s": round(trained.examples_per_s, 1),
            "savedmodel_max_abs_diff": serving[name],
        }
    # the reference row: each item's positive training samples (what a most-popular list ranks by)
    train_part = rows[~is_test]
    positives = train_part.loc[train_part["label"] == 1, "item_id"].value_counts()
    scores["popularity"] = positives.reindex(test["item_id"]).fillna(0).to_numpy(dtype=float)
    scored = segment_rows(
        test.assign(**scores, snapshot=period.user_snapshot(test["user_id"])),
        events,
        period.user_snapshot(events["user_id"]),
        cfg.segments,
        config.test_period.day_seconds,
    )
    write_parquet(ctx.stage_dir / "scores.parquet", scored)
    metrics = ranking_metrics(scored, cfg.bootstrap, config.seed, cfg.wuauc_weight)
    metrics["training"] = training
    metrics["samples"] = {
        "negatives": samples.negatives,
        "description": samples.description,
        "test_period": period.description,
        "export_version": manifest["version"],
        "table_format": fmt,
        **{f"{p}_rows": int((rows.part == p).sum()) for p in ("train", "valid", "test")},
        "test_positive_rate": float(test["label"].mean()) if len(test) else float("nan"),
        **coverage,
    }
    text = ranking_report(
        metrics,
        ctx.stage_dir / "segment_deltas.png",
        f"{ctx.stage_dir.name}/segment_deltas.png",
        samples.description,
        cfg.bootstrap,
    )
    text += (
        f"\nUser vectors are joined point in time: each sample reads its user's newest snapshot row valid at "
        "or before it, built only from earlier events (the export's `user_snapshots`). "
        f"{100 * coverage['test_rows_with_user_vector']:.1f}% of the test rows carry a real user vector "
        f"({100 * coverage['test_rows_with_user_vector_single_snapshot']:.1f}% with one snapshot at each "
        "user's test-period start). Of the test rows whose user has any earlier interaction, "
        f"{100 * coverage['test_rows_with_history_and_vector']:.1f}% carry a vector; the others "
        f"({100 * coverage['test_rows_awaiting_first_snapshot']:.1f}% of all test rows) come from users whose "
        "whole history falls after the last snapshot before them (`export.snapshot_every`: "
        "`event` refreshes a user after each event).\n"
    )
    text += _training_table(training)
    metrics = nan_to_null(metrics)
    write_json(ctx.stage_dir / "metrics.json", metrics)  # the stage's figures on their own, as in metrics.json
    return StageOutput(metrics, text)


def _vector_coverage(
    rows: pd.DataFrame,
    is_test: np.ndarray,
    columns: dict[str, np.ndarray],
    joined: pd.DataFrame,
    users: Any,
    history: pd.DataFrame,
) -> dict[str, Any]:
    """How many test rows carry a real (non-fallback) user vector: point-in-time, and as the one snapshot at
    each user's test-period start gave it; and the leakage check, that no joined vector holds history from
    at or after its row's time."""
    ts = rows["ts"].to_numpy()
    has = joined["snapshot"].to_numpy() >= 0
    if (joined["history_end"].to_numpy()[has] >= ts[has]).any():
        raise DataError("a ranking sample's user vector holds history from at or after the sample: leakage")
    single = pd.Index(users.ids.astype(str)).get_indexer(rows["user_id"].astype(str))
    single_flag = np.where(single >= 0, users.flags[np.maximum(single, 0)], 0.0)
    test = np.asarray(is_test)
    # rows whose user has history before them but no snapshot yet: it all falls after the last snapshot
    earlier = pd.merge_asof(
        pd.DataFrame(
            {"user_id": rows["user_id"].astype(str).to_numpy(), "ts": ts, "position": np.arange(len(rows))}
        ).sort_values("ts"),
        pd.DataFrame(
            {"user_id": history["user_id"].astype(str).to_numpy(), "seen": history["ts"].to_numpy()}
        ).sort_values("seen"),
        left_on="ts",
        right_on="seen",
        by="user_id",
        allow_exact_matches=False,
    )
    has_history = earlier.sort_values("position")["seen"].notna().to_numpy()
    waiting = has_history & ~has
    return {
        "test_rows_with_user_vector": float(columns["user_has_embedding"][test].mean()) if test.any() else 0.0,
        "test_rows_with_history_and_vector": float(has[test & has_history].mean())
        if (test & has_history).any()
        else 0.0,
        "test_rows_awaiting_first_snapshot": float(waiting[test].mean()) if test.any() else 0.0,
        "test_rows_with_user_vector_single_snapshot": float(single_flag[test].mean()) if test.any() else 0.0,
        "train_rows_with_user_vector": float(columns["user_has_embedding"][~test].mean()),
        "user_vector": "point-in-time: the user's snapshot row with the largest valid_from <= the sample's time",
    }


def _training_table(training: dict) -> str:
    rows = [
        [
            name,
            t["epochs_run"],
            t["best_epoch"],
            t["history"][t["best_epoch"] - 1].get("val_main_auc", "n/a"),
            t["examples_per_s"],
            f"{t['savedmodel_max_abs_diff']:.1e}",
        ]
        for name, t in training.items()
    ]
    return "\nTraining (Adam, early stopping on the validation slice's AUC, the best epoch kept):\n\n" + md_table(
        [
            "model",
            "epochs run",
            "best epoch",
            "validation AUC",
            "examples/s",
            "SavedModel vs trained model, max abs diff",
        ],
        rows,
    )
