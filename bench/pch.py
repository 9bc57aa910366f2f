"""PCH speed and memory on this machine, in one run:
- the Amazon Scientific epoch of the shipped full-softmax `sasrec` (configs/amazon-scientific.yaml, the given
  files and split) beside RecBole 1.2.1's SASRec epoch on the same files (`bench/recbole_epoch.py`, a child
  process in RecBole's own environment: `make bench-recbole-env`), the FLOPs the epoch executes (torch's
  FlopCounterMode) as a fraction of the fp32 matmul rate measured in the same run, and where the epoch's time
  goes (torch.profiler: matmuls, dropout's random draws, everything else);
- training sequences/s of the LEARN towers (content input, the shipped small model) with each loss (the
  default `full` softmax over the catalog, `sampled` and the old `inbatch`), retrieval evaluation users/s,
  and the peak memory of evaluating against a 200k-item gallery (measured in a child process, against the
  users x gallery matrix a naive evaluation would hold).
Prints one JSON object.

    python bench/pch.py [--steps 30] [--users 4096] [--items 4385] [--epochs 3]
                        [--recbole-python .venv-recbole/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from machine import matmul_flops  # noqa: E402

from learn_embed.config import PchConfig, TrainConfig  # noqa: E402
from learn_embed.pch import LearnModel  # noqa: E402
from learn_embed.retrieval import top_k  # noqa: E402
from learn_embed.train import SequenceData, _candidates, train  # noqa: E402


def eval_memory_child(users: int, gallery: int, dim: int, chunk: int) -> None:
    import threading

    import psutil

    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(users, dim, generator=g), dim=-1)
    items = torch.nn.functional.normalize(torch.randn(gallery, dim, generator=g), dim=-1)
    process = psutil.Process()
    before = process.memory_info().rss / 2**20
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # RSS every 2 ms while the evaluation runs
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss / 2**20)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    top_k(u, items, 200, chunk=chunk)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    print(json.dumps({"before_mb": before, "peak_mb": peak[0], "seconds": seconds}))


REPO = Path(__file__).resolve().parents[1]
SCIENTIFIC = REPO / "configs" / "amazon-scientific.yaml"
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm")


@dataclass(frozen=True)
class ScientificSasrec:
    """The `sasrec` method of configs/amazon-scientific.yaml, with the training data the pch stage builds."""

    data: SequenceData
    model_config: PchConfig
    items: int
    train: TrainConfig

    def one_run(self, epochs: int) -> tuple[LearnModel, TrainConfig]:
        """A freshly seeded model and the config of `epochs` epochs without validation."""
        torch.manual_seed(self.train.seed)
        model = LearnModel(self.model_config, self.items)
        return model, replace(self.train, epochs=epochs, patience=0, select_best=False)


def scientific_sasrec() -> ScientificSasrec:
    """Import and split Scientific once, as the pipeline does."""
    from learn_embed.experiment import examples_to_data
    from learnkit.config import load_config
    from learnkit.data.catalog import Catalog
    from learnkit.data.importers import load_dataset, validate
    from learnkit.data.splits import split_around_period
    from learnkit.pipeline.stages.data import resolve_data

    config = load_config(SCIENTIFIC)
    pch = config.pch
    assert pch is not None
    folder, fmt, _ = resolve_data(config)
    dataset = validate(load_dataset(fmt, folder, config.data.options), config.data.rules())
    examples, _, _ = split_around_period(
        dataset.events, pch.split, config.test_period, pch.train_before_test_period, config.ranker_validation
    )
    catalog = Catalog.of_items(dataset.items)
    model_config, train_config = pch.method_configs("sasrec")
    aligned = pch.split.train_examples == "sequence"
    # ordinal time (positions, not times): the pipeline gives the data no clock, so no time-valid mask
    data = examples_to_data(examples[examples.part == "train"], catalog, aligned, train_config.window)
    return ScientificSasrec(data, model_config, len(catalog.ids), train_config)


def epoch_seconds(sasrec: ScientificSasrec, epochs: int) -> dict:
    """Train `epochs` epochs of Scientific's `sasrec` (no validation between them) and time each one."""
    data = sasrec.data
    model, config = sasrec.one_run(epochs)
    marks = [time.perf_counter()]

    def mark(epoch: int, _: LearnModel) -> dict[str, float]:
        marks.append(time.perf_counter())
        return {"epoch": epoch + 1}

    with tempfile.TemporaryDirectory() as tmp:
        train(model, data, config, Path(tmp), on_epoch_end=mark, progress=False)
    seconds = [round(b - a, 3) for a, b in zip(marks, marks[1:], strict=False)]
    pairs = int(((data.positives >= 0).any(-1) & (data.history >= 0)).sum())
    return {"seconds": seconds, "sequences": len(data), "pairs": pairs, "batch_size": config.batch_size}


def epoch_anatomy(sasrec: ScientificSasrec) -> dict:
    """One more epoch, untimed, under FlopCounterMode (the FLOPs it executes) and torch.profiler (where its
    time goes); and the share of the positions it computes that are real, not padding."""
    from torch.profiler import profile
    from torch.utils.flop_counter import FlopCounterMode

    data = sasrec.data
    model, config = sasrec.one_run(1)
    with tempfile.TemporaryDirectory() as tmp, FlopCounterMode(display=False) as flops:
        train(model, data, config, Path(tmp), progress=False)
    model, config = sasrec.one_run(1)
    with tempfile.TemporaryDirectory() as tmp, profile() as profiler:
        train(model, data, config, Path(tmp), progress=False)
    self_us = {event.key: event.self_cpu_time_total for event in profiler.key_averages()}
    total = sum(self_us.values())
    matmul = sum(self_us.get(op, 0.0) for op in MATMUL_OPS)
    dropout = self_us.get("aten::bernoulli_", 0.0) + self_us.get("aten::div_", 0.0)
    # the batches of an epoch as the trainer builds them (rows, candidate columns), without the model: the
    # data loading, timed alone
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed * 100_003))
    computed, started = 0, time.perf_counter()
    for step, start in enumerate(range(0, len(data), config.batch_size)):
        rows = data.rows(order[start : start + config.batch_size])
        _candidates(rows, "full", model.num_items, None, config, step, 1)
        computed += rows.history.numel()
    batching_s = time.perf_counter() - started
    real = int((data.history >= 0).sum())
    return {
        "flops": flops.get_total_flops(),
        "profiled_self_share": {
            "matmul": round(matmul / total, 3),
            "dropout_draws": round(dropout / total, 3),
            "other": round(1 - (matmul + dropout) / total, 3),
        },
        "real_position_share": round(real / computed, 3),
        "batching_seconds": round(batching_s, 3),
    }


def recbole_epoch_seconds(python: str | None, epochs: int) -> dict | None:
    """RecBole's SASRec epoch on the same files, in its own environment; None when it is not installed."""
    if python is None or not Path(python).is_file():
        return None
    from learnkit.config import load_config
    from learnkit.pipeline.stages.data import resolve_data

    folder, _, _ = resolve_data(load_config(SCIENTIFIC))
    child = subprocess.run(
        [python, str(Path(__file__).with_name("recbole_epoch.py")), str(folder), "--epochs", str(epochs)],
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        raise SystemExit(f"bench/recbole_epoch.py failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def scientific(args: argparse.Namespace) -> dict:
    """learn-kit's `sasrec` epoch on Scientific beside RecBole's, both timed in this run on idle cores."""
    peak = matmul_flops()
    sasrec = scientific_sasrec()
    ours = epoch_seconds(sasrec, args.epochs)
    recbole = recbole_epoch_seconds(args.recbole_python, args.epochs)
    peak = max(peak, matmul_flops())
    anatomy = epoch_anatomy(sasrec)
    # the first epoch of each holds the one-off start (allocations, thread pools): both are the median of the
    # epochs after it
    sasrec_s = median(ours["seconds"][1:] or ours["seconds"])
    recbole_s = median(recbole["epoch_seconds"][1:] or recbole["epoch_seconds"]) if recbole else None
    return {
        "sasrec_epoch_seconds": round(sasrec_s, 2),
        "sasrec_epochs_seconds": ours["seconds"],
        "sasrec_train": {k: ours[k] for k in ("sequences", "pairs", "batch_size")},
        "recbole_epoch_seconds": round(recbole_s, 2) if recbole_s else None,
        "recbole": recbole or "not measured: run `make bench-recbole-env` and pass --recbole-python",
        "sasrec_over_recbole": round(sasrec_s / recbole_s, 3) if recbole_s else None,
        "sasrec_epoch_gflop": round(anatomy["flops"] / 1e9, 2),
        "sasrec_achieved_gflops": round(anatomy["flops"] / sasrec_s / 1e9, 2),
        "matmul_gflops": round(peak / 1e9, 1),
        "sasrec_machine_fraction": round(anatomy["flops"] / sasrec_s / peak, 4),
        "sasrec_profiled_self_share": anatomy["profiled_self_share"],
        "sasrec_real_position_share": anatomy["real_position_share"],
        "sasrec_batching_share": round(anatomy["batching_seconds"] / sasrec_s, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--items", type=int, default=4385, help="catalog size (Amazon Scientific: 4,385)")
    parser.add_argument("--users", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3, help="Scientific sasrec epochs timed (the first is warm-up)")
    parser.add_argument("--recbole-python", default=str(REPO / ".venv-recbole" / "bin" / "python"))
    parser.add_argument("--child", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        eval_memory_child(*args.child)
        return

    sci = scientific(args)

    # training: next-item sequences of 50 positions, batches of 128, over the catalog with 576-d content
    n_items, batch, length = args.items, 128, 50
    generator = torch.Generator().manual_seed(0)
    content = torch.nn.functional.normalize(torch.randn(n_items, 576, generator=generator), dim=-1)
    sequences = torch.randint(0, n_items, (args.steps * batch, length + 1), generator=generator)
    data = SequenceData.from_lists(sequences[:, :-1].tolist(), sequences[:, 1:].tolist(), aligned=True)
    rates = {}
    for loss in ("full", "sampled", "inbatch"):
        torch.manual_seed(0)
        model = LearnModel(PchConfig(max_len=64), n_items, content)
        with tempfile.TemporaryDirectory() as tmp:
            result = train(
                model, data, TrainConfig(epochs=1, batch_size=batch, lr=1e-3, loss=loss), Path(tmp), progress=False
            )
        rates[loss] = round(result.sequences_per_s, 1)

    # evaluation: user embeddings for N users (80-item histories) + top-200 over a 20k gallery
    histories = SequenceData.from_lists(torch.randint(0, n_items, (args.users, length)).tolist(), [[0]] * args.users)
    from learn_embed.experiment import item_vectors, user_vectors

    started = time.perf_counter()
    with torch.no_grad():
        users = user_vectors(model, histories)
        gallery = item_vectors(model, torch.arange(n_items))
        top_k(users, gallery, 200, chunk=256)
    eval_users_per_s = args.users / (time.perf_counter() - started)

    chunk, users_200k = 256, 10_000
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(users_200k), "200000", "64", str(chunk)],
        capture_output=True,
        text=True,
        check=True,
    )
    memory = json.loads(child.stdout)
    print(
        json.dumps(
            {
                "benchmark": "pch",
                "threads": torch.get_num_threads(),
                **sci,
                "model": "PchConfig defaults (width 64, 2 layers, 2 heads), content input 576-d",
                "train_sequences_per_s": rates,
                "train_catalog": n_items,
                "full_over_inbatch": round(rates["full"] / rates["inbatch"], 3),
                "sampled_over_inbatch": round(rates["sampled"] / rates["inbatch"], 3),
                "train_batch": batch,
                "sequence_len": length,
                "sampled_negatives": TrainConfig().sampled_negatives,
                "eval_users_per_s": round(eval_users_per_s, 1),
                "eval_gallery": n_items,
                "eval_peak_mb_200k": round(memory["peak_mb"], 1),
                "eval_peak_increase_mb_200k": round(memory["peak_mb"] - memory["before_mb"], 1),
                "eval_200k_users": users_200k,
                "eval_200k_chunk": chunk,
                "eval_200k_users_per_s": round(users_200k / memory["seconds"], 1),
                "naive_users_x_gallery_mb": round(users_200k * 200_000 * 4 / 2**20, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
