"""The export stage: user and item feature tables from the trained PCH towers (torch, lazily)."""

from __future__ import annotations

import logging

import pandas as pd

from learnkit.fsutil import sha256_file
from learnkit.pipeline import Context, StageOutput
from learnkit.report import md_table
from learnkit.period import test_period
from learnkit.stages.data import read_items

log = logging.getLogger(__name__)


def run_export(ctx: Context) -> StageOutput:
    from safetensors.torch import load_file

    from export.embed import embed_tables, histories_before
    from export.tables import write_export
    from learn_embed.ceg import read_embeddings
    from learn_embed.experiment import Catalog, load_content
    from learn_embed.pch import LearnModel

    config, pch = ctx.config.export, ctx.config.pch
    assert config is not None and pch is not None
    method = pch.methods[config.method]
    model_config, _ = pch.method_configs(config.method)
    events = pd.read_parquet(ctx.run_dir / "data" / "events.parquet")
    period = test_period(events, ctx.config.test_period)
    catalog = Catalog.from_ids(sorted(read_items(ctx.run_dir)["item_id"].tolist()))
    content = load_content(ctx.run_dir / "ceg", [method.encoder], catalog) if method.encoder else {}
    model = LearnModel(model_config, len(catalog.ids), content.get(method.encoder) if method.encoder else None)
    checkpoint = ctx.run_dir / "pch" / config.method / "model.safetensors"
    model.load_state_dict(load_file(checkpoint))
    histories = histories_before(events, period.user_snapshot(events["user_id"]), min(pch.split.history_max, model_config.max_len),
                                 pch.split.positives_only)
    tables = embed_tables(model, catalog, histories, config.fallback)
    content_meta = read_embeddings(ctx.run_dir / "ceg" / method.encoder)[2] if method.encoder else None
    metadata = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                "method": config.method, "content_model": content_meta, "template": ctx.config.ceg.template,
                "model_config": model_config, "export_config": config, "snapshot_ts": period.start_ts,
                "snapshot": period.description,
                "user_history": "the newest interactions before snapshot_ts"
                                + (" (positives only)" if pch.split.positives_only else ""),
                "fallback": f"{config.fallback} of the users with history; has_embedding = false"}
    folder = write_export(ctx.stage_dir, tables, metadata, rows_per_part=config.rows_per_part,
                          formats=tuple(config.formats))
    users, items = tables["users"], tables["items"]
    metrics = {"rows_users": len(users.ids), "rows_items": len(items.ids),
               "users_with_embedding": int(users.has_embedding.sum()), "dim": int(items.embeddings.shape[1]),
               "version": folder.name, "snapshot": period.description, "method": config.method}
    log.info("export %s: %d users (%d with history), %d items", folder, metrics["rows_users"],
             metrics["users_with_embedding"], metrics["rows_items"])
    text = ("## Export: LEARN feature tables\n\n"
            f"Version `{folder.name}` of method `{config.method}`. Each user is embedded from the history before "
            f"their test period ({period.description}).\n\n"
            + md_table(["table", "rows", "with embedding", "dim", "formats"],
                       [["users", metrics["rows_users"], metrics["users_with_embedding"], metrics["dim"],
                         ", ".join(config.formats)],
                        ["items", metrics["rows_items"], metrics["rows_items"], metrics["dim"],
                         ", ".join(config.formats)]])
            + f"\nUsers with no interaction before the snapshot carry the {config.fallback} fallback and "
              "`has_embedding = false`.\n")
    return StageOutput(metrics, text)

