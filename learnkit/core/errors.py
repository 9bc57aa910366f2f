"""Errors a user can act on: each names the file, row, column or config key at fault."""

from __future__ import annotations

import errno
import os
import re


class LearnKitError(Exception):
    """Base class; the CLI prints these without a traceback."""


class ConfigError(LearnKitError):
    """A config key is missing, unknown or of the wrong type."""


class DataError(LearnKitError):
    """An input file cannot be read or a row breaks the canonical data contract."""


class FetchError(LearnKitError):
    """A dataset could not be obtained or did not verify."""


class StorageError(LearnKitError):
    """The file system refused a read or write: a full disk, a read-only folder, no permission."""


# What the user can do about each fault the file system reports
_ADVICE = {
    errno.ENOSPC: "free some space and run again",
    errno.EDQUOT: "free some space (a disk quota) and run again",
    errno.EFBIG: "a file-size limit (ulimit -f) stopped the write; raise it and run again",
    errno.EROFS: "the file system is read-only: make it writable, or set runs_dir to a writable folder",
    errno.EACCES: "no permission: make the folder writable for this user, or set runs_dir to a writable folder",
    errno.EPERM: "not permitted: make the folder writable for this user, or set runs_dir to a writable folder",
    errno.EIO: "the device reported an I/O error: check the disk",
}
# Libraries written in C++ or Rust (TensorFlow's SaveV2, safetensors) report an OS fault inside their own
# exception type: found by its errno ("os error 28") or by the C library's text for one of the errnos above.
_ERRNO_IN_TEXT = re.compile(r"(?:os error|errno)\s*(\d+)", re.IGNORECASE)
_STRERROR = {os.strerror(code).lower(): code for code in _ADVICE}
_PATH_IN_TEXT = re.compile(r"(/[^\s;:'\"\]\)/]+/[^\s;:'\"\]\)]+)")


def storage_fault(exc: BaseException) -> tuple[int, str | None] | None:
    """(errno, path or None) when `exc`, or an exception it was raised from, is a file-system fault a user can
    act on; None for anything else (a bug keeps its traceback)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageError):
            return None  # already a one-line message
        if isinstance(current, OSError) and current.errno in _ADVICE:
            return current.errno, current.filename
        text = str(current)
        found = _ERRNO_IN_TEXT.search(text)
        code = int(found.group(1)) if found else None
        if code not in _ADVICE:
            lowered = text.lower()
            code = next((c for s, c in _STRERROR.items() if s in lowered), None)
        if code is not None:
            paths = _PATH_IN_TEXT.findall(text)  # the longest: "device_/job:localhost" holds a slash too
            return code, max(paths, key=len) if paths else None
        current = current.__cause__ or current.__context__
    return None


def storage_error(code: int, path: object, doing: str = "") -> StorageError:
    """One line: the path, the fault with its errno name, and what to do about it."""
    name = errno.errorcode.get(code, str(code))
    where = f" {doing}" if doing else ""
    return StorageError(f"{path}: {os.strerror(code)} ({name}){where}; {_ADVICE.get(code, 'check the disk')}")
