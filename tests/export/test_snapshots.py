"""The snapshot histories and the as-of join on DuckDB equal the pandas logic they replaced, row for row, on
data with ties, repeated events and unlabelled rows; and they run under a small memory limit."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from export.snapshots import snapshot_histories, stream_snapshot_rows
from export.tables import EmbeddingTable
from learnkit.config import load_config
from learnkit.core.errors import ConfigError
from learnkit.core.sql import EngineConfig, connect
from learnkit.data.splits import SplitConfig, make_split
from ranking.pointintime import has_history_before, join_user_snapshots

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO / "bench"))  # after the packages: bench/export.py must not shadow export/
import pandas_path  # noqa: E402  (the pre-DuckDB logic, kept by bench/scale.py as its baseline)


def random_events(seed: int, users: int = 120, rows: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            # ids whose string order differs from their numeric order, and some users with one event
            "user_id": [f"u{int(u)}" for u in rng.zipf(1.3, rows) % users],
            "item_id": [f"i{int(i)}" for i in rng.zipf(1.2, rows) % 400],
            "ts": rng.integers(0, 200, rows),  # many events share a time
            "label": rng.integers(0, 2, rows),
        }
    )


@pytest.mark.parametrize("every", ["event", 7])
@pytest.mark.parametrize("positives_only", [True, False])
@pytest.mark.parametrize("history_max", [3, 50])
def test_snapshot_histories_equal_the_pandas_logic(every, positives_only, history_max):
    events = random_events(seed=history_max)
    events = pd.concat([events, events.iloc[:200]])  # repeated events: the same user, item and time twice
    got = snapshot_histories(events, every, history_max, positives_only, partition_every=30)
    want_rows, want_histories = pandas_path.snapshot_histories(events, every, history_max, positives_only, 30)
    assert got.rows[want_rows.columns].values.tolist() == want_rows.values.tolist()
    assert got.histories == want_histories
    # no row holds an event at or after the moment it describes
    assert (got.rows["history_end"] < got.rows["valid_from"]).all()


@pytest.mark.parametrize("every", ["event", 7])
def test_snapshot_rows_streamed_from_sorted_events_on_disk_equal_the_rows_in_memory(tmp_path, every):
    """The sorted events read back in batches far smaller than a heavy user's events (so users span batches,
    and a whole batch holds one user) give the same rows as the events in memory."""
    import pyarrow.parquet as pq

    from learnkit.core.batches import parquet_batches
    from learnkit.data.sequences import sequences_query

    events = random_events(seed=11)
    want = snapshot_histories(events, every, 5, True, partition_every=30).rows
    assert want["seen"].max() > 40  # a user's events span many batches of 5
    sorted_events = tmp_path / "sorted.parquet"
    with connect(EngineConfig()) as con:
        con.register("events", events.assign(_row=np.arange(len(events))))
        con.execute(f"COPY ({sequences_query(True, [])}) TO '{sorted_events}' (FORMAT parquet, ROW_GROUP_SIZE 7)")
    origin = int(events["ts"].min())
    batches = parquet_batches(pq.ParquetFile(sorted_events), batch_rows=5)
    got = pa.concat_tables(stream_snapshot_rows(batches, every, origin, 30)).to_pandas()
    assert got.values.tolist() == want.values.tolist()


def test_the_as_of_join_equals_the_pandas_logic():
    events = random_events(seed=1)
    snapshots = snapshot_histories(events, "event", 50, True, partition_every=30)
    rows = snapshots.rows
    table = EmbeddingTable(
        rows.user_id.tolist(),
        np.zeros((len(rows), 2), np.float32),
        np.ones(len(rows), bool),
        None,
        rows.valid_from.to_numpy(),
        rows.history_end.to_numpy(),
        rows.as_of.to_numpy(),
    )
    rng = np.random.default_rng(2)
    samples = pd.DataFrame(
        {"user_id": [f"u{int(u)}" for u in rng.integers(0, 140, 5000)], "ts": rng.integers(-5, 230, 5000)}
    )
    joined = join_user_snapshots(samples, table)
    assert joined["snapshot"].tolist() == pandas_path.asof_join(samples, rows).tolist()
    has = joined["snapshot"].to_numpy() >= 0
    assert (joined["history_end"].to_numpy()[has] < samples["ts"].to_numpy()[has]).all()
    assert (joined.loc[~has, ["valid_from", "history_end"]] == -1).all().all()
    # an event strictly before: the as-of join with the strict inequality, against a direct count
    before = has_history_before(samples, events)
    first_seen = events.groupby("user_id")["ts"].min()
    want = samples["ts"].to_numpy() > samples["user_id"].map(first_seen).fillna(np.inf).to_numpy()
    assert before.tolist() == want.tolist()


def test_the_engine_runs_under_its_memory_limit_and_refuses_a_bad_size(tmp_path):
    config = EngineConfig(memory_limit="64MB", threads=1, spill_dir=str(tmp_path))
    with connect(config) as con:
        limit, threshold, threads = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('asof_loop_join_threshold'), "
            "current_setting('threads')"
        ).fetchall()[0]
        spill = Path(con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0])
        assert spill.parent == tmp_path
    assert limit == "61.0 MiB" and threshold == 0 and threads == 1
    assert not spill.exists()  # the spill folder goes with the step
    events = random_events(seed=3, rows=20_000)
    small = snapshot_histories(events, "event", 50, False, 30, engine=config)
    assert small.histories == snapshot_histories(events, "event", 50, False, 30).histories
    with pytest.raises(ConfigError, match="demo.yaml: key 'engine': memory_limit: '2 gigs' is not a size"):
        load_config(REPO / "configs" / "demo.yaml", {"engine": {"memory_limit": "2 gigs"}})


def test_user_buckets_and_the_ray_engine_give_the_same_snapshots_and_splits():
    """Per-user work by bucket: 1 bucket, 7 buckets in this process, and 3 buckets as tasks on a local 2-CPU Ray
    cluster started here give the same rows, in the same order, and the same histories; and the same split
    (its sequences sorted per bucket, `learnkit.data.sequences`)."""
    import ray

    events = random_events(seed=5)
    one = snapshot_histories(events, "event", 5, True, partition_every=30)
    seven = snapshot_histories(events, "event", 5, True, 30, engine=EngineConfig(buckets=7))
    pd.testing.assert_frame_equal(seven.rows, one.rows)
    assert seven.histories == one.histories
    assert len(one.rows) > 500 and one.rows["user_id"].nunique() > 50  # the buckets split real work

    split = SplitConfig(evaluate_all_users=True, history_max=5, valid_users=0.2, positives_only=True)
    examples, stats = make_split(events, split)
    assert stats["test_examples"] > 50
    pd.testing.assert_frame_equal(make_split(events, split, engine=EngineConfig(buckets=7))[0], examples)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    try:
        on_ray = snapshot_histories(events, "event", 5, True, 30, engine=EngineConfig(kind="ray", buckets=3))
        split_on_ray, _ = make_split(events, split, engine=EngineConfig(kind="ray", buckets=3))
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(on_ray.rows, one.rows)
    assert on_ray.histories == one.histories
    pd.testing.assert_frame_equal(split_on_ray, examples)


def test_the_ray_engine_without_ray_installed_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed: `import ray` raises
    with pytest.raises(ConfigError, match=r"is ray, but Ray is not installed: pip install learn-kit\[ray\]"):
        snapshot_histories(random_events(seed=6, rows=50), "event", 5, True, 30, engine=EngineConfig(kind="ray"))


def test_a_step_past_its_memory_limit_says_which_key_to_raise():
    from learnkit.core.errors import LearnKitError

    tight = EngineConfig(memory_limit="1MB", threads=1)
    with pytest.raises(LearnKitError, match=r"needed more than engine.memory_limit \(1MB\) even when spilling"):
        snapshot_histories(random_events(seed=7, rows=50_000), "event", 50, False, 30, engine=tight)
