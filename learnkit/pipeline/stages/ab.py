"""The ab stage: a simulated A/B test of the two rankers' test-period scores (numpy/pandas/scikit-learn;
TensorFlow only to score widened requests through the rankers' SavedModels)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from learnkit.core.frameworks import prepare_tensorflow
from learnkit.core.fsutil import read_json, write_json, write_parquet
from learnkit.data.period import TestPeriod, test_period
from learnkit.pipeline.report import nan_to_null
from learnkit.pipeline.stage import Context, StageOutput
from learnkit.pipeline.stages.data import read_items


def _widened(
    ctx: Context, scores: pd.DataFrame, events: pd.DataFrame, items: pd.DataFrame, period: TestPeriod
) -> pd.DataFrame:
    """`ab.widen` sampled catalog items per request, scored by both rankers' SavedModels (TensorFlow in
    this stage only when widening is asked for)."""
    prepare_tensorflow()
    from eval.ab import add_requests, widen_requests
    from eval.segments import segment_rows
    from ranking.samples import item_values
    from ranking.train import score_savedmodel

    config = ctx.config
    assert config.ab is not None and config.ranking is not None
    requests = add_requests(scores, config.test_period.day_seconds)
    extra = widen_requests(requests, items["item_id"].to_numpy(dtype=str), config.ab.widen, config.seed)
    for model in ("baseline", "learn"):
        extra[model] = score_savedmodel(ctx.layout.savedmodel(model), extra)
    extra = extra.assign(label=np.nan, value=item_values(items).reindex(extra["item_id"]).to_numpy(), widened=True)
    return segment_rows(
        extra, events, period.user_snapshot(events["user_id"]), config.ranking.segments, config.test_period.day_seconds
    )


def run_ab(ctx: Context) -> StageOutput:
    from eval.ab import pre_period_revenue
    from eval.ab import run_ab as simulate
    from eval.ab_report import ab_metrics, ab_report, plot_daily_lift

    config, cfg, layout = ctx.config, ctx.config.ab, ctx.layout
    assert cfg is not None
    scores = pd.read_parquet(layout.ranking_scores)
    samples = pd.read_parquet(layout.ranking_samples)
    events = pd.read_parquet(layout.events)
    items = read_items(layout)
    period = test_period(events, config.test_period)
    if cfg.widen:
        widened = _widened(ctx, scores, events, items, period)
        scores = pd.concat([scores.assign(widened=False), widened], ignore_index=True)
    pre_revenue = pre_period_revenue(events, period.user_snapshot(events["user_id"]))
    result = simulate(scores, samples, items, pre_revenue, config.test_period.day_seconds, cfg, config.seed)
    write_parquet(layout.assignment, result.pop("assignment"))
    result = nan_to_null(result)
    write_json(layout.ab_report, result)
    plot = layout.link(layout.daily_lift_plot) if plot_daily_lift(result, layout.daily_lift_plot) else None
    ranking_delta = read_json(layout.finished("ranking"))["metrics"].get("delta")
    text = ab_report(result, ranking_delta, plot, cfg.top_k, (cfg.control_share, cfg.treatment_share))
    return StageOutput(ab_metrics(result), text)
