"""Importers turn a dataset's own files into the canonical tables (see `learnkit.data.schema`)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from learnkit.core.errors import ConfigError, DataError
from learnkit.data.schema import RejectLog, ValidationRules, validate_events, validate_items, validate_users


@dataclass
class RawDataset:
    """What an importer read, before validation: frames carry `_file` and `_row`."""

    items: pd.DataFrame
    events: pd.DataFrame
    users: pd.DataFrame | None = None
    items_file: str = ""
    events_file: str = ""
    users_file: str = ""
    notes: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    ordinal_time: bool = False
    # Malformed records found while reading (wrong field count, bad JSON); validation adds to it.
    log: RejectLog = field(default_factory=RejectLog)
    # Records in each input file, where one file row is one table row (the canonical importer)
    rows_read: dict[str, int] = field(default_factory=dict)


@dataclass
class CanonicalDataset:
    items: pd.DataFrame
    events: pd.DataFrame
    users: pd.DataFrame | None
    rejected: pd.DataFrame
    report: dict[str, Any]


def validate(raw: RawDataset, rules: ValidationRules) -> CanonicalDataset:
    """Validate a raw dataset; raises `DataError` on any rejection when `rules.on_error == 'fail'`."""
    log, rules = raw.log, rules_for(raw, rules)
    items = validate_items(raw.items, raw.items_file, rules, log)
    events = validate_events(raw.events, raw.events_file, items, rules, log)
    users = validate_users(raw.users, raw.users_file, log) if raw.users is not None else None
    log.raise_if_any(rules.on_error)
    if events.empty:
        raise DataError(f"{raw.events_file}: no valid events left after validation")
    kept = {"items": len(items), "events": len(events), "users": len(users) if users is not None else None}
    report = validation_report(raw, rules, kept)
    return CanonicalDataset(items=items, events=events, users=users, rejected=log.frame(), report=report)


def rules_for(raw: RawDataset, rules: ValidationRules) -> ValidationRules:
    """The rules a dataset is validated by: ordinal time when its importer says its times are positions."""
    if raw.ordinal_time and not rules.ordinal_time:
        return ValidationRules(**{**rules.__dict__, "ordinal_time": True})
    return rules


def validation_report(raw: RawDataset, rules: ValidationRules, kept: dict[str, int | None]) -> dict[str, Any]:
    """`validation.json`: what was kept and rejected of each table, after checking that every row read is one
    or the other (`kept`: rows kept per table, None for a table the dataset does not have; `rules`: as
    `rules_for` gives them)."""
    log = raw.log
    report = {
        **{
            table: ({"kept": kept[table], "rejected": log.count(table)} if kept[table] is not None else None)
            for table in ("items", "events", "users")
        },
        "rejected_total": log.count(),
        "rejected_by_reason": log.by_reason(),
        "on_error": rules.on_error,
        "time": "ordinal" if rules.ordinal_time else "unix_seconds",
        "notes": raw.notes,
        "counters": raw.counters,
    }
    for table, rows in raw.rows_read.items():
        _check_accounting(table, getattr(raw, f"{table}_file"), rows, kept[table] or 0, log.rows_of(table))
    for table in ("items", "events"):
        report[table]["input_rows"] = raw.rows_read.get(table, kept[table] + log.rows_of(table))
    return report


def _check_accounting(table: str, file: str, rows: int, kept: int, rejected: int) -> None:
    """Every row that went in comes out, kept or rejected with a reason."""
    if kept + rejected != rows:
        raise RuntimeError(
            f"{file}: {rows} rows read, {kept} kept and {rejected} rejected: "
            f"{rows - kept - rejected} {table} rows unaccounted for (a learn-kit bug; please report)"
        )


def load_dataset(kind: str, path: str | Path, options: dict[str, Any]) -> RawDataset:
    """Read a dataset folder with the importer named by `kind` (the config's `data.format`)."""
    from learnkit.data.importers import amazon, canonical, mind, movielens, unisrec

    importers = {
        "ml-100k": movielens.read_recbole,
        "ml-100k-grouplens": movielens.read_grouplens,
        "amazon-reviews": amazon.read_amazon,
        "unisrec": unisrec.read_unisrec,
        "canonical": canonical.read_canonical,
        "mind": mind.read_mind,
    }
    if kind not in importers:
        raise DataError(f"unknown dataset format {kind!r}; known: {', '.join(sorted(importers))}")
    known = [name for name in inspect.signature(importers[kind]).parameters if name != "path"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"key 'data.options.{unknown[0]}': not an option of the {kind} importer (its options: "
            f"{', '.join(known) or 'none'})"
        )
    return importers[kind](Path(path), **options)
