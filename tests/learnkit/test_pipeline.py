import json

import pandas as pd
import pytest

from learnkit.cli import main
from learnkit.config import load_config
from learnkit.pipeline import run_pipeline

CONFIG = """
name: t
runs_dir: {runs}
data: {{format: ml-100k, path: {data}}}
ceg:
  encoders:
    llm: {{model: {{tiny_random: {{hidden: 32, layers: 1, heads: 2, seed: 0}}}}, max_tokens: 24, batch_size: 128}}
    minilm: {{model: {{tiny_random: {{hidden: 16, layers: 1, heads: 2, seed: 1}}}}, pooling: cls, max_tokens: 24}}
i2i: {{k: 10, queries: 2, query_items: ["1"]}}
"""


@pytest.fixture
def config_path(tmp_path, shared_data, isolated_cache):
    path = tmp_path / "t.yaml"
    path.write_text(CONFIG.format(runs=tmp_path / "runs", data=shared_data / "ml-100k"))
    return path


def test_run_writes_the_run_directory_and_skips_unchanged_stages(config_path, tmp_path):
    config = load_config(config_path)
    metrics = run_pipeline(config)
    run = tmp_path / "runs" / "t"
    for name in ("data/items.parquet", "data/events.parquet", "data/users.parquet", "data/rejected.parquet",
                 "data/validation.json", "ceg/llm/part-00000-of-00001.parquet", "i2i/neighbours.json",
                 "i2i/genre_at_10.png", "metrics.json", "report.md", "report.html"):
        assert (run / name).is_file(), name
    assert metrics["data"]["items"] == 1682 and metrics["data"]["events"] == 100_000
    assert metrics["data"]["rejected"] == 0
    assert metrics["ceg"]["items_encoded"] == 1682 and metrics["ceg"]["dim"] == 32
    assert set(metrics["i2i"]["genre_at_10"]) == {"llm", "llm_centred", "minilm", "minilm_centred", "random"}
    assert 0.3 < metrics["i2i"]["genre_at_10"]["random"] < 0.4  # chance level of sharing a genre
    assert json.loads((run / "metrics.json").read_text())["ceg"]["dim"] == 32
    assert "Toy Story" in (run / "report.md").read_text() and "<table>" in (run / "report.html").read_text()

    again = run_pipeline(config)
    assert all(s["skipped"] for s in again["run"]["stages"].values())
    assert again["i2i"] == metrics["i2i"]

    # a changed i2i setting re-runs i2i only
    config_path.write_text(config_path.read_text().replace("k: 10", "k: 5"))
    third = run_pipeline(load_config(config_path))
    assert {n: s["skipped"] for n, s in third["run"]["stages"].items()} == {"data": True, "ceg": True, "i2i": False}
    assert set(third["i2i"]) >= {"genre_at_5"}


def test_stage_alone_needs_its_inputs(config_path, caplog):
    assert main(["i2i", "--config", str(config_path)]) == 2
    assert "stage 'i2i' needs stage 'ceg' first" in caplog.text


def test_on_error_flag_and_clear_data_errors(tmp_path, isolated_cache, caplog):
    data = tmp_path / "d"
    data.mkdir()
    (data / "items.csv").write_text("item_id,title,price\na,Mug,-1\nb,Cup,2\n")
    (data / "events.csv").write_text("user_id,item_id,ts,label\nu,a,1700000000,1\nu,b,1700000001,1\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: c\nruns_dir: {tmp_path / 'runs'}\ndata: {{format: canonical, path: {data}}}\n"
                   "ceg: {encoders: {llm: {model: {tiny_random: {hidden: 16, layers: 1, heads: 2}}}}}\n")
    assert main(["data", "import", "--config", str(cfg)]) == 2
    assert "items.csv row 1 column 'price': price is negative" in caplog.text
    assert main(["data", "import", "--config", str(cfg), "--on-error", "drop"]) == 0
    rejected = pd.read_parquet(tmp_path / "runs" / "c" / "data" / "rejected.parquet")
    assert rejected[["table", "row", "column", "reason"]].values.tolist() == [
        ["items", 1, "price", "price is negative"], ["events", 1, "item_id", "unknown item_id (not in items)"]]
    validation = json.loads((tmp_path / "runs" / "c" / "data" / "validation.json").read_text())
    assert validation["rejected_total"] == 2 and validation["events"]["kept"] == 1
