"""The process settings two libraries need before they are first imported, set in one place.

TensorFlow: TFRS 0.7.7 needs Keras 2 (tf-keras), which TensorFlow 2.21 uses only with TF_USE_LEGACY_KERAS=1
set before `import tensorflow`. matplotlib: the file-only Agg backend, since nothing here has a display.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from learnkit.core.fsutil import atomic_path

TENSORFLOW_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def prepare_tensorflow() -> None:
    """Call before anything in this process imports TensorFlow (a value set by the caller is kept)."""
    for key, value in TENSORFLOW_ENV.items():
        os.environ.setdefault(key, value)


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 100) -> None:
    """Write a matplotlib figure as PNG, published whole or not at all, and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
