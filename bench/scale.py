"""The relational steps at scale, DuckDB against the pandas logic they replaced, in the same run: synthetic
canonical events (skewed users and items, many events per second) at sizes 10x apart, written once as Parquet;
each step then runs in a fresh child process that reads them, so that its peak RSS is its own. Per step, engine
and size: wall and CPU seconds, rows per CPU-second, peak RSS and rows out.

Steps moved to DuckDB so far (issue 20): the import of the canonical folder (`learnkit.data.streamed`: the events
read a chunk at a time, validated, staged by user bucket of about 500k events, duplicates rejected per bucket;
against the in-memory import), the split made one user bucket at a time (`learnkit.data.bucketed`, the demo's
split; against `split_around_period` in memory), the users' sequences that the splits are cut from
(`learnkit.data.sequences`: every event, sorted per user, read back into the arrays the splits walk; the events
in memory as the pch stage holds them), the point-in-time snapshot histories (`export.snapshots`, a refresh
after every event, the newest 50 positives: each user's sequence once and each row's count of events seen) and
the ranker's as-of join of samples to snapshot rows (`ranking.pointintime`; the rows written first by a child
of their own, as a ranker reads exported rows from disk). The snapshot and as-of children stream their output to
Parquet under the engine's `memory_limit`; the pandas children hold everything in memory,
as the pipeline did (its snapshot histories as one list per row). pandas runs up to `--pandas-max` events, the
sequences up to `--sequence-max`. Prints one JSON object.

    python bench/scale.py [--sizes 1000000 10000000 100000000] [--pandas-max 10000000] [--memory-limit 1GB]
                          [--snapshot-max 100000000] [--sequence-max 10000000] [--steps import split ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HISTORY_MAX, PARTITION = 50, 86_400


def generate(folder: Path, events: int) -> Path:
    """`events` rows of user_id, item_id, ts, label as one Parquet file: about 50 events per user on average,
    users and items drawn from power laws by a fixed hash (the same data on every run and thread count)."""
    import duckdb

    path = folder / f"events-{events}.parquet"
    users, items = max(1, events // 50), max(10, events // 20)
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
            SELECT 'u' || floor({users} * pow((hash(i * 2 + 1) % 1000003) / 1000003.0, 2))::BIGINT AS user_id,
                   'i' || floor({items} * pow((hash(i * 2) % 1000033) / 1000033.0, 3))::BIGINT AS item_id,
                   (1600000000 + i // 4 + hash(i * 3) % 600)::BIGINT AS ts,
                   (hash(i * 5) % 5 < 3)::INTEGER AS label
            FROM range({events}) t(i)
        ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)
        """
    )
    con.close()
    return path


def canonical_folder(folder: Path, events_path: Path) -> Path:
    """A canonical dataset of those events, as a company hands it over: `events.parquet` and an items table
    of every item the events name, each with a title."""
    import duckdb

    dataset = folder / f"canonical-{events_path.stem}"
    dataset.mkdir()
    (dataset / "events.parquet").symlink_to(events_path)
    duckdb.sql(
        f"COPY (SELECT DISTINCT item_id, 'film ' || item_id AS title FROM read_parquet('{events_path}')) "
        f"TO '{dataset / 'items.parquet'}' (FORMAT parquet)"
    )
    return dataset


def split_setting():
    """The demo's split: every user's own last 20% of positives, before the test period (its newest 20% of
    events) and the ranker's validation slice (the newest 10% before that)."""
    from learnkit.data.period import TestPeriodConfig
    from learnkit.data.splits import SplitConfig

    split = SplitConfig(boundary="user_fraction", evaluate_all_users=True, positives_only=True, history_max=50)
    return split, TestPeriodConfig(start_quantile=0.8), True, 0.1


class Clock:
    """CPU and wall time from `start()` (a step calls it once its inputs are ready) to `stop()`."""

    def start(self) -> None:
        self.wall, self.usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)

    def stop(self) -> tuple[float, float]:
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - self.usage.ru_utime) + (after.ru_stime - self.usage.ru_stime)
        return time.perf_counter() - self.wall, cpu


def child(step: str, engine: str, events_path: Path, out: Path, memory_limit: str) -> dict:
    """Run one step once, in this (fresh) process; return its figures. The clock runs over the step itself:
    not the imports, not pandas reading the events into memory (the import stage's cost in the pandas chain),
    not the snapshot rows that the as-of join reads. The peak RSS is the whole process's."""
    clock = Clock()
    if engine == "duckdb":
        rows_in, rows_out = duckdb_step(step, events_path, out, memory_limit, clock)
    else:
        rows_in, rows_out = pandas_step(step, events_path, clock)
    wall, cpu = clock.stop()
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "rows_per_cpu_s": round(rows_in / cpu) if cpu else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
    }


def duckdb_step(step: str, events_path: Path, out: Path, memory_limit: str, clock: Clock) -> tuple[int, int]:
    from learnkit.core.sql import EngineConfig, connect
    from ranking.pointintime import snapshot_join_query

    if step in ("import", "split"):
        return bucketed_step(step, events_path, out, memory_limit, clock)
    if step == "sequences":  # as the pch stage does it: the events in memory, sorted into per-user sequences
        import pandas as pd

        from learnkit.data.sequences import user_sequences

        events = pd.read_parquet(events_path)
        clock.start()
        sequences = user_sequences(events, False, engine=EngineConfig(memory_limit=memory_limit))
        return len(events), len(sequences.items)
    with connect(EngineConfig(memory_limit=memory_limit, spill_dir=str(out.parent))) as con:
        # each event's row in the file is its position: no window over all rows, which would not spill
        con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{events_path}', file_row_number = true)")
        rows_in = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        origin = con.execute("SELECT min(ts) FROM events").fetchall()[0][0]
        rows_path = out.with_suffix(".rows.parquet")
        if step == "snapshot":  # the sorted events the rows slice, and the rows, as export.snapshots makes them
            clock.start()
            write_snapshot_rows(con, origin, out.with_suffix(".sequences.parquet"), out)
        elif step == "asof-rows":  # the join's input, written by a process of its own (`measure`)
            clock.start()  # timed, though only the join's own child is reported
            write_snapshot_rows(con, origin, out.with_suffix(".sequences.parquet"), rows_path)
            return int(rows_in), 0
        else:  # every event is a ranking sample, joined to the snapshot rows after each positive event
            clock.start()
            con.execute("CREATE VIEW samples AS SELECT user_id, ts, file_row_number AS position FROM events")
            con.execute(
                "CREATE VIEW snapshots AS SELECT user_id, valid_from, history_end, file_row_number AS snapshot "
                f"FROM read_parquet('{rows_path}', file_row_number = true)"
            )
            con.execute(f"COPY ({snapshot_join_query()}) TO '{out}' (FORMAT parquet)")
        rows_out = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
    return int(rows_in), int(rows_out)


def write_snapshot_rows(con, origin: int, sequences_path: Path, rows_path: Path) -> None:
    """The used events (positives) sorted by user and time into `sequences_path` by DuckDB, spilling past its
    memory limit; then the snapshot rows read off that file a row group at a time into `rows_path`."""
    import pyarrow.parquet as pq

    from export.snapshots import stream_snapshot_rows
    from learnkit.core.batches import parquet_batches
    from learnkit.data.sequences import sequences_query

    ordered = sequences_query(True, [], source="(SELECT *, file_row_number AS _row FROM events)")
    con.execute(f"COPY ({ordered}) TO '{sequences_path}' (FORMAT parquet)")
    batches = parquet_batches(pq.ParquetFile(sequences_path), batch_rows=200_000)
    writer = None
    for rows in stream_snapshot_rows(batches, "event", origin, PARTITION):
        writer = writer or pq.ParquetWriter(rows_path, rows.schema)
        writer.write_table(rows)
    if writer is not None:
        writer.close()


def bucketed_step(step: str, events_path: Path, out: Path, memory_limit: str, clock: Clock) -> tuple[int, int]:
    """The streamed import of the canonical folder into a folder of user buckets (about 500k events each), or
    the split of that folder one bucket at a time; the import's output stays for the split."""
    import pyarrow.parquet as pq

    from learnkit.core.sql import EngineConfig
    from learnkit.data.bucketed import split_bucketed
    from learnkit.data.schema import ValidationRules
    from learnkit.data.streamed import import_canonical_streamed

    dataset = canonical_folder_of(events_path)
    events = pq.ParquetFile(dataset / "events.parquet").metadata.num_rows
    imported = dataset.parent / f"imported-{events_path.stem}"
    engine = EngineConfig(buckets=max(1, events // 500_000), memory_limit=memory_limit, spill_dir=str(out.parent))
    clock.start()
    if step == "import":
        rejected = imported.with_name(f"rejected-{events_path.stem}.parquet")
        report = import_canonical_streamed(dataset, ValidationRules(), imported, rejected, engine).report
        return events, report["events"]["kept"]
    split, period, before, valid_fraction = split_setting()
    stats = split_bucketed(imported, split, period, before, out, valid_fraction, engine)
    return events, sum(v for k, v in stats.items() if k.endswith("_examples"))


def canonical_folder_of(events_path: Path) -> Path:
    return events_path.parent / f"canonical-{events_path.stem}"


def pandas_step(step: str, events_path: Path, clock: Clock) -> tuple[int, int]:
    import numpy as np
    import pandas as pd
    import pandas_path

    if step == "import":  # the in-memory import, as the data stage runs it
        from learnkit.data.importers import load_dataset, validate
        from learnkit.data.schema import ValidationRules

        clock.start()
        dataset = validate(load_dataset("canonical", canonical_folder_of(events_path), {}), ValidationRules())
        return dataset.report["events"]["input_rows"], len(dataset.events)
    events = pd.read_parquet(events_path)
    if step == "split":  # the in-memory split, as the pch stage runs it
        from learnkit.data.splits import split_around_period

        split, period, before, valid_fraction = split_setting()
        clock.start()
        examples, _, _ = split_around_period(events, split, period, before, valid_fraction)
        return len(events), len(examples)
    if step == "sequences":
        clock.start()
        return len(events), sum(len(items) for _, items, _, _ in pandas_path.user_sequences(events, False, []))
    if step == "snapshot":
        clock.start()
        rows, _ = pandas_path.snapshot_histories(events, "event", HISTORY_MAX, True, PARTITION)
        return len(events), len(rows)
    positives = events[events["label"] == 1]
    snapshots = pd.DataFrame(
        {"user_id": positives["user_id"].to_numpy(), "valid_from": positives["ts"].to_numpy(np.int64) + 1}
    ).drop_duplicates()
    clock.start()
    joined = pandas_path.asof_join(events[["user_id", "ts"]], snapshots)
    return len(events), len(joined)


def measure(step: str, engine: str, events_path: Path, folder: Path, memory_limit: str) -> dict:
    """One step in a fresh child. The join's snapshot rows are written first by a child of their own, so that
    the join's peak RSS is the join's, as a ranker reads exported rows from disk."""
    out = folder / f"{step}-{engine}.parquet"
    for child_step in (["asof-rows"] if (step, engine) == ("asof", "duckdb") else []) + [step]:
        done = subprocess.run(
            [sys.executable, __file__, "--child", child_step, engine, str(events_path), str(out), memory_limit],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            break
    for written in (out, out.with_suffix(".sequences.parquet"), out.with_suffix(".rows.parquet")):
        shutil.rmtree(written) if written.is_dir() else written.unlink(missing_ok=True)
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--pandas-max", type=int, default=10_000_000)
    parser.add_argument("--snapshot-max", type=int, default=100_000_000, help="the largest size for the histories")
    parser.add_argument(
        "--sequence-max", type=int, default=10_000_000, help="the largest size for the sequences (held in memory)"
    )
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--work-dir", default=None, help="where the data and spill files go (the system's temp)")
    parser.add_argument("--steps", nargs="+", default=None, help="only these steps (import, split, sequences, ...)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # bench/ is on sys.path as the script's folder, after the repository
        step, engine, events_path, out, memory_limit = args.child
        print(json.dumps(child(step, engine, Path(events_path), Path(out), memory_limit)))
        return
    from learnkit.core.sql import size_bytes

    results: dict[str, dict[str, dict]] = {}
    # the events (1.6 GB at 100M), the outputs and DuckDB's spill files: 5-6 GB at 100M events
    with tempfile.TemporaryDirectory(prefix="learnkit-scale-", dir=args.work_dir) as tmp:
        folder = Path(tmp)
        for size in sorted(args.sizes):
            events_path = generate(folder, size)
            canonical_folder(folder, events_path)
            largest_for = {
                "import": size,
                "split": size,
                "sequences": args.sequence_max,
                "snapshot": args.snapshot_max,
                "asof": size,
            }
            for step, largest_size in largest_for.items():
                if size > largest_size or (args.steps and step not in args.steps):
                    continue
                for engine in ("duckdb", "pandas"):
                    if engine == "pandas" and size > args.pandas_max:
                        continue
                    figures = measure(step, engine, events_path, folder, args.memory_limit)
                    results.setdefault(step, {}).setdefault(engine, {})[str(size)] = figures
                    print(f"{step} {engine} {size}: {figures}", file=sys.stderr)
            events_path.unlink()
            for made in folder.iterdir():  # the canonical folder and the import's output
                shutil.rmtree(made) if made.is_dir() else made.unlink()

    def at(step: str, engine: str, size: int) -> dict:
        return results.get(step, {}).get(engine, {}).get(str(size), {})

    both = [s for s in args.sizes if s <= args.pandas_max and "cpu_s" in at("snapshot", "pandas", s)]
    compared = max(both) if both else None
    largest = max(args.sizes)

    def speedup(step: str) -> float | None:
        pandas, duckdb = at(step, "pandas", compared or 0), at(step, "duckdb", compared or 0)
        return round(pandas["cpu_s"] / duckdb["cpu_s"], 2) if "cpu_s" in pandas and "cpu_s" in duckdb else None

    print(
        json.dumps(
            {
                "benchmark": "scale",
                "max_events": largest,
                "memory_limit_mb": round(size_bytes(args.memory_limit) / 2**20, 1),
                "peak_rss_mb": max(
                    (at(step, "duckdb", largest).get("peak_rss_mb", 0) for step in results), default=None
                ),
                "compared_at_events": compared,
                "asof_rows_per_cpu_s": at("asof", "duckdb", compared).get("rows_per_cpu_s") if compared else None,
                "snapshot_speedup": speedup("snapshot"),
                "sequence_events_per_cpu_s": at("sequences", "duckdb", compared).get("rows_per_cpu_s")
                if compared
                else None,
                "sequence_speedup": speedup("sequences"),
                "import_events_per_cpu_s": at("import", "duckdb", largest).get("rows_per_cpu_s"),
                "split_events_per_cpu_s": at("split", "duckdb", largest).get("rows_per_cpu_s"),
                "steps": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
