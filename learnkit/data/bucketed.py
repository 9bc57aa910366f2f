"""A split made one user bucket at a time, from an events folder bucketed by user into a folder of examples.

`split_around_period` holds every event and every example in memory. Its work is per user, apart from two
times placed over all events: the test period's start (a quantile of every event's time) and the ranker's
validation start (a quantile of the times before it). Here DuckDB finds those two over the whole folder as
numpy finds them (the value at the same position in ascending order, `kth_smallest`), and then each bucket's
events alone (`learnkit.data.streamed` wrote one part per bucket) go through `split_around_period` with them,
its examples written as the bucket's part. Memory is one bucket's, whatever the number of events; the examples
are the in-memory split's, row for row (tested).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from learnkit.core.errors import DataError
from learnkit.core.fsutil import publish_folder, write_json
from learnkit.core.progress import progress_bar
from learnkit.core.sql import EngineConfig, connect, kth_smallest, sql_path
from learnkit.data.period import TestPeriodConfig, start_position
from learnkit.data.splits import SplitConfig, split_around_period
from learnkit.data.streamed import MANIFEST, bucket_parts

EXAMPLE_TYPES = pa.schema(
    [("user_id", pa.string()), ("history", pa.list_(pa.string())), ("target", pa.list_(pa.string())),
     ("part", pa.string())]
)  # fmt: skip


def split_bucketed(
    events: Path,
    config: SplitConfig,
    period: TestPeriodConfig,
    before_period: bool,
    out: Path,
    ranker_valid_fraction: float | None = None,
    engine: EngineConfig | None = None,
) -> dict[str, Any]:
    """Split the bucketed `events` folder as `split_around_period` splits its events, writing the examples to
    `out` (one part per bucket, published by one rename); returns the split's stats."""
    engine = engine or EngineConfig()
    buckets, parts = bucket_parts(events)
    if config.kind == "temporal" and config.boundary == "global_time" and config.cutoff_ts is None:
        raise DataError(
            "a bucketed split needs split.cutoff_ts for boundary 'global_time' (its quantile of all events' times "
            "is not placed per bucket yet)"
        )
    starts = _starts(parts, config, period, before_period, ranker_valid_fraction, engine)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    totals: dict[str, Any] = {}
    try:
        one = EngineConfig(memory_limit=engine.memory_limit, threads=engine.threads, spill_dir=engine.spill_dir)
        for bucket, part in enumerate(progress_bar(parts, desc="split by user bucket", unit="bucket")):
            mine = pd.read_parquet(part)
            examples = pd.DataFrame(columns=EXAMPLE_TYPES.names)
            if len(mine):
                examples, stats, _ = split_around_period(
                    mine, config, period, before_period, ranker_valid_fraction, one, starts
                )
                _add(totals, stats, part)
            pq.write_table(
                pa.Table.from_pandas(examples, schema=EXAMPLE_TYPES, preserve_index=False),
                staging / f"part-{bucket:05d}.parquet",
            )
        if not any(v for k, v in totals.items() if k.endswith("_examples") and k != "period_examples"):
            raise DataError(f"split {config.kind!r} left no examples (users skipped: {totals.get('users_skipped', 0)})")
        write_json(staging / MANIFEST, {"buckets": buckets, "of": str(events)})
        publish_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return totals


def _starts(
    parts: list[Path],
    config: SplitConfig,
    period: TestPeriodConfig,
    before_period: bool,
    ranker_valid_fraction: float | None,
    engine: EngineConfig,
) -> tuple[int | None, int | None]:
    """(the test period's start, the ranker's validation start) over every bucket's events, where the split
    needs them, each the value numpy's `method="higher"` quantile takes."""
    on_period = config.kind == "temporal" and config.boundary == "test_period"
    if not (before_period or on_period) or period.kind != "time":
        return None, None
    files = ", ".join(sql_path(p) for p in parts)
    with connect(engine) as con:
        con.execute(f"CREATE VIEW events AS SELECT ts FROM read_parquet([{files}])")
        start = period.start_ts
        if start is None:
            n = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
            start = int(kth_smallest(con, "events", "ts", start_position(n, period.start_quantile)))
        cutoff = None
        if ranker_valid_fraction is not None and not on_period:
            before = f"(SELECT ts FROM events WHERE ts < {int(start)})"
            n = con.sql(f"SELECT count(*) FROM {before}").fetchall()[0][0]
            cutoff = int(kth_smallest(con, before, "ts", start_position(n, 1 - ranker_valid_fraction)))
    return int(start), cutoff


def _add(totals: dict[str, Any], stats: dict[str, Any], part: Path) -> None:
    """Sum one bucket's counts into `totals`; the descriptions are the same in every bucket."""
    for key, value in stats.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "cutoff_ts":
            totals[key] = totals.get(key, 0) + value
        elif totals.setdefault(key, value) != value:
            raise RuntimeError(f"{part}: its split says {key} = {value!r}, an earlier bucket's {totals[key]!r}")
