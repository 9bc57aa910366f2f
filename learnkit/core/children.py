"""Child processes that never outlive learn-kit: a killed run must not leave a converter writing on."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_child(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """`subprocess.run` whose child is killed with its parent (on Linux; elsewhere a plain run)."""
    if sys.platform.startswith("linux"):
        kwargs["preexec_fn"] = _die_with_parent
    return subprocess.run(command, **kwargs)
