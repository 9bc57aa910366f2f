"""The data stage's figures and its section of the report: what was read, kept and rejected, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learnkit.core.formatting import md_table
from learnkit.core.sql import EngineConfig, connect, sql_path
from learnkit.data.readers import parquet_parts


def event_figures(events: Path, engine: EngineConfig) -> dict[str, int]:
    """Events, users with events and positive events of the canonical events table (a file or a folder of
    parts), counted in DuckDB."""
    with connect(engine) as con:
        (count, users, positives), *_ = con.sql(
            "SELECT count(*), count(DISTINCT user_id), coalesce(sum(label), 0) "
            f"FROM read_parquet([{', '.join(sql_path(p) for p in parquet_parts(events))}])"
        ).fetchall()
    return {"events": int(count), "users": int(users), "positives": int(positives)}


def data_metrics(items: int, events: dict[str, int], report: dict[str, Any], fmt: str) -> dict[str, Any]:
    return {
        "items": items,
        "events": events["events"],
        "rejected": int(report["rejected_total"]),
        "users": events["users"],
        "positives": events["positives"],
        "format": fmt,
    }


def data_report(metrics: dict[str, Any], report: dict[str, Any], source: str) -> str:
    rows = [
        [table, report[table]["input_rows"], report[table]["kept"], report[table]["rejected"]]
        for table in ("items", "events")
    ]
    text = (
        f"## Data\n\nSource: {source}. {metrics['users']} users with events, "
        f"{metrics['positives']} positive events (label 1).\n\n"
        + md_table(["table", "rows read", "kept", "rejected"], rows)
    )
    if report["rejected_by_reason"]:
        text += "\nRejected rows by reason (all listed in `data/rejected.parquet`):\n\n" + md_table(
            ["reason", "rows"], [[k, v] for k, v in report["rejected_by_reason"].items()]
        )
    if report["notes"]:
        text += "\nNotes: " + "; ".join(report["notes"]) + ".\n"
    return text
