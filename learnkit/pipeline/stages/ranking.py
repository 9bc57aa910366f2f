"""The ranking stage (`learn-kit rank --config CONFIG`): the ID baseline and the LEARN rankers (paper
Fig. 5, and Fig. 5 with the LEARN similarity as an input) trained on the same samples, scored on the test
period, saved as SavedModels, and compared overall and by segment (TensorFlow, lazily; the comparison
itself is numpy-only `eval`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from learnkit.core.frameworks import prepare_tensorflow
from learnkit.core.fsutil import write_json, write_parquet
from learnkit.data.period import TestPeriod, test_period
from learnkit.pipeline.report import nan_to_null
from learnkit.pipeline.stage import Context, StageOutput
from learnkit.pipeline.stages.data import ordinal_time, read_items, read_users

if TYPE_CHECKING:
    from ranking.experiment import RankingInputs


def run_ranking(ctx: Context) -> StageOutput:
    prepare_tensorflow()
    from eval.ranking_report import protocol, ranking_metrics, ranking_report
    from eval.segments import segment_rows
    from ranking.experiment import train_and_score

    config, layout = ctx.config, ctx.layout
    cfg = config.ranking
    assert cfg is not None
    events = pd.read_parquet(layout.events)
    period = test_period(events, config.test_period)
    run = train_and_score(_inputs(ctx, events, period), layout.savedmodel)
    write_parquet(layout.ranking_samples, run.rows)
    day = config.test_period.day_seconds
    snapshot = period.user_snapshot(events["user_id"])
    scored = segment_rows(run.test, events, snapshot, cfg.segments, day, period.new_items(events))
    write_parquet(layout.ranking_scores, scored)
    metrics = ranking_metrics(
        scored, ["learn", *cfg.candidates], cfg.bootstrap, config.seed, cfg.wuauc_weight, config.run_engine()
    )
    metrics.update(training=run.training, samples=run.samples, protocol=protocol(run.samples), selection=run.selection)
    plot = layout.segment_plot
    text = ranking_report(metrics, plot, layout.link(plot), run.description, cfg.bootstrap)
    metrics = nan_to_null(metrics)
    write_json(layout.ranking_metrics, metrics)  # the stage's figures on their own, as in metrics.json
    return StageOutput(metrics, text)


def _inputs(ctx: Context, events: pd.DataFrame, period: TestPeriod) -> RankingInputs:
    """What the rankers read of the run: its data, the export, and the configs that made them."""
    from eval.metrics import user_auc
    from ranking.experiment import RankingInputs

    config, layout = ctx.config, ctx.layout
    assert config.ranking is not None
    engine = config.run_engine()
    return RankingInputs(
        events=events,
        items=read_items(layout),
        users=read_users(layout),
        period=period,
        exports=layout.exports,
        config=config.ranking,
        seed=config.seed,
        in_valid=(events["split"] == "valid").to_numpy() if config.test_period.kind == "split" else None,
        ordinal_time=ordinal_time(layout),
        positives_only=config.pch is not None and config.pch.split.positives_only,
        uauc=lambda users, labels, scores: user_auc(users, labels, scores, engine=engine).uauc,
        engine=engine,
    )
