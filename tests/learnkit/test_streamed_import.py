"""The streamed import equals the in-memory one: the same events kept, the same rows rejected for the same
reasons (duplicates across chunks named by their first row), the same report; and a failed import leaves
nothing behind."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learnkit.core.errors import DataError
from learnkit.core.sql import EngineConfig
from learnkit.data.importers import load_dataset, validate
from learnkit.data.schema import ValidationRules
from learnkit.data.streamed import MANIFEST, bucket_parts, import_canonical_streamed

DROP = ValidationRules(on_error="drop")
FAIL = ValidationRules(on_error="fail")


def _event_rows(seed: int) -> list[list[str]]:
    """Events of 9 users over 6 items: ties in time, exact repeats far apart (across chunks), and bad rows."""
    rng = random.Random(seed)
    rows = []
    for _ in range(120):
        user = f"u{rng.randrange(9)}"
        item = f"i{rng.randrange(7)}"  # i6 is not in the items
        ts = str(1_600_000_000 + rng.randrange(40))
        rows.append([user, item, ts, rng.choice(["click", "buy"]), rng.choice(["0", "1", "1"])])
    rows[17][2] = "soon"  # not a number
    rows[33][4] = "2"  # not a label
    rows[50][2] = "12"  # out of range
    rows += [rows[3], rows[90], rows[3], rows[40]]  # repeats: the first of each is kept
    rows.insert(60, rows[61])  # a repeat inside one chunk
    return rows


def _write_dataset(folder: Path, kind: str, seed: int = 3) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "title": [f"film {k}" for k in range(6)]}).to_csv(
        folder / "items.csv", index=False
    )
    rows = _event_rows(seed)
    header = ["user_id", "item_id", "ts", "event", "label"]
    if kind == "csv":
        lines = [",".join(header)] + [",".join(r) for r in rows]
        lines.insert(30, "u1,i2,1600000005")  # too few fields
        text = "\n".join(lines) + "\nu2,i3,1600000009,click,1"  # no final line break: cut short
        (folder / "events.csv").write_text(text)
    else:
        columns = {name: [r[k] for r in rows] for k, name in enumerate(header)}
        table = pa.table({**columns, "ts": pa.array([int(t) if t.isdigit() else None for t in columns["ts"]])})
        (folder / "events.parquet").mkdir()
        pq.write_table(table.slice(0, 70), folder / "events.parquet" / "part-0.parquet")
        pq.write_table(table.slice(70), folder / "events.parquet" / "part-1.parquet")
    return folder


def _in_memory(folder: Path):
    return validate(load_dataset("canonical", folder, {}), DROP)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("buckets", [1, 3, 13])  # 13 buckets for 9 users: some empty
def test_streamed_import_equals_the_in_memory_import(tmp_path: Path, kind: str, buckets: int) -> None:
    folder = _write_dataset(tmp_path / "data", kind)
    expected = _in_memory(folder)
    out = tmp_path / "run" / "events.parquet"
    rejected = tmp_path / "run" / "rejected.parquet"
    got = import_canonical_streamed(
        folder, DROP, out, rejected, EngineConfig(buckets=buckets, memory_limit="200MB"), 11
    )

    assert got.report == expected.report
    assert got.rejected == rejected
    # spilled to disk a chunk and a bucket at a time, merged back in the in-memory import's order
    pd.testing.assert_frame_equal(pd.read_parquet(rejected), expected.rejected)
    assert any("as row" in reason for reason in expected.rejected["reason"])  # the repeats were rejected
    assert got.report["events"]["rejected"] >= 9
    pd.testing.assert_frame_equal(got.items, expected.items)
    n, parts = bucket_parts(out)
    assert n == buckets and len(parts) == buckets
    events = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    reference = expected.events.astype({"event": object, "user_id": object, "item_id": object})
    if buckets == 1:  # one part: the input order itself
        pd.testing.assert_frame_equal(events.astype(reference.dtypes.to_dict()), reference)
    # every bucket's rows are the reference's rows of its users, in input order
    for part in parts:
        mine = pd.read_parquet(part)
        own = reference[reference["user_id"].isin(set(mine["user_id"]))].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine.astype(reference.dtypes.to_dict()), own)
    assert sum(len(pd.read_parquet(p)) for p in parts) == len(reference)
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no staging left


def test_a_failed_streamed_import_stops_at_the_first_bad_chunk_and_leaves_no_output(tmp_path: Path) -> None:
    """Under `on_error: fail` the import stops at the first chunk of events with a rejection, saying how far
    it read, not at the end of the file; bad items stop it before any event is read."""
    folder = _write_dataset(tmp_path / "data", "csv")
    out = tmp_path / "run" / "events.parquet"
    with pytest.raises(DataError, match=r"^2 invalid row\(s\) in the first 11 rows of .*events.csv;") as caught:
        import_canonical_streamed(folder, FAIL, out, out.with_name("rejected.parquet"), EngineConfig(buckets=2), 11)
    assert "events.csv row 3 column 'item_id': unknown item_id" in str(caught.value)
    assert _in_memory(folder).report["events"]["rejected"] > 9  # the whole file has many more
    assert not out.exists() and list(out.parent.iterdir()) == []

    items = pd.read_csv(folder / "items.csv")
    pd.concat([items, items.iloc[:1]]).to_csv(folder / "items.csv", index=False)  # an item twice
    one_item = r"^1 invalid row\(s\); .*\n.*items.csv row 7 column 'item_id': duplicate"
    with pytest.raises(DataError, match=one_item) as caught:
        import_canonical_streamed(folder, FAIL, out, out.with_name("rejected.parquet"), EngineConfig(buckets=2), 11)
    assert "events.csv" not in str(caught.value)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_bucket_parts_names_a_folder_it_cannot_read(tmp_path: Path) -> None:
    folder = _write_dataset(tmp_path / "data", "parquet")
    with pytest.raises(DataError, match=MANIFEST):
        bucket_parts(folder / "events.parquet")
    out = tmp_path / "events.parquet"
    import_canonical_streamed(folder, DROP, out, tmp_path / "rejected.parquet", EngineConfig(buckets=2), 50)
    (out / "part-00001.parquet").unlink()
    with pytest.raises(DataError, match="part-00001.parquet: a bucket's part is missing"):
        bucket_parts(out)


def test_the_stages_read_the_streamed_events_as_the_in_memory_ones(tmp_path: Path) -> None:
    """`pd.read_parquet` of the part folder (what every stage does) gives the frame the in-memory import's
    file gives: the same values, types and order (one bucket, the default)."""
    from learnkit.core.fsutil import write_parquet

    folder = _write_dataset(tmp_path / "data", "parquet")
    write_parquet(tmp_path / "memory.parquet", _in_memory(folder).events)
    import_canonical_streamed(
        folder, DROP, tmp_path / "events.parquet", tmp_path / "rejected.parquet", EngineConfig(), 11
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "events.parquet"), pd.read_parquet(tmp_path / "memory.parquet")
    )


def test_the_data_stage_streams_canonical_events_into_user_buckets(tmp_path: Path, isolated_cache) -> None:
    """`data import` of a canonical folder writes `events.parquet/` with one part per `engine.buckets`, and the
    same figures and rejections whatever the number of buckets."""
    from learnkit.config import load_config
    from learnkit.pipeline.runner import run_pipeline

    folder = _write_dataset(tmp_path / "data", "csv")
    figures = {}
    for buckets in (1, 4):
        config = tmp_path / f"b{buckets}.yaml"
        config.write_text(
            f"name: b{buckets}\nruns_dir: {tmp_path / 'runs'}\n"
            f"data: {{format: canonical, path: {folder}, on_error: drop}}\nengine: {{buckets: {buckets}}}\n"
            "ceg: {encoders: {llm: {model: {tiny_random: {hidden: 16, layers: 1, heads: 2}}}}}\n"
        )
        figures[buckets] = run_pipeline(load_config(config), only=["data"])["data"]
        events = tmp_path / "runs" / f"b{buckets}" / "data" / "events.parquet"
        assert bucket_parts(events) == (buckets, sorted(events.glob("part-*.parquet")))
        rejected = pd.read_parquet(tmp_path / "runs" / f"b{buckets}" / "data" / "rejected.parquet")
        assert len(rejected) == figures[buckets]["rejected"] >= 9
    assert figures[1] == figures[4]
    assert figures[1]["events"] == len(_in_memory(folder).events)
