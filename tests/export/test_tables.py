import numpy as np
import pytest

from export.tables import EmbeddingTable, read_table, write_export
from learnkit.errors import DataError


def table(n=10, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return EmbeddingTable([f"i{k}" for k in range(n)], rng.standard_normal((n, dim)).astype(np.float32),
                          np.arange(n) % 4 != 0)


def test_round_trip_with_shards_manifest_and_latest(tmp_path):
    items = table()
    folder = write_export(tmp_path, {"items": items, "users": table(3, 4, 1)}, {"checkpoint_sha256": "abc"},
                          rows_per_part=4, version="v1")
    assert sorted(p.name for p in (folder / "items").iterdir()) == ["part-00000.parquet", "part-00001.parquet",
                                                                    "part-00002.parquet"]
    got, manifest = read_table(tmp_path, "items", expect_dim=4)
    assert got.ids == items.ids and np.array_equal(got.embeddings, items.embeddings)
    assert got.has_embedding.tolist() == items.has_embedding.tolist()
    assert manifest["tables"]["items"] == {"rows": 10, "dim": 4, "dtype": "float32", "rows_with_embedding": 7,
                                           "columns": {"id": "string", "embedding": "fixed_size_list<float32>",
                                                       "has_embedding": "bool"},
                                           "formats": ["parquet"], "fallback": [0.0] * 4}
    assert manifest["metadata"] == {"checkpoint_sha256": "abc"} and (tmp_path / "LATEST").read_text() == "v1\n"
    write_export(tmp_path, {"items": table(5)}, {}, version="v2")
    assert len(read_table(tmp_path, "items")[0].ids) == 5
    assert len(read_table(tmp_path, "items", version="v1")[0].ids) == 10
    with pytest.raises(DataError, match="version 'v1' exists already"):
        write_export(tmp_path, {"items": table()}, {}, version="v1")


@pytest.mark.parametrize("damage, message", [
    ("delete", r"part-00001.parquet: missing \(listed in manifest.json\)"),
    ("flip", r"part-00001.parquet: sha256 does not match manifest.json"),
])
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


@pytest.mark.parametrize("bad, message", [("nan", "row\\(s\\) with NaN or infinite values"),
                                          ("dup", "duplicate id 'i0'")])
def test_nan_and_duplicate_ids_are_refused_at_write_time(tmp_path, bad, message):
    t = table()
    if bad == "nan":
        t.embeddings[3, 1] = np.nan
    else:
        t.ids[5] = "i0"
    with pytest.raises(DataError, match=message):
        write_export(tmp_path, {"items": t}, {}, version="v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing published, no staging left behind
