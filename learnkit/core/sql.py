"""DuckDB in-process: the engine of learn-kit's relational steps (as-of joins, per-user aggregates and sorts).

Each step opens its own in-memory connection with a bounded `memory_limit`; what does not fit spills to
`spill_dir` on the run's disk instead of growing the process. Frames go in and out as Arrow, without a copy
through Python objects.

Two settings are fixed for every connection, because they decide whether a step finishes at scale:
- `asof_loop_join_threshold = 0`: DuckDB may plan an `ASOF JOIN` as a nested loop when it underestimates the
  left side, which never ends on a large one;
- `preserve_insertion_order = false`: every query that needs an order says so (`ORDER BY`), and keeping the
  order of unordered results costs memory.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
import numpy as np
import pandas as pd

from learnkit.core.configload import option
from learnkit.core.errors import ConfigError, LearnKitError

T = TypeVar("T")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$")
_BYTES = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def size_bytes(value: str) -> int:
    """'2GB', '512MiB' -> bytes; anything else is a ValueError."""
    match = _SIZE.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a size such as '2GB' or '512MiB'")
    return int(float(match.group(1)) * _BYTES[match.group(2)])


@dataclass(frozen=True)
class EngineConfig:
    """How the relational steps run: DuckDB's memory limit and threads (0: every core), the folder that takes
    what does not fit (None: a temporary folder, removed after the step), and for per-user steps the number
    of user buckets and where they run (in this process, or as Ray tasks)."""

    kind: Literal["local", "ray"] = option(
        "local", help="where per-user steps run, one bucket of users at a time: in this process, or as Ray tasks"
    )
    buckets: int = option(1, help="per-user steps: user buckets (a fixed hash of user_id), each run alone", least=1)
    memory_limit: str = option("2GB", help="DuckDB's memory for one relational step ('2GB', '512MiB'); the rest spills")
    threads: int = option(0, help="DuckDB's threads (0: every core)", least=0)
    spill_dir: str | None = option(None, help="where a step spills what does not fit (none: the run's spill/ folder)")
    actors: int = option(
        1, help="batch inference with kind ray: Ray Data actors, each holding the model and a CPU", least=1
    )
    gpus_per_actor: float = option(0.0, help="batch inference with kind ray: GPUs each actor reserves", least=0.0)

    def __post_init__(self) -> None:
        try:
            size_bytes(self.memory_limit)
        except ValueError as exc:  # the loader adds the file and the key 'engine'
            raise ValueError(f"memory_limit: {exc}") from None


@contextmanager
def connect(config: EngineConfig | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection under `config`'s limits, closed (and its spill folder removed) after."""
    config = config or EngineConfig()
    if config.spill_dir is not None:
        Path(config.spill_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="learnkit-spill-", dir=config.spill_dir) as spill:
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"SET memory_limit = '{size_bytes(config.memory_limit)}B'")
            con.execute(f"SET temp_directory = '{_quoted(spill)}'")
            if config.threads:
                con.execute(f"SET threads = {int(config.threads)}")
            con.execute("SET asof_loop_join_threshold = 0")
            con.execute("SET preserve_insertion_order = false")
            try:
                yield con
            except duckdb.OutOfMemoryException as exc:
                raise LearnKitError(
                    f"a relational step needed more than engine.memory_limit ({config.memory_limit}) even when "
                    f"spilling to {spill}: raise engine.memory_limit, or engine.buckets for a per-user step "
                    f"(DuckDB: {str(exc).splitlines()[0]})"
                ) from exc
        finally:
            con.close()


def _quoted(path: str | Path) -> str:
    return str(path).replace("'", "''")


def sql_path(path: str | Path) -> str:
    """A file's path as an SQL string literal."""
    return f"'{_quoted(path)}'"


def bucket_number(column: str, buckets: int) -> str:
    """The SQL of a row's user bucket, from its `column` (a user id): DuckDB's hash modulo `buckets`, fixed by
    the pinned version. Every user's rows fall in one bucket, so per-user work splits cleanly."""
    return f"hash({column}::VARCHAR) % {int(buckets)}"


def kth_smallest(con: duckdb.DuckDBPyConnection, source: str, column: str, k: int) -> Any:
    """The value at 0-based position `k` of `column` of `source` (a table, or a query in parentheses) in
    ascending order, as `np.sort(values)[k]` gives it, by counts per distinct value and their running sum
    rather than a sort of every row: both spill."""
    rows = con.sql(
        f"""
        WITH counts AS (SELECT {column} AS v, count(*) AS c FROM {source} WHERE {column} IS NOT NULL GROUP BY v),
        running AS (SELECT v, sum(c) OVER (ORDER BY v ROWS UNBOUNDED PRECEDING) AS through FROM counts)
        SELECT min(v) FROM running WHERE through > {int(k)}
        """
    ).fetchall()
    if not rows or rows[0][0] is None:
        raise ValueError(f"kth_smallest: {source} has no {k + 1}th value of {column}")
    return rows[0][0]


def map_buckets(step: Callable[..., T], config: EngineConfig, frame: pd.DataFrame, *args: Any) -> list[T]:
    """`step(rows, config, *args)` for the rows of `frame` in each user bucket of `config.buckets`
    (`bucket_number` of `user_id`, each bucket's rows in their order in `frame`), in bucket order: in this
    process (`local`), or as Ray tasks (`ray`: the cluster at RAY_ADDRESS, or the one this process has
    started), each sent its own bucket's rows alone."""
    parts = split_by_bucket(frame, config)
    if config.kind == "local":
        return [step(part, config, *args) for part in parts]
    ray = ray_connected()
    remote = ray.remote(step)
    shared = [ray.put(arg) for arg in args]  # each argument once into the object store, not once per task
    return ray.get([remote.remote(ray.put(part), config, *shared) for part in parts])


def split_by_bucket(frame: pd.DataFrame, config: EngineConfig) -> list[pd.DataFrame]:
    """The rows of `frame` in each user bucket, in their order in `frame`: one pass that numbers every row's
    bucket, instead of each bucket scanning all the rows for its own."""
    if config.buckets == 1:
        return [frame]
    with connect(config) as con:
        register(con, rows=pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "_at": np.arange(len(frame))}))
        got = con.sql(f"SELECT _at, {bucket_number('user_id', config.buckets)} AS bucket FROM rows").fetchnumpy()
    bucket = np.empty(len(frame), np.int64)
    bucket[got["_at"]] = got["bucket"]  # the query keeps no order: place each number at its row
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(config.buckets + 1))
    return [frame.iloc[order[start:end]] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def ray_connected() -> Any:
    """The `ray` module, connected to the cluster at RAY_ADDRESS (or to one started on this machine), for a
    step under `engine.kind: ray`."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("key 'engine.kind' is ray, but Ray is not installed: pip install learn-kit[ray]") from exc
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    return ray


def register(con: duckdb.DuckDBPyConnection, **frames: Any) -> None:
    """Make pandas frames or Arrow tables queryable by name (no copy)."""
    for name, frame in frames.items():
        con.register(name, frame)
