"""The pch stage: train and evaluate every configured retrieval method (torch, lazily)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from learnkit.config import Config
from learnkit.fsutil import read_json, write_json, write_parquet
from learnkit.pipeline import Context, StageOutput
from learnkit.report import md_table
from learnkit.stages.data import read_items

log = logging.getLogger(__name__)


def run_pch(ctx: Context) -> StageOutput:
    import torch

    from learn_embed.experiment import (Catalog, gallery_items, load_content, run_baseline_v1, run_learn)
    from learnkit.period import test_period
    from learnkit.splits import make_split

    cfg = ctx.config.pch
    assert cfg is not None
    items = read_items(ctx.run_dir)
    events = pd.read_parquet(ctx.run_dir / "data" / "events.parquet")
    period = test_period(events, ctx.config.test_period) if cfg.train_before_test_period else None
    if period is not None:
        events = events[~period.in_test]
    examples, split_stats = make_split(events, cfg.split)
    if period is not None:
        split_stats["trained_before"] = period.description
    if ctx.rank == 0:
        write_parquet(ctx.stage_dir / "split.parquet", examples)
    catalog = Catalog.from_ids(sorted(items["item_id"].tolist()))
    gallery = gallery_items(catalog, events, cfg.eval.gallery)
    encoders = sorted({m.encoder for m in cfg.methods.values() if m.encoder})
    content = load_content(ctx.run_dir / "ceg", encoders, catalog)
    resume = bool(ctx.options.get("resume"))
    results: dict[str, Any] = {}
    for name, method in cfg.methods.items():
        out = ctx.stage_dir / name
        out.mkdir(parents=True, exist_ok=True)
        done = out / "metrics.json"
        if resume and done.is_file():
            results[name] = read_json(done)
            log.info("method %s: finished before the interruption, kept", name)
            continue
        log.info("method %s: %s", name, method.kind)
        torch.manual_seed(cfg.train.seed)
        if method.kind == "baseline_v1":
            if ctx.rank != 0:
                continue
            assert method.encoder is not None
            results[name] = run_baseline_v1(method, ctx.config.ceg.encoders[method.encoder], ctx.config.ceg.template,
                                            items, examples, catalog, gallery, content[method.encoder],
                                            cfg.eval, ctx.config.seed)
        else:
            model_config, train_config = cfg.method_configs(name)
            results[name] = run_learn(name, method, model_config, train_config, cfg.eval, examples, catalog,
                                      gallery, content, out, resume)
        if ctx.rank == 0:
            write_json(done, results[name])
    metrics: dict[str, Any] = {"split": split_stats, "gallery_items": int(len(gallery))}
    metrics.update(results)
    text = _pch_report(ctx.config, metrics, list(cfg.methods))
    if ctx.rank == 0 and _plot_training_curves(results, cfg.eval.monitor_metric, ctx.stage_dir / "curves.png"):
        text += ("\nTraining loss and validation " + cfg.eval.monitor_metric + " per epoch:\n\n"
                 "![training curves](pch/curves.png)\n")
    return StageOutput(metrics, text)


def _plot_training_curves(results: dict[str, Any], monitor: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: r["training"] for name, r in results.items() if r["training"].get("losses")}
    if not curves:
        return False
    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, training in curves.items():
        epochs = range(1, len(training["losses"]) + 1)
        loss_ax.plot(epochs, training["losses"], label=name)
        valid = [e.get(monitor) for e in training.get("valid", [])]
        if valid and all(v is not None for v in valid):
            valid_ax.plot(range(1, len(valid) + 1), valid, label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss")
    valid_ax.set(xlabel="epoch", ylabel=f"validation {monitor}")
    valid_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _pch_report(config: Config, metrics: dict[str, Any], methods: list[str]) -> str:
    cfg = config.pch
    assert cfg is not None
    ks = cfg.eval.ks
    header = ["method"] + [f"{m}@{k}" for m in ("H", "R", "N") for k in ks] + ["converged"]
    rows = []
    for name in methods:
        r = metrics[name]
        converged = r["training"].get("converged", "-") if "losses" in r["training"] else "-"
        rows.append([name] + [round(r[f"{m}@{k}"], 4) for m in ("H", "R", "N") for k in ks] + [converged])
    split = metrics["split"]
    text = (f"## Retrieval (PCH twin towers)\n\nSplit `{split['kind']}`: {split['train_examples']} training, "
            f"{split['valid_examples']} validation and {split['test_examples']} test examples "
            f"({split['users_skipped']} users skipped for lack of history or target). Full ranking over "
            f"{metrics['gallery_items']} gallery items"
            + (", the user's history items excluded" if cfg.eval.exclude_history else "") + ".\n\n"
            + md_table(header, rows))
    return text
