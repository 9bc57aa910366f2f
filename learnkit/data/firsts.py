"""When things first happened, in DuckDB: each group's earliest event time (an item's first event, a user's first
event with an item), the per-key aggregate that spills past the engine's memory limit instead of growing the
process as a pandas groupby over every event does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from learnkit.core.sql import EngineConfig, connect, register


def first_times(events: pd.DataFrame, keys: Sequence[str], engine: EngineConfig | None = None) -> pd.Series:
    """The earliest `ts` of each group of `keys` (text columns), named `ts` and indexed by the groups in
    ascending order: what `events.groupby(keys)["ts"].min()` gives."""
    columns = ", ".join(f'"{key}"::VARCHAR AS "{key}"' for key in keys)
    names = ", ".join(f'"{key}"' for key in keys)
    with connect(engine) as con:
        register(con, events=events[[*keys, "ts"]])
        table = con.sql(
            f"SELECT {columns}, min(ts)::BIGINT AS ts FROM events GROUP BY ALL ORDER BY {names}"
        ).to_arrow_table()
    arrays = [np.asarray(table.column(key).to_pylist(), dtype=object) for key in keys]
    index = (
        pd.Index(arrays[0], name=keys[0], dtype=object)
        if len(keys) == 1
        else pd.MultiIndex.from_arrays(arrays, names=list(keys))
    )
    return pd.Series(table.column("ts").to_numpy(), index=index, name="ts")
