"""The ceg stage: content embeddings of every item from each configured encoder (torch, lazily)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from learnkit.config import Config
from learnkit.core.formatting import md_table
from learnkit.core.fsutil import read_json, write_json
from learnkit.pipeline.runner import Context, StageOutput
from learnkit.pipeline.stages.data import read_items

log = logging.getLogger(__name__)
TRUNCATION_WARNING = 0.05  # share of item sentences cut at max_tokens above which the stage warns


def _cache_root(config: Config) -> Path | None:
    from learnkit.data.fetch import cache_root

    if not config.ceg.cache:
        return None
    return Path(config.ceg.cache_dir).expanduser() if config.ceg.cache_dir else cache_root()


def model_weights_digest(config: Config) -> dict[str, str]:
    """Each encoder's weights, tokenizer and dtype by content hash: new weights at the same path re-run
    every stage that read them."""
    from learn_embed.models import model_identity

    return {name: model_identity(e.model, e.dtype).fingerprint for name, e in config.ceg.encoders.items()}


def run_ceg_stage(ctx: Context) -> StageOutput:
    from learn_embed.ceg import read_embeddings, run_ceg

    items = read_items(ctx.layout)
    ceg = ctx.config.ceg
    results = {}
    for name, encoder in ceg.encoders.items():
        result = run_ceg(
            items,
            name,
            encoder,
            ceg.template,
            ctx.stage_dir / name,
            _cache_root(ctx.config),
            rank=ctx.layout.rank,
            world=ctx.layout.world,
        )
        write_json(ctx.stage_dir / name / f"stats-{ctx.layout.rank:05d}.json", result.__dict__)
        results[name] = result
    if ctx.layout.world > 1:
        import torch.distributed as dist

        dist.barrier()
    per_encoder: dict[str, Any] = {}
    for name in ceg.encoders:
        stats = [read_json(p) for p in sorted((ctx.stage_dir / name).glob("stats-*.json"))][: ctx.layout.world]
        ids, matrix, meta = read_embeddings(ctx.stage_dir / name)
        seconds = max(s["seconds"] for s in stats)
        encoded = sum(s["encoded"] for s in stats)
        lengths = np.array([n for s in stats for n in s["token_lengths"]])
        max_tokens = ceg.encoders[name].max_tokens
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
        per_encoder[name] = {
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
            "processes": ctx.layout.world,
        }
    primary = per_encoder[ceg.primary]
    metrics: dict[str, Any] = {
        "items_encoded": primary["items"],
        "dim": primary["dim"],
        "primary": ceg.primary,
        "encoders": per_encoder,
    }
    # ceg.<encoder>.truncated_share: how much item text each encoder never read
    metrics.update(
        {
            name: {
                "truncated_share": e["truncated_share"],
                "tokens_p95": e["tokens_p95"],
                "max_tokens": e["max_tokens"],
            }
            for name, e in per_encoder.items()
        }
    )
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
            f"{100 * e['truncated_share']:.1f}%" + (" (cut)" if e["truncated_share"] > TRUNCATION_WARNING else ""),
        ]
        for n, e in per_encoder.items()
    ]
    text = (
        "## Content embeddings (CEG)\n\nEach item's sentence (template: "
        f"`{ceg.template.separator.join(ceg.template.parts)}{ceg.template.suffix}`, missing fields left out) "
        "read by a frozen model, last hidden layer pooled over real tokens, L2-normalised.\n\n"
        + md_table(
            [
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
            ],
            rows,
        )
        + f"\n\nAn encoder that cuts more than {100 * TRUNCATION_WARNING:.0f}% of the sentences at `max_tokens` "
        "never reads part of the item text: raise its `max_tokens` to cover the 95th percentile.\n"
    )
    return StageOutput(metrics, text)
