import numpy as np
import pytest

from export.tables import EmbeddingTable, read_table, write_export
from learnkit.core.errors import DataError
from learnkit.core.fsutil import remove_leftovers


def table(n=10, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return EmbeddingTable(
        [f"i{k}" for k in range(n)], rng.standard_normal((n, dim)).astype(np.float32), np.arange(n) % 4 != 0
    )


def test_round_trip_with_shards_manifest_and_latest(tmp_path):
    items = table()
    folder = write_export(
        tmp_path, {"items": items, "users": table(3, 4, 1)}, {"checkpoint_sha256": "abc"}, rows_per_part=4, version="v1"
    )
    assert sorted(p.name for p in (folder / "items").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    got, manifest = read_table(tmp_path, "items", expect_dim=4)
    assert got.ids == items.ids and np.array_equal(got.embeddings, items.embeddings)
    assert got.has_embedding.tolist() == items.has_embedding.tolist()
    assert manifest["tables"]["items"] == {
        "rows": 10,
        "dim": 4,
        "dtype": "float32",
        "rows_with_embedding": 7,
        "columns": {"id": "string", "embedding": "fixed_size_list<float32>", "has_embedding": "bool"},
        "formats": ["parquet"],
        "fallback": [0.0] * 4,
    }
    assert manifest["metadata"] == {"checkpoint_sha256": "abc"} and (tmp_path / "LATEST").read_text() == "v1\n"
    write_export(tmp_path, {"items": table(5)}, {}, version="v2")
    assert len(read_table(tmp_path, "items")[0].ids) == 5
    assert len(read_table(tmp_path, "items", version="v1")[0].ids) == 10
    with pytest.raises(DataError, match="version 'v1' exists already"):
        write_export(tmp_path, {"items": table()}, {}, version="v1")


@pytest.mark.parametrize(
    "damage, message",
    [
        ("delete", r"part-00001.parquet: missing \(listed in manifest.json\)"),
        ("flip", r"part-00001.parquet: sha256 does not match manifest.json"),
    ],
)
def test_missing_or_changed_files_are_refused(tmp_path, damage, message):
    folder = write_export(tmp_path, {"items": table()}, {}, rows_per_part=4, version="v1")
    part = folder / "items" / "part-00001.parquet"
    if damage == "delete":
        part.unlink()
    else:
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0xFF
        part.write_bytes(bytes(data))
    with pytest.raises(DataError, match=message):
        read_table(tmp_path, "items")


def test_expectations_are_checked(tmp_path):
    write_export(tmp_path, {"items": table()}, {}, version="v1")
    with pytest.raises(DataError, match="has dimension 4, expected 8"):
        read_table(tmp_path, "items", expect_dim=8)
    with pytest.raises(DataError, match="export version 'v1', expected 'v2'"):
        read_table(tmp_path, "items", expect_version="v2")
    with pytest.raises(DataError, match="no LATEST pointer"):
        read_table(tmp_path / "elsewhere", "items")


@pytest.mark.parametrize(
    "bad, message", [("nan", "row\\(s\\) with NaN or infinite values"), ("dup", "duplicate id 'i0'")]
)
def test_nan_and_duplicate_ids_are_refused_at_write_time(tmp_path, bad, message):
    t = table()
    if bad == "nan":
        t.embeddings[3, 1] = np.nan
    else:
        t.ids[5] = "i0"
    with pytest.raises(DataError, match=message):
        write_export(tmp_path, {"items": t}, {}, version="v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing published, no staging left behind


def test_a_killed_export_leaves_the_previous_version_readable(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    write_export(tmp_path, {"items": table()}, {}, version="v1")
    repo = str(Path(__file__).resolve().parents[2])
    script = f"""
import sys, time
import numpy as np
sys.path.insert(0, {repo!r})
from export.tables import EmbeddingTable, write_export

def stall(staging):  # the tables are written, the manifest is not: the middle of an export
    print("midway", flush=True)
    time.sleep(120)
    return {{}}

rows = EmbeddingTable([f"j{{k}}" for k in range(50)], np.ones((50, 4), np.float32), np.ones(50, bool))
write_export({str(tmp_path)!r}, {{"items": rows}}, {{}}, version="v2", artefacts=stall)
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "midway"
    process.kill()  # SIGKILL: no clean-up code runs
    process.wait()
    (staging,) = tmp_path.glob(".v2.*.partial")  # private to its writer
    assert (staging / "items").is_dir() and not (tmp_path / "v2").exists()
    got, manifest = read_table(tmp_path, "items")
    assert manifest["version"] == "v1" and got.ids == table().ids
    assert (tmp_path / "LATEST").read_text() == "v1\n"
    write_export(tmp_path, {"items": table(5)}, {}, version="v2")  # another writer never touches it
    assert len(read_table(tmp_path, "items")[0].ids) == 5 and staging.is_dir()
    assert remove_leftovers(tmp_path) == [staging]  # what the next run does under its lock


def test_tampered_manifest_and_pointer_are_refused(tmp_path):
    write_export(tmp_path, {"items": table()}, {}, version="v1")
    manifest = tmp_path / "v1" / "manifest.json"
    original = manifest.read_text()
    manifest.write_text(original.replace('"rows": 10', '"rows": 11'))
    with pytest.raises(DataError, match=r"manifest.json: its own hash does not match its content"):
        read_table(tmp_path, "items")
    manifest.write_text(original)
    (tmp_path.parent / "elsewhere").mkdir(exist_ok=True)
    for pointer in ("../elsewhere", "/etc", ".", "v1/../v1"):
        (tmp_path / "LATEST").write_text(pointer + "\n")
        with pytest.raises(DataError, match=r"LATEST: holds .* not a plain version name"):
            read_table(tmp_path, "items")
    with pytest.raises(DataError, match=r"export version '../v1' is not a plain name"):
        read_table(tmp_path, "items", version="../v1")


def test_versions_are_unique_within_one_second(tmp_path):
    folders = [write_export(tmp_path, {"items": table()}, {}) for _ in range(3)]
    assert len({f.name for f in folders}) == 3 and sorted(folders) == folders
    assert (tmp_path / "LATEST").read_text().strip() == folders[-1].name


def point_in_time_table():
    # u refreshed at 86,400 + 5 and 2 * 86,400 + 9; v at 86,400 + 7; partitions per day from 0
    day = 86_400
    valid_from = np.array([day + 5, 2 * day + 9, day + 7])
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    return EmbeddingTable(
        ["u", "u", "v"], vectors, np.ones(3, bool), None, valid_from, valid_from - 3, valid_from // day * day
    )


def test_point_in_time_partitions_read_as_a_plain_hive_dataset(tmp_path):
    import pyarrow.dataset as ds

    folder = write_export(tmp_path, {"user_snapshots": point_in_time_table()}, {}, formats=("parquet", "tfrecord"))
    parts = sorted(
        p.relative_to(folder / "user_snapshots").as_posix() for p in (folder / "user_snapshots").rglob("*.parquet")
    )
    assert parts == ["as_of=19700102T000000Z/part-00000.parquet", "as_of=19700103T000000Z/part-00000.parquet"]
    # a dataset reader sees the partition as a column beside the row's own times, with no clash
    frame = ds.dataset(folder / "user_snapshots", format="parquet", partitioning="hive").to_table().to_pandas()
    frame = frame.sort_values(["id", "valid_from"]).reset_index(drop=True)
    assert frame[["id", "as_of", "valid_from", "history_end"]].values.tolist() == [
        ["u", "19700102T000000Z", 86_405, 86_402],
        ["u", "19700103T000000Z", 172_809, 172_806],
        ["v", "19700102T000000Z", 86_407, 86_404],
    ]
    back, _ = read_table(tmp_path, "user_snapshots")
    order = np.argsort(back.valid_from)
    assert back.as_of[order].tolist() == [86_400, 86_400, 172_800]
    assert back.history_end[order].tolist() == [86_402, 86_404, 172_806]
    # the TFRecord copy carries the same times
    import subprocess
    import sys

    script = (
        "import sys, tensorflow as tf; r = next(iter(tf.data.TFRecordDataset([sys.argv[1]])));"
        "e = tf.train.Example.FromString(r.numpy()).features.feature;"
        "print(e['valid_from'].int64_list.value[0], e['history_end'].int64_list.value[0])"
    )
    record = folder / "tfrecord" / "user_snapshots" / "as_of=19700103T000000Z" / "part-00000.tfrecord"
    done = subprocess.run([sys.executable, "-c", script, str(record)], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["172809", "172806"]


def test_a_row_valid_before_its_partition_is_refused(tmp_path):
    bad = point_in_time_table()
    bad.as_of = bad.as_of + 86_400  # the folder claims a later time than the row is valid from
    with pytest.raises(DataError, match="valid before its partition"):
        write_export(tmp_path, {"user_snapshots": bad}, {})
