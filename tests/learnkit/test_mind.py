"""Logged impressions in MIND's layout: a hand-made behaviors.tsv / news.tsv pair, every count checked by hand,
and `data fetch mind-small` on local copies of the archives (the public ones cannot be reached here)."""

import hashlib
import zipfile

import pytest

from learnkit.core.errors import DataError, FetchError
from learnkit.data import fetch_archives
from learnkit.data.fetch import fetch
from learnkit.data.importers import load_dataset, validate
from learnkit.data.schema import ValidationRules

NEWS = (
    "N1\tsports\tsoccer\tCup final tonight\tThe final is tonight.\thttps://example.com/1\t[]\t[]\n"
    "N2\tnews\tpolitics\tVote counted\tThe vote was counted.\thttps://example.com/2\t[]\t[]\n"
    "N3\tfood\trecipes\tBread at home\tBake your own bread.\thttps://example.com/3\t[]\t[]\n"
    "N4\tsports\ttennis\tOpen begins\tThe open begins.\thttps://example.com/4\t[]\t[]\n"
)
# U1: two requests; U2: one request and a history of two clicks (N3 twice across rows: once)
BEHAVIOURS = (
    "1\tU1\t11/11/2019 9:00:00 AM\t\tN1-1 N2-0 N3-0\n"
    "2\tU2\t11/11/2019 10:30:15 PM\tN3 N4\tN1-0 N2-1\n"
    "3\tU1\t11/12/2019 9:00:00 AM\tN1\tN4-1 N3-0\n"
    "4\tU2\t11/12/2019 8:00:00 AM\tN3\tN4-0 N1-0\n"
)


def mind_folder(tmp_path, behaviours=BEHAVIOURS):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "news.tsv").write_text(NEWS)
    (tmp_path / "behaviors.tsv").write_text(behaviours)
    return tmp_path


def test_every_shown_item_is_one_event_with_its_request_and_history_comes_first(tmp_path):
    ds = validate(load_dataset("mind", mind_folder(tmp_path), {}), ValidationRules())
    events = ds.events
    shown = events[events["event"] == "impression"]
    assert len(shown) == 3 + 2 + 2 + 2 and shown["label"].tolist().count(1) == 3
    first = shown[shown["request_id"] == "1"].sort_values("item_id")
    assert first[["user_id", "item_id", "label"]].values.tolist() == [["U1", "N1", 1], ["U1", "N2", 0], ["U1", "N3", 0]]
    assert first["ts"].unique().tolist() == [1573462800]  # 2019-11-11 09:00:00 UTC
    assert shown.loc[shown["request_id"] == "2", "ts"].unique().tolist() == [1573511415]  # 10:30:15 PM
    history = events[events["event"] == "history"].sort_values(["user_id", "item_id"])
    # U1's history (N1, listed first by request 3) and U2's (N3, N4 in request 2; N3 again in request 4): one
    # event per user and item, one second before the first request that lists it, never before it is known
    assert history[["user_id", "item_id", "label"]].values.tolist() == [
        ["U1", "N1", 1],
        ["U2", "N3", 1],
        ["U2", "N4", 1],
    ]
    assert history["ts"].tolist() == [1573549199, 1573511414, 1573511414]  # request 3 and request 2, minus 1 s
    items = ds.items.set_index("item_id")
    assert items.loc["N1", ["title", "category", "keywords", "attributes"]].tolist() == [
        "Cup final tonight", "sports", "soccer", "The final is tonight.",
    ]  # fmt: skip
    assert "url" not in ds.items.columns and ds.report["counters"]["requests"] == 4


def test_a_bad_request_is_rejected_by_file_row_and_field(tmp_path):
    bad = BEHAVIOURS + "5\tU3\tyesterday\t\tN1-1\n" + "6\tU3\t11/12/2019 9:00:00 AM\t\tN1-1 N2-x\n"
    ds = validate(load_dataset("mind", mind_folder(tmp_path, bad), {}), ValidationRules(on_error="drop"))
    rejected = ds.rejected[["table", "row", "column"]].values.tolist()
    assert rejected == [["events", 5, "time"], ["events", 6, "impressions"]]
    assert "U3" not in set(ds.events["user_id"])
    with pytest.raises(DataError, match=r"behaviors.tsv row 5 column 'time': not a time of the form"):
        validate(load_dataset("mind", mind_folder(tmp_path, bad), {}), ValidationRules())


def test_two_splits_read_together_keep_their_requests_apart(tmp_path):
    mind_folder(tmp_path / "MINDsmall_train")
    mind_folder(tmp_path / "MINDsmall_dev", BEHAVIOURS.replace("11/1", "11/2"))
    ds = validate(load_dataset("mind", tmp_path, {"history": False}), ValidationRules())
    assert set(ds.events["event"]) == {"impression"} and len(ds.items) == 4  # the same news once
    assert ds.events["request_id"].nunique() == 8 and "MINDsmall_dev:1" in set(ds.events["request_id"])


def test_the_ranker_reads_exactly_the_logged_impressions_and_the_ab_replays_their_requests(tmp_path):
    import numpy as np

    from eval.ab import add_requests
    from ranking.config import RankingSamplesConfig
    from ranking.samples import ranking_samples

    ds = validate(load_dataset("mind", mind_folder(tmp_path), {}), ValidationRules())
    events = ds.events
    in_test = (events["ts"] >= 1573516800).to_numpy()  # from 2019-11-12 00:00 UTC
    samples = ranking_samples(events, ds.items, in_test, RankingSamplesConfig(valid_fraction=0.4), seed=0)
    assert samples.negatives == "logged" and len(samples.rows) == 9  # the 9 shown items; no history event
    test = samples.rows[samples.rows["part"] == "test"].assign(snapshot=1573516800.0)
    requests = add_requests(test, 86_400)
    # requests 3 and 4 fall on the same user-day for neither user, but on the same day: logged ids keep them
    assert requests.groupby("request")["request_id"].nunique().eq(1).all() and requests["request"].nunique() == 2
    assert np.array_equal(np.sort(requests["request_id"].unique()), ["3", "4"])


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(f"inner/{name}", text)
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_fetch_mind_small_verifies_md5_records_sha256_and_refuses_a_changed_file(tmp_path, monkeypatch):
    """The download path with the public URLs replaced by local copies (file://): the md5 check, the
    extraction, the sha256 record, and its check on every later use."""
    monkeypatch.setenv("LEARN_KIT_CACHE", str(tmp_path / "cache"))
    archives = []
    for folder, days in (("MINDsmall_train", BEHAVIOURS), ("MINDsmall_dev", BEHAVIOURS.replace("11/1", "11/2"))):
        md5 = _zip(tmp_path / f"{folder}.zip", {"behaviors.tsv": days, "news.tsv": NEWS})
        archives.append(
            fetch_archives.Archive(folder, (tmp_path / f"{folder}.zip").as_uri(), md5, ("behaviors.tsv", "news.tsv"))
        )
    local = fetch_archives.ArchiveDataset("mind-small", "mind", tuple(archives), "the test's own zips")
    monkeypatch.setitem(fetch_archives.ARCHIVES, "mind-small", local)
    monkeypatch.setattr("learnkit.data.fetch.ARCHIVES", fetch_archives.ARCHIVES)
    monkeypatch.chdir(tmp_path)  # no ../shared/data/mind-small here
    with pytest.raises(FetchError, match="not found locally and downloads are disabled"):
        fetch("mind-small", allow_download=False)
    got = fetch("mind-small")
    assert got.format == "mind" and (got.path / "MINDsmall_dev" / "news.tsv").read_text() == NEWS
    assert fetch("mind-small", allow_download=False).path == got.path  # found again, sha256 as recorded
    ds = validate(load_dataset("mind", got.path, {}), ValidationRules())
    assert ds.events.loc[ds.events["event"] == "impression", "request_id"].nunique() == 8
    (got.path / "MINDsmall_train" / "news.tsv").write_text(NEWS.replace("Cup", "Bowl"))
    with pytest.raises(FetchError, match=r"MINDsmall_train/news.tsv: sha256 differs from the one recorded"):
        fetch("mind-small")
    wrong = fetch_archives.ArchiveDataset("mind-small", "mind", (archives[0].__class__(
        "MINDsmall_train", archives[0].url, "0" * 32, ("behaviors.tsv",)),), "the test")  # fmt: skip
    monkeypatch.setitem(fetch_archives.ARCHIVES, "mind-small", wrong)
    monkeypatch.setenv("LEARN_KIT_CACHE", str(tmp_path / "cache2"))
    with pytest.raises(FetchError, match=r"md5 [0-9a-f]{32} != expected 0{32} \(the test\)"):
        fetch("mind-small")
