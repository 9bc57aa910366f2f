"""The data stage: a dataset's files -> validated canonical tables and the validation report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from learnkit.config import Config
from learnkit.core.errors import DataError
from learnkit.core.formatting import md_table
from learnkit.core.fsutil import sha256_file, write_json, write_parquet
from learnkit.data.fetch import fetch
from learnkit.data.schema import ValidationRules
from learnkit.pipeline.layout import RunLayout
from learnkit.pipeline.runner import Context, StageOutput


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
    from learnkit.data.importers import load_dataset, validate

    config = ctx.config.data
    folder, fmt, origin = resolve_data(ctx.config)
    raw = load_dataset(fmt, folder, config.options)
    rules = ValidationRules(
        on_error=config.on_error,
        max_price=config.max_price,
        min_ts=config.min_ts,
        max_ts=config.max_ts,
        max_text_chars=config.max_text_chars,
    )
    dataset = validate(raw, rules)
    out = ctx.stage_dir
    write_parquet(out / "items.parquet", dataset.items)
    write_parquet(out / "events.parquet", dataset.events)
    if dataset.users is not None:
        write_parquet(out / "users.parquet", dataset.users)
    write_parquet(out / "rejected.parquet", dataset.rejected)
    report = {**dataset.report, "source": {"path": str(folder), "format": fmt, "origin": origin}}
    write_json(out / "validation.json", report)
    events = dataset.events
    metrics = {
        "items": len(dataset.items),
        "events": len(events),
        "rejected": int(report["rejected_total"]),
        "users": int(events["user_id"].nunique()),
        "positives": int(events["label"].sum()),
        "format": fmt,
    }
    rows = [
        [table, report[table]["input_rows"], report[table]["kept"], report[table]["rejected"]]
        for table in ("items", "events")
    ]
    text = (
        f"## Data\n\nSource: `{folder}` ({fmt}, {origin}). {metrics['users']} users with events, "
        f"{metrics['positives']} positive events (label 1).\n\n"
        + md_table(["table", "rows read", "kept", "rejected"], rows)
    )
    if report["rejected_by_reason"]:
        text += "\nRejected rows by reason (all listed in `data/rejected.parquet`):\n\n" + md_table(
            ["reason", "rows"], [[k, v] for k, v in report["rejected_by_reason"].items()]
        )
    if report["notes"]:
        text += "\nNotes: " + "; ".join(report["notes"]) + ".\n"
    return StageOutput(metrics, text)


def read_items(layout: RunLayout) -> pd.DataFrame:
    return pd.read_parquet(layout.items)
