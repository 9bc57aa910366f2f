"""The ceg stage: content embeddings of every item from each configured encoder (torch, lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learnkit.config import Config
from learnkit.fsutil import read_json, write_json
from learnkit.pipeline import Context, StageOutput
from learnkit.report import md_table
from learnkit.stages.data import read_items


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
