"""Batch inference of the point-in-time user vectors: one causal pass per user equals one pass per snapshot
row (the per-event result), in this process and on Ray actors; the primitive leaves nothing half-written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from export.embed import embed_snapshots
from export.snapshots import snapshot_histories
from learn_embed.config import PchConfig
from learn_embed.experiment import user_vectors
from learn_embed.pch import LearnModel
from learn_embed.train import SequenceData
from learnkit.core.batches import map_batches
from learnkit.core.errors import ConfigError
from learnkit.core.sql import EngineConfig
from learnkit.data.catalog import Catalog
from tests.export.test_snapshots import random_events

LENGTH = 6


def _setting(post_norm: bool):
    torch.manual_seed(3)
    events = random_events(seed=11, users=40, rows=1500)
    catalog = Catalog.from_ids(sorted(events["item_id"].unique().tolist()))
    config = PchConfig(
        width=16, layers=2, heads=2, max_len=LENGTH, out_dim=8, input="id", norm="post" if post_norm else "pre"
    )
    model = LearnModel(config, len(catalog.ids)).eval()
    return events, catalog, model, snapshot_histories(events, "event", LENGTH, True, partition_every=30)


def _per_row(model: LearnModel, catalog: Catalog, snapshots) -> np.ndarray:
    """The per-event result: one pass per snapshot row over its own history."""
    data = SequenceData.from_lists([catalog.index(h) for h in snapshots.histories], [[0]] * len(snapshots.rows))
    return user_vectors(model, data).numpy()


@pytest.mark.parametrize("post_norm", [False, True])
def test_one_pass_per_user_equals_one_pass_per_snapshot_row(post_norm):
    events, catalog, model, snapshots = _setting(post_norm)
    seen = snapshots.rows["seen"]
    assert (seen <= LENGTH).sum() > 200 and (seen > LENGTH).sum() > 200  # both kinds of row, many of each
    table = embed_snapshots(model, catalog, snapshots, np.zeros(model.dim, np.float32))
    want = _per_row(model, catalog, snapshots)
    np.testing.assert_allclose(table.embeddings, want, rtol=0, atol=2e-6)
    assert table.ids == snapshots.rows["user_id"].tolist()
    # the rows differ from one another: a pass read at the wrong position would not pass the check above
    assert len(np.unique(want.round(4), axis=0)) > 0.5 * len(want)


def test_batch_inference_on_ray_actors_equals_this_process(tmp_path, isolated_cache):
    """Both users of the primitive, the snapshots' user tower and CEG, on a Ray actor of a local 2-CPU cluster
    started here: the same vectors as in this process. Actors that would hold every CPU are refused (Ray
    Data's reads would wait for ever)."""
    import ray

    from learn_embed.ceg import ContentEncoder, encode_in_batches
    from learn_embed.config import EncoderConfig, ModelConfig, TinyRandomModel

    events, catalog, model, snapshots = _setting(False)
    local = embed_snapshots(model, catalog, snapshots, np.zeros(model.dim, np.float32))
    tiny = ModelConfig(tiny_random=TinyRandomModel(hidden=32, layers=2, heads=2, seed=0))
    encoder = ContentEncoder(EncoderConfig(model=tiny, batch_size=4))
    todo = [(f"h{i:02d}", f"item {i} " + "long " * ((i * 7) % 11)) for i in range(30)]
    sentences_here = encode_in_batches(encoder, todo, EngineConfig(), batch_rows=8)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    try:
        engine = EngineConfig(kind="ray", actors=1, spill_dir=str(tmp_path / "spill"))
        on_ray = embed_snapshots(model, catalog, snapshots, np.zeros(model.dim, np.float32), engine)
        sentences_on_ray = encode_in_batches(encoder, todo, engine, batch_rows=8)
        with pytest.raises(ConfigError, match=r"'engine.actors' is 2, but the Ray cluster has 2 CPUs"):
            embed_snapshots(model, catalog, snapshots, np.zeros(model.dim, np.float32), replace(engine, actors=2))
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(on_ray.embeddings, local.embeddings)
    np.testing.assert_array_equal(sentences_on_ray, sentences_here)


class _Doubling:
    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, batch: pa.Table) -> pa.Table:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("the model failed")
        return pa.table({"x": batch.column("x"), "twice": pa.compute.multiply(batch.column("x"), 2)})


def test_map_batches_runs_every_batch_and_a_failure_leaves_the_old_output(tmp_path: Path):
    source = tmp_path / "in"
    source.mkdir()
    pq.write_table(pa.table({"x": np.arange(10)}), source / "part-00000.parquet")
    pq.write_table(pa.table({"x": np.arange(10, 25)}), source / "part-00001.parquet")
    out = tmp_path / "out"
    files = map_batches(source, _Doubling, (), out, EngineConfig(), batch_rows=4, progress=False)
    got = pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
    assert got["x"].tolist() == list(range(25)) and (got["twice"] == 2 * got["x"]).all()
    with pytest.raises(RuntimeError, match="the model failed"):
        map_batches(source, _Doubling, (2,), out, EngineConfig(), batch_rows=4, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no staging folder left
    assert pq.read_table(out).num_rows == 25  # the earlier output stands
    with pytest.raises(ValueError, match="batch_rows must be at least 1"):
        map_batches(source, _Doubling, (), out, EngineConfig(), batch_rows=0)
