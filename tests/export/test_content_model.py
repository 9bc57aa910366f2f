"""The CEG model's ONNX export, cached across runs: a hit skips the export, a damaged entry is exported again,
and every use is checked against the torch CEG."""

import json

import numpy as np
import pytest

import export.content_model as content_model
from export.content_inputs import MODEL, SETTINGS, TOKENIZER, tokenize
from export.towers import onnx_outputs
from learn_embed.ceg import ContentEncoder
from learn_embed.config import EncoderConfig, ModelConfig, TinyRandomModel

SENTENCES = [f"Item number {i}, a film about {'word ' * i}." for i in range(6)]


def _encoder(pooling: str = "mean") -> ContentEncoder:
    model = ModelConfig(tiny_random=TinyRandomModel(hidden=16, layers=1, heads=2, seed=0))
    return ContentEncoder(EncoderConfig(model=model, pooling=pooling, max_tokens=16, batch_size=4))


def test_the_onnx_model_is_cached_across_runs_and_a_damaged_entry_is_exported_again(
    isolated_cache, tmp_path, monkeypatch
):
    exports = []
    real_export = content_model.export_traced

    def counted(*args, **kwargs):
        exports.append(args[2])
        return real_export(*args, **kwargs)

    monkeypatch.setattr(content_model, "export_traced", counted)
    first = content_model.export_content_model(_encoder(), SENTENCES, tmp_path / "a", 6)
    assert len(exports) == 1 and first.max_abs < 1e-4 and first.items == 6
    (cached,) = (isolated_cache / "onnx").glob(f"content-*/{MODEL}")
    again = content_model.export_content_model(_encoder(), SENTENCES, tmp_path / "b", 6)
    assert len(exports) == 1 and again.max_abs < 1e-4  # from the cache, checked all the same
    assert (tmp_path / "b" / MODEL).read_bytes() == (tmp_path / "a" / MODEL).read_bytes()
    cached.write_bytes(b"not an onnx model")
    repaired = content_model.export_content_model(_encoder(), SENTENCES, tmp_path / "c", 6)
    assert len(exports) == 2 and repaired.max_abs < 1e-4
    assert cached.read_bytes() == (tmp_path / "a" / MODEL).read_bytes()  # the entry is good again


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_the_traced_model_takes_any_batch_and_length(tmp_path, pooling):
    """The tracer records one run of the model's Python: other batch sizes and lengths, padded or not, must give
    the torch CEG's vectors too."""
    encoder = _encoder(pooling)
    content_model.export_content_model(encoder, SENTENCES, tmp_path, 6)
    settings = json.loads((tmp_path / SETTINGS).read_text())
    for batch in (SENTENCES[:1], SENTENCES[5:], SENTENCES[1:3], ["a", "a film " * 40] * 3):
        ids, mask = tokenize(tmp_path / TOKENIZER, settings, batch)
        got = onnx_outputs(tmp_path / MODEL, {"input_ids": ids, "attention_mask": mask})
        assert got.shape == (len(batch), 16) and np.abs(got - encoder.encode(batch, progress=False)).max() < 1e-5


def test_another_pooling_is_another_cache_entry(isolated_cache, tmp_path):
    content_model.export_content_model(_encoder(), SENTENCES, tmp_path / "mean", 6)
    content_model.export_content_model(_encoder("last"), SENTENCES, tmp_path / "last", 6)
    assert len(list((isolated_cache / "onnx").glob(f"content-*/{MODEL}"))) == 2


def test_an_int8_encoder_is_refused_as_the_content_model_by_key(tmp_path):
    from learnkit.core.errors import ConfigError

    model = ModelConfig(tiny_random=TinyRandomModel(hidden=16, layers=1, heads=2, seed=0))
    encoder = ContentEncoder(EncoderConfig(model=model, precision="int8"))
    with pytest.raises(ConfigError, match="key 'export.content_model'"):
        content_model.export_content_model(encoder, SENTENCES, tmp_path / "q", 6)


def test_an_int8_exported_encoder_with_a_content_model_is_refused_when_the_config_loads():
    from pathlib import Path

    from learnkit.config import load_config
    from learnkit.core.errors import ConfigError

    smoke = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
    with pytest.raises(ConfigError, match="key 'export.content_model'"):
        load_config(smoke, {"ceg.encoders.llm.precision": "int8"})
    loaded = load_config(smoke, {"ceg.encoders.llm.precision": "int8", "export.content_model": False})
    assert loaded.ceg.encoders["llm"].precision == "int8"
