"""The ab stage: a simulated A/B test of the two rankers' test-period scores (numpy/pandas/scikit-learn;
TensorFlow only to score widened requests through the rankers' SavedModels)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from learnkit.core.frameworks import prepare_tensorflow
from learnkit.core.fsutil import read_json, write_json, write_parquet
from learnkit.data.period import TestPeriod, test_period
from learnkit.pipeline.report import nan_to_null
from learnkit.pipeline.runner import Context, StageOutput
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
    from eval.ab import run_ab as simulate
    from eval.ab_report import ab_report, plot_daily_lift

    config = ctx.config
    cfg = config.ab
    assert cfg is not None
    ranking = read_json(ctx.layout.finished("ranking"))["metrics"]
    scores = pd.read_parquet(ctx.layout.ranking_file("scores.parquet"))
    samples = pd.read_parquet(ctx.layout.ranking_file("samples.parquet"))
    events = pd.read_parquet(ctx.layout.events)
    period = test_period(events, config.test_period)
    before = events[(events["ts"].to_numpy() < period.user_snapshot(events["user_id"])) & (events["label"] == 1)]
    pre_revenue = before.groupby("user_id")["value"].sum()
    items = read_items(ctx.layout)
    if cfg.widen:
        scores = pd.concat(
            [scores.assign(widened=False), _widened(ctx, scores, events, items, period)], ignore_index=True
        )
    result = simulate(scores, samples, items, pre_revenue, config.test_period.day_seconds, cfg, config.seed)
    write_parquet(ctx.stage_dir / "assignment.parquet", result.pop("assignment"))
    result = nan_to_null(result)
    assert isinstance(result, dict)
    write_json(ctx.stage_dir / "report.json", result)
    drawn = plot_daily_lift(result, ctx.stage_dir / "daily_lift.png")
    text = ab_report(
        result,
        ranking.get("delta"),
        f"{ctx.stage_dir.name}/daily_lift.png" if drawn else None,
        cfg.top_k,
        (cfg.control_share, cfg.treatment_share),
    )
    metrics: dict[str, Any] = {}
    for name in ("replay", "simulated"):
        block = result[name]
        metrics[name] = {
            k: block[k]
            for k in (
                "revenue_lift",
                "cvr_lift",
                "ci_low",
                "ci_high",
                "p_value",
                "cvr_ci_low",
                "cvr_ci_high",
                "unadjusted",
                "users",
                "cuped",
                "min_detectable_lift",
                "rerankable_share",
                "single_candidate_share",
                "candidates_per_request",
            )
        }
        metrics[name]["segments"] = block["segments"]
    metrics["aa"] = {
        "false_positive_rate": result["replay"]["aa"]["false_positive_rate"],
        "runs": result["replay"]["aa"]["runs"],
        "simulated_false_positive_rate": result["simulated"]["aa"]["false_positive_rate"],
    }
    metrics["requests"], metrics["days"] = result["requests"], result["days"]
    metrics["widened_candidates"] = result["widened_candidates"]
    metrics["single_candidate_share"] = result["single_candidate_share"]
    return StageOutput(metrics, text)
