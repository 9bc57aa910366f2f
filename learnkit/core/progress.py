"""Progress bars for long loops: live on a terminal, a line every 30 s in a log file or CI output."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 1.0 if interactive else 30.0)
    return tqdm(iterable, disable=not enabled, **kwargs)
