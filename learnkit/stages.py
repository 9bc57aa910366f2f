"""The stages of `learn-kit run`. Each imports its framework lazily, inside its own function."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnkit.config import Config
from learnkit.fetch import fetch
from learnkit.fsutil import read_json, sha256_file, write_json, write_parquet
from learnkit.pipeline import Context, Stage, StageOutput
from learnkit.report import md_table
from learnkit.schema import ValidationRules

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- data

def resolve_data(config: Config) -> tuple[Path, str, str]:
    """(folder, importer format, origin) of the configured dataset."""
    data = config.data
    if data.path is not None:
        return Path(data.path), data.format, "config path"
    assert data.fetch is not None
    fetched = fetch(data.fetch)
    return fetched.path, fetched.format, fetched.origin


def _data_files_digest(config: Config) -> dict[str, str]:
    folder, _, _ = resolve_data(config)
    if folder.is_file():
        return {folder.name: sha256_file(folder)}
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix != ".md" and not p.name.startswith(".")}


def run_data(ctx: Context) -> StageOutput:
    from learnkit.importers import load_dataset, validate

    config = ctx.config.data
    folder, fmt, origin = resolve_data(ctx.config)
    raw = load_dataset(fmt, folder, config.options)
    rules = ValidationRules(on_error=config.on_error, max_price=config.max_price, min_ts=config.min_ts,
                            max_ts=config.max_ts)
    dataset = validate(raw, rules)
    out = ctx.stage_dir
    write_parquet(out / "items.parquet", dataset.items)
    write_parquet(out / "events.parquet", dataset.events)
    if dataset.users is not None:
        write_parquet(out / "users.parquet", dataset.users)
    write_parquet(out / "rejected.parquet", dataset.rejected)
    report = {**dataset.report, "source": {"path": str(folder), "format": fmt, "origin": origin}}
    write_json(out / "validation.json", report)
    events = dataset.events
    metrics = {"items": len(dataset.items), "events": len(events), "rejected": int(report["rejected_total"]),
               "users": int(events["user_id"].nunique()), "positives": int(events["label"].sum()),
               "format": fmt}
    rows = [[table, report[table]["input_rows"] if report[table] else "-",
             report[table]["kept"] if report[table] else "-", report[table]["rejected"] if report[table] else "-"]
            for table in ("items", "events")]
    text = (f"## Data\n\nSource: `{folder}` ({fmt}, {origin}). {metrics['users']} users with events, "
            f"{metrics['positives']} positive events (label 1).\n\n" + md_table(["table", "rows read", "kept",
                                                                              "rejected"], rows))
    if report["rejected_by_reason"]:
        text += "\nRejected rows by reason (all listed in `data/rejected.parquet`):\n\n" + md_table(
            ["reason", "rows"], [[k, v] for k, v in report["rejected_by_reason"].items()])
    if report["notes"]:
        text += "\nNotes: " + "; ".join(report["notes"]) + ".\n"
    return StageOutput(metrics, text)


def read_items(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "data" / "items.parquet")


# ----------------------------------------------------------------------------------------------- ceg

def _cache_root(config: Config) -> Path | None:
    from learnkit.fetch import cache_root

    if not config.ceg.cache:
        return None
    return Path(config.ceg.cache_dir).expanduser() if config.ceg.cache_dir else cache_root()


def run_ceg_stage(ctx: Context) -> StageOutput:
    from learn_embed.ceg import read_embeddings, run_ceg

    items = read_items(ctx.run_dir)
    ceg = ctx.config.ceg
    results = {}
    for name, encoder in ceg.encoders.items():
        result = run_ceg(items, name, encoder, ceg.template, ctx.stage_dir / name, _cache_root(ctx.config),
                         rank=ctx.rank, world=ctx.world)
        write_json(ctx.stage_dir / name / f"stats-{ctx.rank:05d}.json", result.__dict__)
        results[name] = result
    if ctx.world > 1:
        import torch.distributed as dist

        dist.barrier()
    per_encoder: dict[str, Any] = {}
    for name in ceg.encoders:
        stats = [read_json(p) for p in sorted((ctx.stage_dir / name).glob("stats-*.json"))][: ctx.world]
        ids, matrix, meta = read_embeddings(ctx.stage_dir / name)
        seconds = max(s["seconds"] for s in stats)
        encoded = sum(s["encoded"] for s in stats)
        per_encoder[name] = {"model": meta["model"], "items": len(ids), "dim": int(matrix.shape[1]),
                             "encoded": encoded, "from_cache": sum(s["from_cache"] for s in stats),
                             "seconds": round(seconds, 3),
                             "items_per_s": round(encoded / seconds, 2) if encoded else 0.0,
                             "pooling": meta["pooling"], "processes": ctx.world}
    primary = per_encoder[ceg.primary]
    metrics = {"items_encoded": primary["items"], "dim": primary["dim"], "primary": ceg.primary,
               "encoders": per_encoder}
    rows = [[n, e["model"], e["pooling"], e["dim"], e["items"], e["encoded"], e["from_cache"], e["items_per_s"]]
            for n, e in per_encoder.items()]
    text = ("## Content embeddings (CEG)\n\nEach item's sentence (template: "
            f"`{ceg.template.separator.join(ceg.template.parts)}{ceg.template.suffix}`, missing fields left out) "
            "read by a frozen model, last hidden layer pooled over real tokens, L2-normalised.\n\n"
            + md_table(["encoder", "model", "pooling", "dim", "items", "newly encoded", "from cache", "items/s"],
                       rows))
    return StageOutput(metrics, text)


# ----------------------------------------------------------------------------------------------- i2i

def run_i2i(ctx: Context) -> StageOutput:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from learn_embed.ceg import read_embeddings
    from learn_embed.i2i import label_share_at_k, nearest_neighbours, normalise

    cfg = ctx.config.i2i
    items = read_items(ctx.run_dir).set_index("item_id")
    embeddings = {name: read_embeddings(ctx.run_dir / "ceg" / name) for name in ctx.config.ceg.encoders}
    primary = ctx.config.ceg.primary
    ids = embeddings[primary][0]["item_id"].tolist()
    rng = np.random.default_rng(cfg.seed)
    matrices = {name: m for name, (_, m, _) in embeddings.items()}
    matrices["random"] = rng.standard_normal((len(ids), embeddings[primary][1].shape[1])).astype(np.float32)
    for name, (frame, _, _) in embeddings.items():
        if frame["item_id"].tolist() != ids:
            raise ValueError(f"encoder {name} embedded a different item set than {primary}")

    metrics: dict[str, Any] = {"k": cfg.k, "items": len(ids)}
    figure_rows = []
    label_key = None
    if cfg.label_column and cfg.label_column in items.columns:
        label_key = f"{'genre' if cfg.label_column == 'genres' else cfg.label_column}_at_{cfg.k}"
        labels = [frozenset(filter(None, str(v).split("|"))) if isinstance(v, str) else frozenset()
                  for v in items.loc[ids, cfg.label_column]]
        shares: dict[str, float] = {}
        for name, matrix in matrices.items():
            shares[name] = round(label_share_at_k(normalise(matrix), labels, cfg.k), 4)
            if name != "random":
                shares[f"{name}_centred"] = round(label_share_at_k(normalise(matrix, centre=True), labels, cfg.k), 4)
        metrics[label_key] = shares
        figure_rows = [[n, v] for n, v in shares.items()]
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh(list(shares), list(shares.values()), color="#4c78a8")
        ax.set_xlabel(f"share of {cfg.k} nearest neighbours sharing a {cfg.label_column} label")
        ax.set_xlim(0, 1)
        fig.tight_layout()
        fig.savefig(ctx.stage_dir / f"{label_key}.png", dpi=110)
        plt.close(fig)

    # Neighbours of sampled query items by the primary encoder (mean-centred cosine).
    matrix = normalise(matrices[primary], centre=True)
    position = {item: i for i, item in enumerate(ids)}
    queries = [position[q] for q in cfg.query_items if q in position]
    missing = [q for q in cfg.query_items if q not in position]
    if missing:
        raise ValueError(f"i2i.query_items not in the catalog: {missing}")
    pool = [i for i in range(len(ids)) if i not in queries]
    queries += rng.choice(pool, size=min(cfg.queries, len(pool)), replace=False).tolist()
    neighbours, sims = nearest_neighbours(matrix, cfg.k, np.array(queries, dtype=np.int64))
    listing = []
    text = "## Item-to-item check (paper Fig. 2)\n\n"
    if label_key:
        text += (f"Share of each item's {cfg.k} nearest neighbours (cosine) that share a `{cfg.label_column}` "
                 f"label, over {len(ids)} items. `_centred`: after subtracting the mean embedding (decoder "
                 "states are anisotropic: raw cosines between unrelated items are all high).\n\n"
                 + md_table(["embedding", label_key], figure_rows)
                 + f"\n![{label_key}](i2i/{label_key}.png)\n\n")
    text += f"Nearest neighbours by `{primary}` (mean-centred cosine) of sampled items:\n\n"
    for q, row, srow in zip(queries, neighbours, sims):
        title = items.loc[ids[q], "title"]
        entry = {"item_id": ids[q], "title": title,
                 "neighbours": [{"item_id": ids[n], "title": items.loc[ids[n], "title"], "cosine": float(s)}
                                for n, s in zip(row, srow)]}
        listing.append(entry)
        label = items.loc[ids[q], cfg.label_column] if label_key else ""
        text += f"**{title}** ({label})\n\n" + md_table(
            ["#", "neighbour", "cosine"] + ([cfg.label_column] if label_key else []),
            [[i + 1, nb["title"], round(nb["cosine"], 3)] + ([items.loc[nb["item_id"], cfg.label_column]]
                                                            if label_key else [])
             for i, nb in enumerate(entry["neighbours"][:5])]) + "\n"
    write_json(ctx.stage_dir / "neighbours.json", listing)
    return StageOutput(metrics, text)


# ----------------------------------------------------------------------------------------------- pch

def run_pch(ctx: Context) -> StageOutput:
    import torch

    from learn_embed.experiment import (Catalog, gallery_items, load_content, run_baseline_v1, run_learn)
    from learnkit.splits import make_split

    cfg = ctx.config.pch
    assert cfg is not None
    items = read_items(ctx.run_dir)
    events = pd.read_parquet(ctx.run_dir / "data" / "events.parquet")
    examples, split_stats = make_split(events, cfg.split)
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
            results[name] = run_learn(name, method, cfg.model, cfg.train, cfg.eval, examples, catalog, gallery,
                                      content, out, resume)
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


ALL = [
    Stage("data", (), lambda c: c.data, run_data, external_inputs=_data_files_digest),
    Stage("ceg", ("data",), lambda c: c.ceg, run_ceg_stage),
    Stage("i2i", ("ceg",), lambda c: {"i2i": c.i2i, "encoders": list(c.ceg.encoders), "primary": c.ceg.primary},
          run_i2i),
    Stage("pch", ("data", "ceg"), lambda c: {"pch": c.pch, "template": c.ceg.template,
                                             "encoders": {n: e for n, e in c.ceg.encoders.items()}},
          run_pch, metrics_key="retrieval", enabled=lambda c: c.pch is not None),
]
