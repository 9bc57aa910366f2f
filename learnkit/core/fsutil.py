"""Atomic writes and content hashing shared by every stage."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from learnkit.core.errors import LearnKitError, storage_error, storage_fault

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UMASK = os.umask(0)
os.umask(_UMASK)


def cache_root() -> Path:
    """Where fetched datasets, converted models and embedding caches live: $LEARN_KIT_CACHE, else
    ~/.cache/learn-kit."""
    return Path(os.environ.get("LEARN_KIT_CACHE", Path.home() / ".cache" / "learn-kit"))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, target)
    except Exception as exc:
        fault = storage_fault(exc)  # a library's own exception type too (safetensors, PIL, pyarrow)
        if fault is None:
            raise
        raise storage_error(fault[0], target, "while writing it (the previous version, if any, is intact)") from exc
    finally:
        with contextlib.suppress(OSError):  # a read-only folder cannot lose it either
            tmp_path.unlink(missing_ok=True)


def publish_folder(staging: Path, dest: Path, replace: bool = True) -> None:
    """Move a finished folder, written beside `dest`, into place by a rename: a reader finds the old folder
    or the new one, never a half-written one. `replace=False` refuses to touch an existing `dest` (another
    writer finished first) and raises FileExistsError."""
    if dest.exists():
        if not replace:
            raise FileExistsError(dest)
        shutil.rmtree(dest)
    os.rename(staging, dest)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(
    path: str | os.PathLike, table: pa.Table | pd.DataFrame, metadata: dict[str, str] | None = None
) -> None:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of dict order."""
    return sha256_text(json.dumps(obj, sort_keys=True, default=json_default))


def json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def is_plain_name(value: object) -> bool:
    """A single path component that cannot leave its folder: no separator, no `..`, not hidden."""
    return isinstance(value, str) and PLAIN_NAME.fullmatch(value) is not None and ".." not in value


def child(folder: Path, name: str) -> Path:
    """`folder / name` for a name from a config or from the data, refused unless it is a plain name: such a
    name never reaches the file system as `..`, a separator or an absolute path. (The config loader checks
    its names first; this is the guard for every other caller.)"""
    if not is_plain_name(name):
        raise LearnKitError(
            f"{name!r} cannot name a file or folder under {folder}: not a plain name (letters, digits, '.', '_', "
            "'-'; not hidden, no '..')"
        )
    return Path(folder) / name


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove what killed writers leave behind under `folder`: `*.partial` staging folders and the
    `.*.tmp` files of atomic writes. Call it only while holding the folder's run lock."""
    found = sorted({*folder.rglob("*.partial"), *folder.rglob(".*.tmp")}, key=lambda p: len(p.parts))
    removed = []
    for path in found:
        if not path.exists() and not path.is_symlink():
            continue  # inside a folder removed a moment ago
        remove_path(path)
        removed.append(path)
    return removed


def remove_path(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a whole folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
