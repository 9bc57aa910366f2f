"""Child processes that never outlive learn-kit: a killed run must not leave a converter writing on."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from learnkit.core.errors import DataError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@contextlib.contextmanager
def started_child(command: list[str], **kwargs: Any) -> Iterator[subprocess.Popen]:
    """A child started in the background for work that overlaps the parent's. It is killed with its parent
    (on Linux), and when the block fails, so that no half-done child writes on."""
    if sys.platform.startswith("linux"):
        kwargs["preexec_fn"] = _die_with_parent
    child = subprocess.Popen(command, **kwargs)
    try:
        yield child
    except BaseException:
        child.kill()
        child.wait()
        raise
    finally:
        child.wait()


@contextlib.contextmanager
def child_beside(command: list[str], failure: str, **kwargs: Any) -> Iterator[Callable[[], str]]:
    """`started_child` with its output in anonymous temporary files (a full pipe would stall it while the
    parent works); yields a function that waits for the child and returns its stdout, or raises `DataError`
    with `failure` and the end of its stderr."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        with started_child(command, stdout=out, stderr=err, text=True, **kwargs) as child:

            def result() -> str:
                code = child.wait()
                out.seek(0)
                err.seek(0)
                if code != 0:
                    raise DataError(f"{failure}:\n{err.read()[-3000:]}")
                return out.read()

            yield result
