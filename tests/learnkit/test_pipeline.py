import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnkit.cli import main
from learnkit.config import load_config
from learnkit.core.errors import DataError
from learnkit.pipeline.runner import run_pipeline, run_stage

CONFIG = """
name: t
runs_dir: {runs}
data: {{format: ml-100k, path: {data}}}
ceg:
  encoders:
    llm: {{model: {{tiny_random: {{hidden: 32, layers: 1, heads: 2, seed: 0}}}}, max_tokens: 24, batch_size: 128}}
    minilm: {{model: {{tiny_random: {{hidden: 16, layers: 1, heads: 2, seed: 1}}}}, pooling: cls, max_tokens: 24}}
i2i: {{k: 10, queries: 2, query_items: ["1"], label_column: genres}}
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
    for name in (
        "data/items.parquet",
        "data/events.parquet",
        "data/users.parquet",
        "data/rejected.parquet",
        "data/validation.json",
        "ceg/llm/part-00000-of-00001.parquet",
        "i2i/neighbours.json",
        "i2i/genre_at_10.png",
        "metrics.json",
        "report.md",
        "report.html",
    ):
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


@pytest.mark.slow
def test_a_change_below_a_stage_re_runs_it_whichever_command_starts_it(config_path, tmp_path):
    """Outputs edited after a stage finished, and new model weights at the same path, re-run every stage
    that read them: a stage run alone does not call them "unchanged"."""
    import pyarrow.parquet as pq
    from safetensors.torch import load_file, save_file

    config = load_config(config_path)
    run_pipeline(config)
    part = tmp_path / "runs" / "t" / "ceg" / "minilm" / "part-00000-of-00001.parquet"
    table = pq.read_table(part)
    pq.write_table(table.take(list(range(table.num_rows))[::-1]), part)  # same rows, another order
    _, skipped = run_stage(config, "i2i")
    assert not skipped  # its input's content changed
    again = run_pipeline(config)
    assert {n: s["skipped"] for n, s in again["run"]["stages"].items()} == {"data": True, "ceg": False, "i2i": False}
    assert run_pipeline(config)["run"]["stages"]["ceg"]["skipped"]
    # new weights in the model folder the config points at (the tiny LLM is the 32-wide one)
    folder = next(
        f
        for f in (Path(os.environ["LEARN_KIT_CACHE"]) / "models").glob("tiny-random-*")
        if json.loads((f / "config.json").read_text())["hidden_size"] == 32
    )
    weights = load_file(folder / "model.safetensors")
    weights = {k: v * 1.01 if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    third = run_pipeline(config)
    assert {n: s["skipped"] for n, s in third["run"]["stages"].items()} == {"data": True, "ceg": False, "i2i": False}
    assert third["ceg"]["encoders"]["llm"]["from_cache"] == 0  # new weights, another cache key


def test_stage_alone_needs_its_inputs(config_path, caplog):
    assert main(["i2i", "--config", str(config_path)]) == 2
    assert "stage 'i2i' needs stage 'ceg' first" in caplog.text


def test_on_error_flag_and_clear_data_errors(tmp_path, isolated_cache, caplog):
    data = tmp_path / "d"
    data.mkdir()
    (data / "items.csv").write_text("item_id,title,price\na,Mug,-1\nb,Cup,2\n")
    (data / "events.csv").write_text("user_id,item_id,ts,label\nu,a,1700000000,1\nu,b,1700000001,1\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: c\nruns_dir: {tmp_path / 'runs'}\ndata: {{format: canonical, path: {data}}}\n"
        "ceg: {encoders: {llm: {model: {tiny_random: {hidden: 16, layers: 1, heads: 2}}}}}\n"
    )
    assert main(["data", "import", "--config", str(cfg)]) == 2
    assert "items.csv row 1 column 'price': price is negative" in caplog.text
    assert main(["data", "import", "--config", str(cfg), "--on-error", "drop"]) == 0
    rejected = pd.read_parquet(tmp_path / "runs" / "c" / "data" / "rejected.parquet")
    assert rejected[["table", "row", "column", "reason"]].values.tolist() == [
        ["items", 1, "price", "price is negative"],
        ["events", 1, "item_id", "unknown item_id (not in items)"],
    ]
    validation = json.loads((tmp_path / "runs" / "c" / "data" / "validation.json").read_text())
    assert validation["rejected_total"] == 2 and validation["events"]["kept"] == 1


CHAIN = (
    CONFIG
    + """
pch:
  split: {{kind: temporal, boundary: test_period, history_max: 30, target_max: 10}}
  model: {{width: 16, layers: 1, heads: 2, out_dim: 16}}
  train: {{epochs: 1, batch_size: 128, lr: 0.002}}
  eval: {{ks: [10, 50], bootstrap: 50}}
  methods: {{learn_llm: {{encoder: llm, extra_seeds: [1]}}}}
test_period: {{start_quantile: 0.8}}
export: {{method: learn_llm, snapshot_every: event, content_parity_items: 24}}
ranking:
  model: {{id_dim: 4, main_tower: [16], aux_tower: [16, 8], item_features: [category]}}
  train: {{epochs: 2, batch_size: 2048, patience: 1}}
  bootstrap: 50
ab: {{control_share: 0.5, treatment_share: 0.5, aa_runs: 40, bootstrap: 100, simulated_seeds: 2, widen: 3}}
"""
)


def test_the_whole_chain_writes_every_documented_key(tmp_path, shared_data, isolated_cache):
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN.format(runs=tmp_path / "runs", data=shared_data / "ml-100k"))
    config = load_config(path)
    metrics = run_pipeline(config, only=["data", "ceg", "pch", "export", "ranking", "ab"])
    run = tmp_path / "runs" / "t"
    retrieval = metrics["retrieval"]
    # every user with a rating before the test period and one in it is a test user (MovieLens: 198)
    events = pd.read_parquet(run / "data" / "events.parquet")
    start = np.quantile(events["ts"], 0.8, method="higher")
    before, during = set(events[events.ts < start].user_id), set(events[events.ts >= start].user_id)
    assert retrieval["test_users"] == len(before & during) == retrieval["split"]["test_examples"]
    assert retrieval["popularity"]["R@50"] > retrieval["random"]["R@50"]
    for row in ("popularity", "random", "learn_llm"):
        ci = retrieval[row]["ci"]["R@50"]
        assert ci["ci_low"] <= retrieval[row]["R@50"] <= ci["ci_high"]
        assert {"users", "R@10", "N@10", "R@50"} <= set(retrieval[row]["cold_items"])
    assert retrieval["popularity"]["cold_items"]["R@50"] == 0.0  # a never-seen item has no count
    assert retrieval["learn_llm"]["training"]["loss"] == "full"
    seeds = retrieval["learn_llm"]["seeds"]
    assert seeds["seeds"] == [0, 1] and seeds["R@50"]["values"][0] == retrieval["learn_llm"]["R@50"]
    assert abs(seeds["R@50"]["mean"] - sum(seeds["R@50"]["values"]) / 2) < 1e-12
    assert 0 <= metrics["ceg"]["llm"]["truncated_share"] <= 1 and metrics["ceg"]["llm"]["max_tokens"] == 24
    # the towers, trained before the test period, scored on its targets: each among the items existing then
    new_items = set(events.groupby("item_id")["ts"].min().loc[lambda first: first >= start].index)
    period = retrieval["test_period"]
    assert period["new_items"] == len(new_items) == 66
    assert period["targets"] == len(pd.read_parquet(run / "pch" / "split.parquet").query("part == 'period'"))
    assert retrieval["popularity"]["test_period"]["new_items"]["R@50"] == 0.0  # no count before the period
    for row in ("random", "learn_llm"):
        block = retrieval[row]["test_period"]
        assert block["ci"]["R@50"]["ci_low"] <= block["R@50"] <= block["ci"]["R@50"]["ci_high"]
        assert block["new_items"]["users"] > 0 and "R@50" in block["new_items"]["ci"]
    vs_random = retrieval["learn_llm"]["test_period"]["new_items"]["ci"]["vs_random"]["R@50"]
    on_new_items = {row: retrieval[row]["test_period"]["new_items"]["R@50"] for row in ("random", "learn_llm")}
    assert abs(vs_random["value"] - (on_new_items["learn_llm"] - on_new_items["random"])) < 1e-12
    export = metrics["export"]
    # the snapshot's item table knows nothing of the test period: its new items are left to the ranker
    assert export["rows_users"] == 943 and export["items_new_in_test_period"] == len(new_items)
    assert export["rows_items"] == 1682 - len(new_items)
    assert 0 < export["users_with_embedding"] < 943  # users new in the test period carry the fallback
    latest = (run / "export" / "LATEST").read_text().strip()
    assert {p.suffix for p in (run / "export" / latest / "users").iterdir()} == {".parquet"}
    assert {p.suffix for p in (run / "export" / latest / "tfrecord" / "users").iterdir()} == {".tfrecord"}
    assert export["parity_onnx_max_abs"] < 1e-4 and export["parity_tf_max_abs"] < 1e-4
    # the TF item tower embeds an item from its content alone, as the exported table did
    from export.tables import read_table
    from learn_embed.ceg import read_embeddings
    from ranking.tables import item_tower

    ids, content, _ = read_embeddings(run / "ceg" / "llm")
    table, _ = read_table(run / "export", "items")
    embedded = item_tower(run / "export")(content[:5])
    assert np.abs(embedded - table.embeddings[:5]).max() < 1e-4 and ids["item_id"][:5].tolist() == table.ids[:5]
    assert not new_items & set(table.ids)
    # ...and from its text alone, in a process where torch is never imported: tokenizer, ONNX CEG, TF item tower
    assert export["content_parity_onnx_max_abs"] < 1e-4 and export["content_parity_items"] == 24
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch fails
        "import numpy as np, pandas as pd\n"
        "from ranking.tables import embed_new_items\n"
        "items = pd.read_parquet(sys.argv[2]).sample(40, random_state=0)\n"
        "items = pd.concat([items, pd.read_parquet(sys.argv[4])])\n"  # and the items new in the test period
        "np.save(sys.argv[3], embed_new_items(sys.argv[1], items))\n"
        "print(','.join(items['item_id']), 'torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    items = pd.read_parquet(run / "data" / "items.parquet")
    items[items["item_id"].isin(new_items)].to_parquet(tmp_path / "period_items.parquet")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(run / "export"),
            str(run / "data" / "items.parquet"),
            str(tmp_path / "new.npy"),
            str(tmp_path / "period_items.parquet"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sampled, torch_loaded = done.stdout.split()
    assert torch_loaded == "False"
    # each item as the torch side would have embedded it: its CEG content through the item tower
    at = pd.Index(ids["item_id"]).get_indexer(sampled.split(","))
    assert np.abs(np.load(tmp_path / "new.npy") - item_tower(run / "export")(content[at])).max() < 1e-4
    from ranking.tables import embed_new_items

    with pytest.raises(DataError, match="row 2 field 'title': empty text"):
        embed_new_items(run / "export", pd.DataFrame({"item_id": ["n1", "n2"], "title": ["A new film", " "]}))
    ranking = metrics["ranking"]
    candidates = ["residual", "fig5", "fig5_similarity"]
    for model in ("baseline", "learn", *candidates):
        assert 0.5 < ranking[model]["AUC"] < 1 and 0.5 < ranking[model]["UAUC"] < 1
    for model in ("baseline", "learn"):
        assert set(ranking[model]["segments"]["user"]) == {"cold_start", "long_tail", "others"}
        assert set(ranking[model]["segments"]["item"]) == {"cold_start", "long_tail", "others", "new_in_test_period"}
    # the ranker embedded the test period's new items from their text; they are a segment of their own
    scored = pd.read_parquet(run / "ranking" / "scores.parquet")
    on_new = scored["item_id"].isin(new_items)
    assert ranking["samples"]["items_embedded_from_text"] == len(new_items & set(scored["item_id"])) > 0
    assert ranking["baseline"]["segments"]["item"]["new_in_test_period"]["rows"] == on_new.sum() > 0
    assert (scored.loc[on_new, "item_segment"] == "cold_start").all()  # new items are never converted before
    for model in ("baseline", "learn"):
        assert ranking["training"][model]["savedmodel_max_abs_diff"] < 1e-6
    shares = [ranking["learn"]["segments"]["user"][s]["share"] for s in ("cold_start", "long_tail", "others")]
    assert abs(sum(shares) - 1) < 1e-9
    delta = ranking["delta"]["UAUC"]
    assert abs(delta["value"] - (ranking["learn"]["UAUC"] - ranking["baseline"]["UAUC"])) < 1e-12
    assert delta["ci_low"] <= delta["value"] <= delta["ci_high"]
    for name in candidates:
        own = ranking["deltas"][name]["UAUC"]
        assert abs(own["value"] - (ranking[name]["UAUC"] - ranking["baseline"]["UAUC"])) < 1e-12
    assert ranking["deltas"]["learn"] == ranking["delta"]
    # the shipped `learn` is the validation winner; the residual candidate is never below the baseline there
    selection = ranking["selection"]
    valid = selection["valid_uauc"]
    assert selection["shipped"] == max(candidates, key=valid.get)
    assert {k: v for k, v in ranking["learn"].items() if k != "segments"} == ranking[selection["shipped"]]
    assert valid["residual"] >= valid["baseline"] and valid[selection["shipped"]] >= valid["baseline"]
    assert ranking["protocol"]["negatives"] == "logged" and ranking["protocol"]["judges"] == "ranker"
    assert 0.4 < ranking["popularity"]["AUC"] < 1 and "popularity" not in ranking["deltas"]  # a reference row
    # the point-in-time property over the whole run: no sample's user vector holds an event at or after it
    from export.tables import read_table as read_export_table
    from ranking.pointintime import join_user_snapshots

    samples = pd.read_parquet(run / "ranking" / "samples.parquet")
    snapshots, _ = read_export_table(run / "export", "user_snapshots")
    joined = join_user_snapshots(samples, snapshots)
    has = joined["snapshot"].to_numpy() >= 0
    ts = samples["ts"].to_numpy()
    assert has.sum() > 10_000 and (joined["history_end"].to_numpy()[has] < ts[has]).all()
    assert (joined["valid_from"].to_numpy()[has] <= ts[has]).all()
    # recomputed from the events: a snapshot's newest event is its user's newest event before its valid_from
    rows = pd.DataFrame({"user_id": snapshots.ids, "valid_from": snapshots.valid_from, "end": snapshots.history_end})
    newest = pd.merge_asof(
        rows.sort_values("valid_from"),
        events[["user_id", "ts"]].sort_values("ts"),
        left_on="valid_from",
        right_on="ts",
        by="user_id",
        allow_exact_matches=False,
    )
    assert (newest["ts"].to_numpy() == newest["end"].to_numpy()).all()
    coverage = ranking["samples"]
    assert coverage["test_rows_with_user_vector"] > coverage["test_rows_with_user_vector_single_snapshot"]
    # refreshed after every event: exactly the rows whose user has an earlier event carry a vector
    positives = events  # the chain's split keeps every interaction (positives_only: false)
    before = pd.merge_asof(
        pd.DataFrame({"user_id": samples["user_id"], "at": ts, "position": np.arange(len(samples))}).sort_values("at"),
        pd.DataFrame({"user_id": positives["user_id"], "seen": positives["ts"]}).sort_values("seen"),
        left_on="at",
        right_on="seen",
        by="user_id",
        allow_exact_matches=False,
    )
    covered = before.sort_values("position")["seen"].notna().to_numpy()
    assert covered.any() and (has == covered).all()
    assert coverage["test_rows_with_history_and_vector"] == 1 and coverage["test_rows_awaiting_first_snapshot"] == 0
    assert export["snapshot_every"] == "event" and export["snapshot_refreshes"] > export["snapshots"]
    for estimator in ("replay", "simulated"):
        block = metrics["ab"][estimator]
        assert {
            "revenue_lift",
            "cvr_lift",
            "ci_low",
            "ci_high",
            "p_value",
            "segments",
            "min_detectable_lift",
            "rerankable_share",
            "single_candidate_share",
        } <= set(block)
        assert block["min_detectable_lift"] > 0 and 0 <= block["rerankable_share"] <= 1
        assert set(block["segments"]["item"]) == {"cold_start", "long_tail", "others"}
    assert 0 <= metrics["ab"]["aa"]["false_positive_rate"] <= 0.2
    assert metrics["ab"]["widened_candidates"] == 3 * metrics["ab"]["requests"]
    assert 0 <= metrics["ab"]["single_candidate_share"] <= 1
    assert json.loads((run / "ranking" / "metrics.json").read_text()) == ranking
    for name in (
        "ranking/scores.parquet",
        "ranking/segment_deltas.png",
        "ranking/learn_savedmodel/saved_model.pb",
        "ab/assignment.parquet",
        "ab/report.json",
        "ab/daily_lift.png",
    ):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    assert "paper tables 6 and 7" in report and "Simulated A/B test" in report and "## Summary" in report
    again = run_pipeline(config, only=["data", "ceg", "pch", "export", "ranking", "ab"])
    assert all(s["skipped"] for s in again["run"]["stages"].values())
    assert again["ranking"] == metrics["ranking"] and again["ab"] == metrics["ab"]
    saved = next((run / "export" / latest / "towers" / "item_tf" / "variables").glob("*.index"))
    saved.write_bytes(saved.read_bytes() + b"x")
    with pytest.raises(DataError, match="sha256 does not match"):
        item_tower(run / "export")
