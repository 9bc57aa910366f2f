"""Training: the loss goes down, a killed run resumes to the same weights, and two processes under
torch.distributed agree with one."""

import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from learn_embed.config import PchConfig, TrainConfig
from learn_embed.pch import LearnModel
from learn_embed.train import KILL_ENV, NO_TIME, SequenceData, cosine_with_warmup, train
from learnkit.core.errors import LearnKitError
from tests.launch import CLI, torchrun

CONFIG = """
name: {name}
runs_dir: {runs}
data: {{format: canonical, path: {data}}}
ceg:
  encoders:
    llm: {{model: {{tiny_random: {{hidden: 16, layers: 1, heads: 2, seed: 0}}}}, max_tokens: 16}}
pch:
  split: {{kind: temporal, target_fraction: 0.3, valid_users: 0.1, test_users: 0.2}}
  model: {{width: 16, layers: 1, heads: 2, dropout: {dropout}, max_len: 32, out_dim: 8}}
  train: {{epochs: 2, batch_size: 8, lr: 0.003, checkpoint_every: 2, keep_checkpoints: 2, temperature: 0.1}}
  eval: {{ks: [10, 50]}}
  methods:
    learn_llm: {{encoder: llm}}
"""


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, shared_data):
    """60 MovieLens users, their first 25 ratings each, as canonical CSV."""
    folder = tmp_path_factory.mktemp("data")
    inter = pd.read_csv(shared_data / "ml-100k" / "ml-100k.inter", sep="\t")
    inter.columns = ["user_id", "item_id", "rating", "ts"]
    inter = inter[inter.user_id <= 60].sort_values(["user_id", "ts"]).groupby("user_id").head(25)
    inter["label"] = (inter.rating >= 4).astype(int)
    items = pd.read_csv(shared_data / "ml-100k" / "ml-100k.item", sep="\t")
    items.columns = ["item_id", "title", "year", "category"]
    items[items.item_id.isin(inter.item_id)].to_csv(folder / "items.csv", index=False)
    inter.to_csv(folder / "events.csv", index=False)
    return folder


def run_cli(args, env_extra=None, launcher=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = (launcher or CLI) + args
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def prepare(tmp_path, small_data, name, dropout=0.1):
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(name=name, runs=tmp_path / "runs", data=small_data, dropout=dropout))
    proc = run_cli(["run", str(path), "--only", "data", "ceg"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


def weights(tmp_path, name):
    return load_file(tmp_path / "runs" / name / "pch" / "learn_llm" / "model.safetensors")


def test_cosine_schedule_with_warmup():
    f = cosine_with_warmup(100, 0.1)
    assert [round(f(s), 3) for s in (0, 4, 9, 10, 55, 99)] == [0.1, 0.5, 1.0, 1.0, 0.5, 0.0]
    constant = cosine_with_warmup(100, 0.1, decay=False)
    assert [constant(s) for s in (0, 4, 9, 10, 55, 99)] == [0.1, 0.5, 1.0, 1.0, 1.0, 1.0]


def test_loss_goes_down_on_a_learnable_task(tmp_path):
    # users whose history is drawn from one half of the catalog buy from the same half
    g = torch.Generator().manual_seed(0)
    histories, targets = [], []
    for u in range(64):
        half = u % 2
        items = (torch.randperm(10, generator=g)[:6] + 10 * half).tolist()
        histories.append(items[:4])
        targets.append(items[4:])
    torch.manual_seed(0)
    model = LearnModel(PchConfig(width=16, layers=1, heads=2, dropout=0.0, max_len=8, out_dim=8, input="id"), 20)
    result = train(
        model,
        SequenceData.from_lists(histories, targets),
        TrainConfig(epochs=15, batch_size=16, lr=0.01, temperature=0.1),
        tmp_path,
        progress=False,
    )
    # same-half negatives are indistinguishable from positives, so the loss floor is about log(15)
    assert result.losses[-1] < result.losses[0] - 0.4
    with torch.no_grad():
        users = model.user_embeddings(torch.tensor(histories))[:, -1]
        scores = users @ model.item_embeddings(torch.arange(20)).T
    same = torch.stack([scores[u, 10 * (u % 2) : 10 * (u % 2) + 10].mean() for u in range(64)])
    other = torch.stack([scores[u, 10 * (1 - u % 2) : 10 * (1 - u % 2) + 10].mean() for u in range(64)])
    assert (same > other).all()
    assert (tmp_path / "model.safetensors").is_file()


@pytest.mark.slow
def test_killed_run_resumes_exactly_or_is_refused(tmp_path, small_data, isolated_cache):
    """A killed run resumes to the uninterrupted weights. A resume after a config change stops naming the
    key; an unreadable last checkpoint falls back to the one before it; an interrupted --force re-run never
    passes the previous run's result off as its own."""
    whole = prepare(tmp_path, small_data, "whole")
    killed = prepare(tmp_path, small_data, "killed")
    assert run_cli(["pch", "--config", str(whole)]).returncode == 0
    proc = run_cli(["pch", "--config", str(killed)], env_extra={KILL_ENV: "4"})
    assert proc.returncode == -9  # SIGKILL, right after the checkpoint of step 4
    method = tmp_path / "runs" / "killed" / "pch" / "learn_llm"
    assert sorted(p.name for p in (method / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    assert not (method / "model.safetensors").exists()
    text = killed.read_text()
    killed.write_text(text.replace("lr: 0.003", "lr: 0.01"))
    proc = run_cli(["pch", "--config", str(killed), "--resume"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot resume stage 'pch'" in proc.stderr and "differing: config.pch.train.lr" in proc.stderr
    killed.write_text(text)
    (method / "checkpoints" / "step-00000004" / "model.safetensors").write_bytes(b"cut short")
    proc = run_cli(["pch", "--config", str(killed), "--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step-00000004 is unreadable" in proc.stderr and "resuming from" in proc.stderr
    assert pd.read_json(method / "metrics.json", typ="series")["training"]["resumed_from_step"] == 2
    a, b = weights(tmp_path, "whole"), weights(tmp_path, "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a finished run, then a --force re-run killed at step 4: its resume continues the re-run
    assert run_cli(["pch", "--config", str(killed), "--force"], env_extra={KILL_ENV: "4"}).returncode == -9
    assert not (method / "metrics.json").exists()
    proc = run_cli(["pch", "--config", str(killed), "--resume"])
    assert proc.returncode == 0 and "finished before the interruption" not in proc.stderr
    assert pd.read_json(method / "metrics.json", typ="series")["training"]["resumed_from_step"] == 4


def test_a_checkpoint_of_another_model_is_refused_by_name(tmp_path):
    data = SequenceData.from_lists([[1, 2, 3, 4]] * 8, [[2, 3, 4, 5]] * 8, aligned=True)
    narrow = LearnModel(PchConfig(width=16, layers=1, heads=2, max_len=8, out_dim=8, input="id"), 20)
    train(narrow, data, TrainConfig(epochs=1, batch_size=8), tmp_path, progress=False)
    wide = LearnModel(PchConfig(width=32, layers=1, heads=2, max_len=8, out_dim=8, input="id"), 20)
    with pytest.raises(LearnKitError, match=r"trained with another config \(differing: model.width\)"):
        train(wide, data, TrainConfig(epochs=1, batch_size=8), tmp_path, resume=True, progress=False)


def test_two_processes_agree_with_one(tmp_path, small_data, isolated_cache):
    one = prepare(tmp_path, small_data, "one", dropout=0.0)
    two = prepare(tmp_path, small_data, "two", dropout=0.0)
    assert run_cli(["pch", "--config", str(one)]).returncode == 0
    proc = run_cli(
        ["pch", "--config", str(two)],
        launcher=torchrun(29531),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = weights(tmp_path, "one"), weights(tmp_path, "two")
    for key in a:
        if key.endswith("self_attn.in_proj_bias"):
            # The key bias gets an exactly-zero gradient (softmax ignores a constant added to every score);
            # Adam turns its rounding noise into steps of size lr, so only the query and value parts compare.
            width = a[key].shape[0] // 3
            a[key], b[key] = (
                torch.cat([a[key][:width], a[key][2 * width :]]),
                torch.cat([b[key][:width], b[key][2 * width :]]),
            )
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4, msg=key)


def test_early_stopping_keeps_the_best_epoch_and_says_it_converged(tmp_path):
    """Validation 0.1, 0.3, 0.2, 0.25 with patience 2: stop after epoch 4, keep epoch 2's weights."""
    torch.manual_seed(0)
    model = LearnModel(PchConfig(width=16, layers=1, heads=2, dropout=0.0, max_len=8, out_dim=8, input="id"), 20)
    data = SequenceData.from_lists([[1, 2, 3, 4]] * 8, [[2, 3, 4, 5]] * 8, aligned=True)
    script, snapshots = [0.1, 0.3, 0.2, 0.25, 0.9, 0.9], []

    def monitor(epoch, current):
        snapshots.append({k: v.clone() for k, v in current.state_dict().items()})
        return {"epoch": epoch + 1, "N@10": script[epoch]}

    config = TrainConfig(epochs=6, batch_size=8, lr=0.01, patience=2, select_best=True)
    result = train(model, data, config, tmp_path, on_epoch_end=monitor, progress=False)
    assert result.epochs == 4 and result.stopped_early and result.best_epoch == 2 and result.steps == 4
    assert all(torch.equal(model.state_dict()[k], snapshots[1][k]) for k in snapshots[1])
    # without early stopping every epoch runs and nothing claims convergence
    torch.manual_seed(0)
    again = LearnModel(PchConfig(width=16, layers=1, heads=2, dropout=0.0, max_len=8, out_dim=8, input="id"), 20)
    snapshots.clear()
    full = train(
        again, data, TrainConfig(epochs=6, batch_size=8, lr=0.01), tmp_path / "b", on_epoch_end=monitor, progress=False
    )
    assert full.epochs == 6 and not full.stopped_early


def test_next_item_training_learns_a_chain(tmp_path):
    """Sequences walk a fixed cycle of 12 items: after training, each item's successor ranks first."""
    torch.manual_seed(0)
    cycle = list(range(12))
    sequences = [[cycle[(s + k) % 12] for k in range(6)] for s in range(12)] * 4
    data = SequenceData.from_lists([q[:-1] for q in sequences], [q[1:] for q in sequences], aligned=True)
    model = LearnModel(
        PchConfig(width=16, layers=1, heads=2, dropout=0.0, max_len=8, out_dim=16, input="id", item_tower="id_table"),
        12,
    )
    train(model, data, TrainConfig(epochs=30, batch_size=16, lr=0.01, temperature=0.1), tmp_path, progress=False)
    with torch.no_grad():
        users = model.user_embeddings(torch.tensor([[s, (s + 1) % 12] for s in range(12)]))[:, -1]
        best = (users @ model.item_embeddings(torch.arange(12)).T).argmax(1)
    assert best.tolist() == [(s + 2) % 12 for s in range(12)]


def _positions_by_loop(histories, targets, aligned, window, target_times):
    """The rows as a plain loop writes them, one position at a time: the oracle for the array version."""
    width_of = [len(h) for h in histories]
    length = max([1, *width_of])
    if aligned:
        rows = [[t[p : p + window] for p in range(len(t))] for t in targets]
    else:
        rows = [[t] * len(h) for h, t in zip(histories, targets, strict=True)]
    width = max([1, *(len(p) for r in rows for p in r)])
    positives = torch.full((len(rows), length, width), -1, dtype=torch.int64)
    times = torch.full((len(rows), length), NO_TIME, dtype=torch.int64)
    for i, r in enumerate(rows):
        for p, items in enumerate(r):
            positives[i, p, : len(items)] = torch.tensor(items, dtype=torch.int64)
        when = target_times[i]
        if when:
            row = when[: len(histories[i])] if aligned else [min(when)] * len(histories[i])
            times[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return positives, times


@pytest.mark.parametrize("aligned,window", [(True, 1), (True, 3), (False, 1)])
def test_rows_equal_a_position_by_position_loop(aligned, window):
    rng = np.random.default_rng(7)
    histories, targets, when = [], [], []
    for _ in range(300):
        n = int(rng.integers(0, 9))
        histories.append(rng.integers(0, 50, n).tolist())
        m = n if aligned else int(rng.integers(0, 4))  # aligned: a target per position; else any, empty too
        targets.append(rng.integers(0, 50, m).tolist())
        when.append(sorted(rng.integers(0, 10**9, m).tolist()))
    data = SequenceData.from_lists(histories, targets, aligned=aligned, window=window, target_times=when)
    positives, times = _positions_by_loop(histories, targets, aligned, window, when)
    assert torch.equal(data.positives, positives) and torch.equal(data.times, times)
    assert torch.equal(data.history[0, : len(histories[0])], torch.tensor(histories[0], dtype=torch.int64))
    assert int((data.history >= 0).sum()) == sum(len(h) for h in histories)
    assert SequenceData.from_lists(histories, targets, aligned=aligned, window=window).times is None
