"""The i2i stage: nearest neighbours by content embedding and the shared-label figure (paper Fig. 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from learnkit.core.fsutil import write_json
from learnkit.pipeline.stage import Context, StageOutput
from learnkit.pipeline.stages.data import read_items


def run_i2i(ctx: Context) -> StageOutput:
    from learn_embed.ceg import read_embeddings
    from learn_embed.i2i import item_labels, label_shares, nearest_neighbours, normalise, pick_queries
    from learn_embed.i2i_report import i2i_report, neighbour_listing, plot_label_shares

    cfg, primary = ctx.config.i2i, ctx.config.ceg.primary
    items = read_items(ctx.layout).set_index("item_id")
    embeddings = {name: read_embeddings(ctx.layout.content(name)) for name in ctx.config.ceg.encoders}
    ids = embeddings[primary][0]["item_id"].tolist()
    if any(frame["item_id"].tolist() != ids for frame, _, _ in embeddings.values()):
        raise ValueError(f"an encoder embedded a different item set than {primary}")
    rng = np.random.default_rng(cfg.seed)
    matrices = {name: m for name, (_, m, _) in embeddings.items()}
    matrices["random"] = rng.standard_normal((len(ids), matrices[primary].shape[1])).astype(np.float32)
    metrics: dict[str, Any] = {"k": cfg.k, "items": len(ids)}
    shares, label_key = None, None
    if cfg.label_column and cfg.label_column in items.columns:
        label_key = f"{'genre' if cfg.label_column == 'genres' else cfg.label_column}_at_{cfg.k}"
        shares = metrics[label_key] = label_shares(matrices, item_labels(list(items.loc[ids, cfg.label_column])), cfg.k)
        plot_label_shares(shares, cfg.k, cfg.label_column, ctx.layout.label_plot(label_key))
    queries = pick_queries(ids, cfg.query_items, cfg.queries, rng)
    neighbours, sims = nearest_neighbours(normalise(matrices[primary], centre=True), cfg.k, np.array(queries))
    listing = neighbour_listing(items, ids, queries, neighbours, sims)
    write_json(ctx.layout.neighbours, listing)
    plot = ctx.layout.link(ctx.layout.label_plot(label_key)) if label_key else None
    text = i2i_report(listing, items, shares, label_key, cfg.label_column, cfg.k, primary, len(ids), plot)
    return StageOutput(metrics, text)
