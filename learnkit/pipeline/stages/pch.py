"""The pch stage: train and evaluate every configured retrieval method (torch, lazily), beside the
popularity and random reference rows ranked by the same evaluator on the same test users."""

from __future__ import annotations

import pandas as pd

from learnkit.core.fsutil import write_parquet
from learnkit.pipeline.stage import Context, StageOutput
from learnkit.pipeline.stages.data import ordinal_time, read_items


def run_pch(ctx: Context) -> StageOutput:
    from eval.retrieval_report import plot_training_curves, retrieval_report, with_intervals
    from learn_embed.experiment import PeriodEvents, run_retrieval
    from learnkit.data.splits import split_around_period

    config, layout = ctx.config, ctx.layout
    cfg = config.pch
    assert cfg is not None
    events = pd.read_parquet(layout.events)
    examples, split, seen = split_around_period(
        events, cfg.split, config.test_period, cfg.train_before_test_period, config.ranker_validation,
        config.run_engine(),
    )  # fmt: skip
    if layout.is_main:
        write_parquet(layout.split, examples)
    period = PeriodEvents.of(events, config.test_period) if split.get("period_examples") else None  # scored in it
    run = run_retrieval(
        cfg, config.ceg, read_items(layout), seen, examples, layout.content(), layout.stage("pch"), config.seed,
        layout.rank, bool(ctx.options.get("resume")), ordinal_time(layout), period,
    )  # fmt: skip
    methods = list(cfg.methods)
    metrics = with_intervals(
        {"split": split, **run.metrics}, run.per_user, run.references, methods, cfg.eval, config.seed,
        run.period_per_user,
    )  # fmt: skip
    curves = layout.is_main and plot_training_curves(metrics, cfg.eval.monitor_metric, layout.training_curves)
    text = retrieval_report(
        metrics, run.references, methods, cfg.eval, layout.link(layout.training_curves) if curves else None
    )
    return StageOutput(metrics, text)
