"""The i2i stage's section of the report and its plot: the shared-label figure per embedding, and the
nearest neighbours of the query items with their titles (numpy, pandas, matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from learnkit.core.formatting import md_table, md_text
from learnkit.core.frameworks import pyplot, save_figure


def plot_label_shares(shares: dict[str, float], k: int, column: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(list(shares), list(shares.values()), color="#4c78a8")
    ax.set_xlabel(f"share of {k} nearest neighbours sharing a {column} label")
    ax.set_xlim(0, 1)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def neighbour_listing(items: pd.DataFrame, ids: list[str], queries: list[int], neighbours, sims) -> list[dict]:
    """Each query item with its neighbours' ids, titles and cosines (`items` indexed by item_id)."""
    return [
        {
            "item_id": ids[q],
            "title": items.loc[ids[q], "title"],
            "neighbours": [
                {"item_id": ids[n], "title": items.loc[ids[n], "title"], "cosine": float(s)}
                for n, s in zip(row, srow, strict=True)
            ],
        }
        for q, row, srow in zip(queries, neighbours, sims, strict=True)
    ]


def i2i_report(
    listing: list[dict[str, Any]],
    items: pd.DataFrame,
    shares: dict[str, float] | None,
    label_key: str | None,
    column: str | None,
    k: int,
    primary: str,
    n_items: int,
    plot_link: str | None = None,
) -> str:
    """The I2I section: the label shares (with their plot at `plot_link`, relative to the report) and each
    sampled item's nearest neighbours."""
    text = "## Item-to-item check (paper Fig. 2)\n\n"
    if label_key and shares is not None:
        text += (
            f"Share of each item's {k} nearest neighbours (cosine) that share a `{column}` "
            f"label, over {n_items} items. `_centred`: after subtracting the mean embedding (decoder "
            "states are anisotropic: raw cosines between unrelated items are all high).\n\n"
            + md_table(["embedding", label_key], [[n, v] for n, v in shares.items()])
            + (f"\n![{label_key}]({plot_link})\n" if plot_link else "")
            + "\n"
        )
    text += f"Nearest neighbours by `{primary}` (mean-centred cosine) of sampled items:\n\n"
    for entry in listing:
        label = items.loc[entry["item_id"], column] if label_key else ""
        rows = [
            [i + 1, nb["title"], round(nb["cosine"], 3)] + ([items.loc[nb["item_id"], column]] if label_key else [])
            for i, nb in enumerate(entry["neighbours"][:5])
        ]
        header = ["#", "neighbour", "cosine"] + ([column] if label_key else [])
        text += f"**{md_text(entry['title'])}** ({md_text(label)})\n\n" + md_table(header, rows) + "\n"
    return text
