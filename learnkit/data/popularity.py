"""Popularity counts in DuckDB: how often each item occurs, the per-item aggregate behind popularity baselines
and popularity-weighted negative sampling, which spills past the engine's memory limit instead of growing the
process as a pandas `value_counts` over every event does."""

from __future__ import annotations

import numpy as np
import pandas as pd

from learnkit.core.sql import EngineConfig, connect, register


def item_counts(items: pd.Series, engine: EngineConfig | None = None) -> pd.Series:
    """Each distinct value of `items` (text) with its count, most frequent first and ties in order of first
    occurrence: what `items.value_counts()` gives, name and order included (the order feeds random draws)."""
    frame = pd.DataFrame({"item": items.to_numpy(dtype=object), "position": np.arange(len(items), dtype=np.int64)})
    with connect(engine) as con:
        register(con, items=frame)
        table = con.sql(
            "SELECT item::VARCHAR AS item, count(*)::BIGINT AS n, min(position) AS first FROM items "
            "GROUP BY item ORDER BY n DESC, first"
        ).to_arrow_table()
    index = pd.Index(np.asarray(table.column("item").to_pylist(), dtype=object), name=items.name, dtype=object)
    return pd.Series(table.column("n").to_numpy(), index=index, name="count")
