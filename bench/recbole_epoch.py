"""RecBole 1.2.1's SASRec on the same Amazon Scientific files as learn-kit's `sasrec`: seconds per training epoch
(full-softmax cross-entropy over the catalog, RecBole's defaults: width 64, 2 layers, 2 heads, batch 2048, every
prefix of a user's history one training row). Runs in RecBole's own environment (`make bench-recbole-env`:
RecBole 1.2.1 needs numpy < 2, which learn-kit's environment cannot hold); `bench/pch.py` starts it as a child
process in the same run as its own measurement. Prints one JSON object.

    .venv-recbole/bin/python bench/recbole_epoch.py <folder with Scientific.{train,valid,test}.inter> [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    name = "Scientific"
    with tempfile.TemporaryDirectory() as tmp:
        # RecBole reads <data_path>/<dataset>/<dataset>.<part>.inter: link the given files into that layout
        (Path(tmp) / name).mkdir()
        for part in ("train", "valid", "test"):
            source = args.folder.resolve() / f"{name}.{part}.inter"
            if not source.is_file():
                raise SystemExit(f"{source}: file not found")
            (Path(tmp) / name / source.name).symlink_to(source)
        config = Config(
            model="SASRec",
            dataset=name,
            config_dict={
                "data_path": tmp,
                "benchmark_filename": ["train", "valid", "test"],
                "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
                "alias_of_item_id": ["item_id_list"],
                "train_neg_sample_args": None,
                "loss_type": "CE",
                "epochs": args.epochs,
                "show_progress": False,
                "device": "cpu",
                "use_gpu": False,
                "seed": 0,
                "checkpoint_dir": str(Path(tmp) / "saved"),
            },
        )
        logging.disable(logging.WARNING)
        init_seed(config["seed"], config["reproducibility"])
        train, _, _ = data_preparation(config, create_dataset(config))
        os.chdir(tmp)  # RecBole's Trainer writes its TensorBoard folder into the working directory
        trainer = Trainer(config, SASRec(config, train.dataset))
        seconds = []
        for epoch in range(args.epochs):
            started = time.perf_counter()
            trainer._train_epoch(train, epoch, show_progress=False)
            seconds.append(round(time.perf_counter() - started, 2))
        os.chdir(Path(__file__).parent)  # out of the folder before it is removed
    print(
        json.dumps(
            {
                "recbole": "1.2.1",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "train_rows": len(train.dataset),
                "batch_size": config["train_batch_size"],
                "epoch_seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
