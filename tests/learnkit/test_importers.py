"""The importers on the real files in ../shared/data, against the row counts of each SOURCE.md."""

import pandas as pd
import pytest

from learnkit.data.fetch import ML_100K, ratings_digest
from learnkit.data.importers import load_dataset, validate
from learnkit.data.importers.amazon import parse_price
from learnkit.data.importers.movielens import GROUPLENS_GENRES
from learnkit.data.importers.unisrec import split_text
from learnkit.data.schema import ValidationRules


@pytest.fixture(scope="module")
def movielens(shared_data):
    return validate(load_dataset("ml-100k", shared_data / "ml-100k", {}), ValidationRules())


def test_movielens_recbole_counts(movielens):
    ds = movielens
    assert (len(ds.events), len(ds.items), len(ds.users)) == (100_000, 1_682, 943)
    assert ds.events["user_id"].nunique() == 943 and ds.rejected.empty
    # SOURCE.md: ratings >= 4 are 34,174 + 21,201 rows
    assert int(ds.events["label"].sum()) == 34_174 + 21_201
    assert ds.events["ts"].min() == 874724710 and ds.events["ts"].max() == 893286638
    toy = ds.items.set_index("item_id").loc["1"]
    assert (toy.title, toy.category, toy.attributes) == ("Toy Story", "Animation, Children's, Comedy", "released 1995")
    assert ratings_digest(ds.events) == ML_100K.ratings_digest


def test_positive_threshold_is_configurable(shared_data):
    ds = validate(load_dataset("ml-100k", shared_data / "ml-100k", {"positive_min_rating": 5}), ValidationRules())
    assert int(ds.events["label"].sum()) == 21_201


def test_grouplens_layout_gives_the_same_tables(movielens, tmp_path):
    """Write the real ratings in the original GroupLens layout (Latin-1 u.item with year in the title and
    19 genre flags) and import them back."""
    ev, it = movielens.events, movielens.items
    pd.DataFrame({"u": ev.user_id, "i": ev.item_id, "r": ev.rating.astype(int), "t": ev.ts}).to_csv(
        tmp_path / "u.data", sep="\t", header=False, index=False
    )
    lines = []
    for row in it.itertuples():
        genres = row.genres.split("|")
        title = f"{row.title} ({row.release_year})" if row.release_year else row.title
        flags = "|".join("1" if g in genres else "0" for g in GROUPLENS_GENRES)
        lines.append(f"{row.item_id}|{title}|01-Jan-{row.release_year or ''}||http://x|{flags}")
    (tmp_path / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1", "replace"))
    movielens.users.to_csv(tmp_path / "u.user", sep="|", header=False, index=False)

    ds = validate(load_dataset("ml-100k-grouplens", tmp_path, {}), ValidationRules())
    assert ratings_digest(ds.events) == ML_100K.ratings_digest
    assert ds.events["label"].tolist() == ev["label"].tolist()
    merged = ds.items.merge(it, on="item_id", suffixes=("", "_recbole"))
    assert len(merged) == 1682
    assert (merged["category"] == merged["category_recbole"]).all()
    assert (merged["attributes"] == merged["attributes_recbole"]).mean() > 0.99


def test_amazon_gift_cards_counts(shared_data):
    raw = load_dataset("amazon-reviews", shared_data / "amazon18-gift-cards", {})
    assert len(raw.events) == 2_972 and len(raw.items) == 1_547
    ds = validate(raw, ValidationRules(on_error="drop"))
    # 3 reviews repeat another's user, item and day exactly: rejected as duplicate events, listed by row.
    assert ds.report["events"] == {"kept": 2_969, "rejected": 3, "input_rows": 2_972}
    assert ds.rejected["reason"].str.startswith("duplicate event").all()
    assert ds.events["user_id"].nunique() == 458 and ds.events["item_id"].nunique() == 148
    five_core = ds.items[ds.items.item_id.isin(ds.events.item_id)]
    assert round(five_core["price"].notna().mean(), 3) == 0.723  # SOURCE.md: 72.3% parsable prices
    assert ds.report["counters"]["price_unparsed"] == 4
    priced = ds.events.merge(ds.items[["item_id", "price"]], on="item_id")
    assert (priced["value"] == priced["price"].fillna(1.0)).all()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$1,234.50", (1234.5, True)),
        ("$25.00", (25.0, True)),
        ("$10.00 - $20.00", (15.0, True)),
        ("", (None, True)),
        (".a-box-inner{background-color:#fff}", (None, False)),
        ("free", (None, False)),
    ],
)
def test_price_parser(text, expected):
    assert parse_price(text) == expected


def test_unisrec_scientific_keeps_the_given_split(shared_data):
    ds = validate(load_dataset("unisrec", shared_data / "amazon18-scientific-unisrec", {}), ValidationRules())
    assert (len(ds.events), len(ds.items), ds.events["user_id"].nunique()) == (59_384, 4_385, 8_442)
    assert ds.report["time"] == "ordinal" and ds.report["counters"]["valid_target_mismatch"] == 0
    counts = ds.events["split"].value_counts().to_dict()
    assert counts == {"train": 59_384 - 2 * 8_442, "valid": 8_442, "test": 8_442}
    test = pd.read_csv(shared_data / "amazon18-scientific-unisrec" / "Scientific.test.inter", sep="\t", dtype=str)
    index = pd.read_csv(
        shared_data / "amazon18-scientific-unisrec" / "Scientific.item2index",
        sep="\t",
        header=None,
        dtype=str,
        names=["asin", "idx"],
    )
    asin = dict(zip(index.idx, index.asin, strict=True))
    last = ds.events[ds.events.split == "test"].set_index("user_id")["item_id"]
    assert all(last[u] == asin[t] for u, t in zip(test["user_id:token"], test["item_id:token"], strict=True))


def test_unisrec_text_split():
    assert split_text("Fan, 120 Volt. . TPI. ") == ("Fan, 120 Volt", None, "TPI")
    assert split_text("No. 2 pencil. Office Supplies. Dixon. ") == ("No. 2 pencil", "Office Supplies", "Dixon")


def test_canonical_parquet_round_trip(movielens, tmp_path):
    movielens.items.to_parquet(tmp_path / "items.parquet")
    movielens.events.to_parquet(tmp_path / "events.parquet")
    ds = validate(load_dataset("canonical", tmp_path, {}), ValidationRules())
    pd.testing.assert_frame_equal(ds.events[movielens.events.columns], movielens.events)
    assert ds.items["item_id"].tolist() == movielens.items["item_id"].tolist()


def test_a_table_may_be_a_folder_of_part_files(tmp_path):
    """events.parquet as Spark or Hive write it: part files in `key=value` folders beside `_SUCCESS` and
    checksum files. It reads as the one-file table does, each bad row named by its part file."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    from learnkit.core.errors import DataError

    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]})
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u3", "u2", "u3"],
            "item_id": ["a", "b", "c", "a", "c", "b"],
            "ts": [1_700_000_010 + t for t in range(6)],
            "label": [1, 0, 1, 1, 0, 1],
            "country": ["de", "fr", "de", "fr", "fr", "de"],
        }
    )
    single, parted = tmp_path / "single", tmp_path / "parted"
    single.mkdir(), parted.mkdir()
    for folder in (single, parted):
        items.to_parquet(folder / "items.parquet")
    events.to_parquet(single / "events.parquet")
    pads.write_dataset(
        pa.Table.from_pandas(events, preserve_index=False),
        parted / "events.parquet",
        format="parquet",
        partitioning=["country"],
        partitioning_flavor="hive",
        basename_template="part-{i}.parquet",
    )
    (parted / "events.parquet" / "_SUCCESS").write_text("")
    (parted / "events.parquet" / "country=de" / ".part-0.parquet.crc").write_bytes(b"\x00")
    read = {f.name: validate(load_dataset("canonical", f, {}), ValidationRules()).events for f in (single, parted)}
    order = ["user_id", "ts"]
    want = read["single"].sort_values(order).reset_index(drop=True)
    got = read["parted"].sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns], want)

    # a damaged part is named; a folder with no parts is refused, not read as "file not found"
    (parted / "events.parquet" / "country=fr" / "part-0.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(DataError, match=r"country=fr/part-0.parquet: not a readable Parquet file"):
        load_dataset("canonical", parted, {})
    empty = tmp_path / "empty"
    (empty / "events.parquet").mkdir(parents=True)
    items.to_parquet(empty / "items.parquet")
    with pytest.raises(DataError, match=r"events.parquet: a folder with no Parquet part files"):
        load_dataset("canonical", empty, {})
