"""Datasets published as zip archives with no checksum of their own: MIND-small (Microsoft News).

The archives are verified against the md5 digests that two independent public projects record for them (the
publisher gives none, and the files could not be downloaded here to take their sha256). Once verified, the
extracted files are recorded by sha256 in `.verified` beside them, and every later use checks that record, so a
file changed after the download is refused by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from learnkit.core.errors import FetchError
from learnkit.core.fsutil import sha256_file

log = logging.getLogger(__name__)
RECORD = ".verified"


@dataclass(frozen=True)
class Archive:
    folder: str  # the sub-folder its members go to
    url: str
    md5: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class ArchiveDataset:
    name: str
    format: str
    archives: tuple[Archive, ...]
    digests_from: str  # where the md5 digests come from, for the error messages and the docs


_MIND = "https://mind201910small.blob.core.windows.net/release/"
MIND_SMALL = ArchiveDataset(
    name="mind-small",
    format="mind",
    archives=(
        Archive(
            "MINDsmall_train",
            _MIND + "MINDsmall_train.zip",
            "8ab752c7d11564622d93132be05dcf6b",
            ("behaviors.tsv", "news.tsv"),
        ),
        Archive(
            "MINDsmall_dev",
            _MIND + "MINDsmall_dev.zip",
            "e3bac5485be8fc7a9934e85e3b78615f",
            ("behaviors.tsv", "news.tsv"),
        ),
    ),  # fmt: skip
    digests_from="the md5 digests recorded by the DataRec project (sisinflab) and by a public DVC lock file",
)
ARCHIVES = {MIND_SMALL.name: MIND_SMALL}


def verified(folder: Path, dataset: ArchiveDataset) -> list[str]:
    """Problems with a folder of extracted files (empty when its record holds and every file matches it)."""
    record = folder / RECORD
    if not record.is_file():
        return [f"{folder}: no {RECORD} record (the files were not downloaded and verified by learn-kit)"]
    try:
        digests = json.loads(record.read_text())
    except json.JSONDecodeError as exc:
        return [f"{record}: unreadable ({exc.msg})"]
    problems = []
    for archive in dataset.archives:
        for member in archive.members:
            name = f"{archive.folder}/{member}"
            file = folder / name
            if not file.is_file():
                problems.append(f"{file}: missing")
            elif digests.get(name) != sha256_file(file):
                problems.append(f"{file}: sha256 differs from the one recorded when it was verified")
    return problems


def download(dataset: ArchiveDataset, staging: Path) -> None:
    """Download every archive, check its md5, extract its members into `staging` and record their sha256."""
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        for archive in dataset.archives:
            local = Path(tmp) / f"{archive.folder}.zip"
            log.info("%s: downloading %s", dataset.name, archive.url)
            try:
                urllib.request.urlretrieve(archive.url, local)
            except OSError as exc:
                raise FetchError(f"download of {archive.url} failed: {exc}") from exc
            md5 = hashlib.md5(local.read_bytes(), usedforsecurity=False).hexdigest()
            if md5 != archive.md5:
                raise FetchError(f"{archive.url}: md5 {md5} != expected {archive.md5} ({dataset.digests_from})")
            with zipfile.ZipFile(local) as zf:
                for member in archive.members:
                    matches = [m for m in zf.namelist() if m == member or m.endswith("/" + member)]
                    if not matches:
                        raise FetchError(f"{archive.url} has no {member}")
                    target = staging / archive.folder / member
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(matches[0]))
                    digests[f"{archive.folder}/{member}"] = sha256_file(target)
    (staging / RECORD).write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
