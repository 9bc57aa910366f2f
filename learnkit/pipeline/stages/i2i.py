"""The i2i stage: nearest neighbours by content embedding and the shared-label figure (paper Fig. 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from learnkit.core.formatting import md_table
from learnkit.core.fsutil import write_json
from learnkit.pipeline.runner import Context, StageOutput
from learnkit.pipeline.stages.data import read_items


def run_i2i(ctx: Context) -> StageOutput:
    from learnkit.core.frameworks import pyplot

    plt = pyplot()

    from learn_embed.ceg import read_embeddings
    from learn_embed.i2i import label_share_at_k, nearest_neighbours, normalise

    cfg = ctx.config.i2i
    items = read_items(ctx.layout).set_index("item_id")
    embeddings = {name: read_embeddings(ctx.layout.content(name)) for name in ctx.config.ceg.encoders}
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
        labels = [
            frozenset(filter(None, str(v).split("|"))) if isinstance(v, str) else frozenset()
            for v in items.loc[ids, cfg.label_column]
        ]
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
        text += (
            f"Share of each item's {cfg.k} nearest neighbours (cosine) that share a `{cfg.label_column}` "
            f"label, over {len(ids)} items. `_centred`: after subtracting the mean embedding (decoder "
            "states are anisotropic: raw cosines between unrelated items are all high).\n\n"
            + md_table(["embedding", label_key], figure_rows)
            + f"\n![{label_key}](i2i/{label_key}.png)\n\n"
        )
    text += f"Nearest neighbours by `{primary}` (mean-centred cosine) of sampled items:\n\n"
    for q, row, srow in zip(queries, neighbours, sims, strict=True):
        title = items.loc[ids[q], "title"]
        entry = {
            "item_id": ids[q],
            "title": title,
            "neighbours": [
                {"item_id": ids[n], "title": items.loc[ids[n], "title"], "cosine": float(s)}
                for n, s in zip(row, srow, strict=True)
            ],
        }
        listing.append(entry)
        label = items.loc[ids[q], cfg.label_column] if label_key else ""
        text += (
            f"**{title}** ({label})\n\n"
            + md_table(
                ["#", "neighbour", "cosine"] + ([cfg.label_column] if label_key else []),
                [
                    [i + 1, nb["title"], round(nb["cosine"], 3)]
                    + ([items.loc[nb["item_id"], cfg.label_column]] if label_key else [])
                    for i, nb in enumerate(entry["neighbours"][:5])
                ],
            )
            + "\n"
        )
    write_json(ctx.stage_dir / "neighbours.json", listing)
    return StageOutput(metrics, text)
