"""PCH speed and memory on this machine: training sequences/s of the LEARN towers (content input,
the shipped small model) with each loss in the same run (the default `full` softmax over the catalog,
`sampled` and the old `inbatch`), retrieval evaluation users/s, and the peak memory of evaluating against a
200k-item gallery (measured in a child process, against the users x gallery matrix a naive evaluation
would hold). Prints one JSON object.

    python bench/pch.py [--steps 30] [--users 4096] [--items 4385]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from learn_embed.config import PchConfig, TrainConfig  # noqa: E402
from learn_embed.pch import LearnModel  # noqa: E402
from learn_embed.retrieval import top_k  # noqa: E402
from learn_embed.train import SequenceData, train  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--items", type=int, default=4385, help="catalog size (Amazon Scientific: 4,385)")
    parser.add_argument("--users", type=int, default=4096)
    parser.add_argument("--child", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        eval_memory_child(*args.child)
        return

    # training: next-item sequences of 50 positions, batches of 128, over the catalog with 576-d content
    import tempfile

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
