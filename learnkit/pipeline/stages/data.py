"""The data stage: a dataset's files -> validated canonical tables and the validation report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from learnkit.config import Config
from learnkit.core.errors import DataError
from learnkit.core.formatting import md_code, md_text
from learnkit.core.fsutil import read_json, sha256_file, write_json, write_parquet
from learnkit.data.fetch import fetch
from learnkit.pipeline.layout import RunLayout
from learnkit.pipeline.stage import Context, StageOutput


def resolve_data(config: Config) -> tuple[Path, str, str]:
    """(folder, importer format, origin) of the configured dataset."""
    data = config.data
    if data.path is not None:
        if not Path(data.path).exists():
            raise DataError(f"{config.source}: key 'data.path': {data.path} does not exist")
        return Path(data.path), data.format, "config path"
    assert data.fetch is not None
    fetched = fetch(data.fetch)
    return fetched.path, fetched.format, fetched.origin


def data_files_digest(config: Config) -> dict[str, str]:
    folder, _, _ = resolve_data(config)
    if folder.is_file():
        return {folder.name: sha256_file(folder)}
    return {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix != ".md" and not p.name.startswith(".")
    }


def run_data(ctx: Context) -> StageOutput:
    """The canonical format's events are streamed a chunk at a time into `events.parquet/`, one part per user
    bucket (`learnkit.data.streamed`); every other importer's tables are read and validated in memory."""
    from learnkit.data.importers import load_dataset, validate
    from learnkit.data.report import data_metrics, data_report, event_figures
    from learnkit.data.streamed import import_canonical_streamed

    config, layout, engine = ctx.config.data, ctx.layout, ctx.config.run_engine()
    folder, fmt, origin = resolve_data(ctx.config)
    if fmt == "canonical" and not config.options:
        dataset = import_canonical_streamed(folder, config.rules(), layout.events, layout.rejected, engine)
    else:
        dataset = validate(load_dataset(fmt, folder, config.options), config.rules())
        write_parquet(layout.events, dataset.events)
        write_parquet(layout.rejected, dataset.rejected)
    write_parquet(layout.items, dataset.items)
    if dataset.users is not None:
        write_parquet(layout.users, dataset.users)
    report = {**dataset.report, "source": {"path": str(folder), "format": fmt, "origin": origin}}
    write_json(layout.validation, report)
    metrics = data_metrics(len(dataset.items), event_figures(layout.events, engine), report, fmt)
    return StageOutput(metrics, data_report(metrics, report, f"{md_code(folder)} ({md_text(fmt)}, {md_text(origin)})"))


def ordinal_time(layout: RunLayout) -> bool:
    """Whether the imported events' `ts` are positions in each user's sequence rather than times."""
    return read_json(layout.validation).get("time") == "ordinal"


def read_items(layout: RunLayout) -> pd.DataFrame:
    return pd.read_parquet(layout.items)


def read_users(layout: RunLayout) -> pd.DataFrame:
    """The user attributes, where the data has any (an empty table otherwise)."""
    return pd.read_parquet(layout.users) if layout.users.is_file() else pd.DataFrame({"user_id": []})
