"""The export stage: user and item feature tables from the trained PCH towers (torch, lazily)."""

from __future__ import annotations

import pandas as pd

from learnkit.data.period import test_period
from learnkit.pipeline.stage import Context, StageOutput
from learnkit.pipeline.stages.data import ordinal_time, read_items


def run_export(ctx: Context) -> StageOutput:
    from export.features import ExportInputs, export_features
    from export.report import export_report

    config, layout = ctx.config, ctx.layout
    assert config.export is not None and config.pch is not None
    events = pd.read_parquet(layout.events)
    inputs = ExportInputs(
        events=events,
        items=read_items(layout),
        period=test_period(events, config.test_period),
        checkpoint=layout.checkpoint(config.export.method),
        content_dir=layout.content(),
        config=config.export,
        pch=config.pch,
        ceg=config.ceg,
        day_seconds=config.test_period.day_seconds,
        ordinal_time=ordinal_time(layout),
        engine=config.run_engine(),
    )
    result = export_features(inputs, layout.exports)
    return StageOutput(result.metrics, export_report(result, config.export))
