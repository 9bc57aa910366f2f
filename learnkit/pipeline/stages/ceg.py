"""The ceg stage: content embeddings of every item from each configured encoder (torch, lazily)."""

from __future__ import annotations

import logging
from pathlib import Path

from learnkit.config import Config
from learnkit.core.fsutil import write_json
from learnkit.pipeline.stage import Context, StageOutput
from learnkit.pipeline.stages.data import read_items

log = logging.getLogger(__name__)


def _cache_root(config: Config) -> Path | None:
    from learnkit.core.fsutil import cache_root

    if not config.ceg.cache:
        return None
    return Path(config.ceg.cache_dir).expanduser() if config.ceg.cache_dir else cache_root()


def model_weights_digest(config: Config) -> dict[str, str]:
    """Each encoder's weights, tokenizer and dtype by content hash: new weights at the same path re-run
    every stage that read them."""
    from learn_embed.models import model_identity

    return {name: model_identity(e.model, e.dtype).fingerprint for name, e in config.ceg.encoders.items()}


def run_ceg_stage(ctx: Context) -> StageOutput:
    from learn_embed.ceg import run_ceg
    from learn_embed.ceg_report import ceg_metrics, ceg_report, encoder_figures, stats_file

    items, ceg, layout = read_items(ctx.layout), ctx.config.ceg, ctx.layout
    for name, encoder in ceg.encoders.items():
        out = layout.content(name)
        cache = _cache_root(ctx.config)
        engine = ctx.config.run_engine()
        result = run_ceg(items, name, encoder, ceg.template, out, cache, layout.rank, layout.world, engine=engine)
        write_json(stats_file(out, layout.rank), result.__dict__)
    if layout.world > 1:
        import torch.distributed as dist

        dist.barrier()
    figures = {
        name: encoder_figures(layout.content(name), layout.world, encoder.max_tokens)
        for name, encoder in ceg.encoders.items()
    }
    return StageOutput(ceg_metrics(figures, ceg.primary), ceg_report(figures, ceg.template))
