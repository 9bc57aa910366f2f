"""The data stage's figures and its section of the report: what was read, kept and rejected, and why."""

from __future__ import annotations

from typing import Any

import pandas as pd

from learnkit.core.formatting import md_table


def data_metrics(items: pd.DataFrame, events: pd.DataFrame, report: dict[str, Any], fmt: str) -> dict[str, Any]:
    return {
        "items": len(items),
        "events": len(events),
        "rejected": int(report["rejected_total"]),
        "users": int(events["user_id"].nunique()),
        "positives": int(events["label"].sum()),
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
