import os
from pathlib import Path

import pytest

from learnkit.core.frameworks import prepare_tensorflow

prepare_tensorflow()  # before anything imports TensorFlow

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private learn-kit cache for data, embeddings and tiny models; real-model conversions are reused."""
    cache = tmp_path / "cache"
    real = Path(os.environ.get("LEARN_KIT_CACHE", Path.home() / ".cache" / "learn-kit"))
    (cache / "models").mkdir(parents=True)
    if (real / "models").is_dir():
        for model in (real / "models").glob("gguf-*"):
            (cache / "models" / model.name).symlink_to(model)
    monkeypatch.setenv("LEARN_KIT_CACHE", str(cache))
    return cache
