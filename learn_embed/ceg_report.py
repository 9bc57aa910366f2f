"""The ceg stage's figures and report section: per encoder, the items embedded, the speed, and how much
item text each encoder never read because it was cut at `max_tokens`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from learn_embed.ceg import read_embeddings
from learnkit.core.formatting import md_code, md_table, share
from learnkit.core.fsutil import read_json
from learnkit.data.text import TemplateConfig

log = logging.getLogger(__name__)
TRUNCATION_WARNING = 0.05  # share of item sentences cut at max_tokens above which the stage warns


def stats_file(folder: Path, rank: int) -> Path:
    """One process's figures of an encoder's run (`encoder_figures` reads every process's)."""
    return folder / f"stats-{rank:05d}.json"


def encoder_figures(folder: Path, world: int, max_tokens: int) -> dict[str, Any]:
    """One encoder's figures from its output parts and every rank's stats file; warns when more than
    TRUNCATION_WARNING of the sentences were cut."""
    name = folder.name
    stats = [read_json(p) for p in sorted(folder.glob("stats-*.json"))][:world]
    ids, matrix, meta = read_embeddings(folder)
    seconds = max(s["seconds"] for s in stats)
    encoded = sum(s["encoded"] for s in stats)
    lengths = np.array([n for s in stats for n in s["token_lengths"]])
    truncated = float((lengths > max_tokens).mean()) if len(lengths) else 0.0
    if truncated > TRUNCATION_WARNING:
        log.warning(
            "CEG %s: %.1f%% of the item sentences are longer than max_tokens %d and were cut "
            "(95th percentile: %d tokens); raise ceg.encoders.%s.max_tokens",
            name,
            100 * truncated,
            max_tokens,
            int(np.percentile(lengths, 95)),
            name,
        )
    return {
        "model": meta["model"],
        "items": len(ids),
        "dim": int(matrix.shape[1]),
        "max_tokens": max_tokens,
        "truncated_share": round(truncated, 4),
        "tokens_p50": int(np.percentile(lengths, 50)) if len(lengths) else 0,
        "tokens_p95": int(np.percentile(lengths, 95)) if len(lengths) else 0,
        "encoded": encoded,
        "from_cache": sum(s["from_cache"] for s in stats),
        "seconds": round(seconds, 3),
        "items_per_s": round(encoded / seconds, 2) if encoded else 0.0,
        "pooling": meta["pooling"],
        "processes": world,
    }


def ceg_metrics(per_encoder: dict[str, dict[str, Any]], primary: str) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "items_encoded": per_encoder[primary]["items"],
        "dim": per_encoder[primary]["dim"],
        "primary": primary,
        "encoders": per_encoder,
    }
    # ceg.<encoder>.truncated_share: how much item text each encoder never read
    for name, e in per_encoder.items():
        metrics[name] = {k: e[k] for k in ("truncated_share", "tokens_p95", "max_tokens")}
    return metrics


def ceg_report(per_encoder: dict[str, dict[str, Any]], template: TemplateConfig) -> str:
    rows = [
        [
            n,
            e["model"],
            e["pooling"],
            e["dim"],
            e["items"],
            e["encoded"],
            e["from_cache"],
            e["items_per_s"],
            e["max_tokens"],
            e["tokens_p95"],
            share(e["truncated_share"]) + (" (cut)" if e["truncated_share"] > TRUNCATION_WARNING else ""),
        ]
        for n, e in per_encoder.items()
    ]
    header = [
        "encoder",
        "model",
        "pooling",
        "dim",
        "items",
        "newly encoded",
        "from cache",
        "items/s",
        "max tokens",
        "tokens p95",
        "sentences cut",
    ]
    return (
        "## Content embeddings (CEG)\n\nEach item's sentence (template: "
        f"{md_code(template.separator.join(template.parts) + template.suffix)}, missing fields left out) "
        "read by a frozen model, last hidden layer pooled over real tokens, L2-normalised.\n\n"
        + md_table(header, rows)
        + f"\n\nAn encoder that cuts more than {100 * TRUNCATION_WARNING:.0f}% of the sentences at `max_tokens` "
        "never reads part of the item text: raise its `max_tokens` to cover the 95th percentile.\n"
    )
