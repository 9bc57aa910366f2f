"""The export stage: user and item feature tables from the trained PCH towers (torch, lazily)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from learnkit.core.errors import DataError
from learnkit.core.formatting import md_table
from learnkit.core.fsutil import read_json, sha256_file
from learnkit.data.period import test_period
from learnkit.data.text import item_sentences
from learnkit.pipeline.runner import Context, StageOutput
from learnkit.pipeline.stages.data import read_items

log = logging.getLogger(__name__)


def run_export(ctx: Context) -> StageOutput:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from export.content_inputs import MODEL, SETTINGS, TOKENIZER
    from export.content_model import ContentParity, export_content_model
    from export.embed import embed_snapshots, embed_tables, histories_before, snapshot_histories
    from export.tables import write_export
    from export.towers import export_towers
    from learn_embed.ceg import ContentEncoder, read_embeddings
    from learn_embed.experiment import Catalog, load_content
    from learn_embed.pch import LearnModel

    config, pch = ctx.config.export, ctx.config.pch
    assert config is not None and pch is not None
    method = pch.methods[config.method]
    model_config, _ = pch.method_configs(config.method)
    events = pd.read_parquet(ctx.layout.events)
    period = test_period(events, ctx.config.test_period)
    item_rows = read_items(ctx.layout)
    catalog = Catalog.from_ids(sorted(item_rows["item_id"].tolist()))
    content = load_content(ctx.layout.content(), [method.encoder], catalog) if method.encoder else {}
    model = LearnModel(model_config, len(catalog.ids), content.get(method.encoder) if method.encoder else None)
    checkpoint = ctx.layout.checkpoint(config.method)
    try:
        model.load_state_dict(load_file(checkpoint))
    except (OSError, SafetensorError) as exc:
        raise DataError(
            f"{checkpoint}: not a readable safetensors checkpoint ({exc}); train it again with "
            f"`learn-kit pch --config {ctx.config.source} --force`"
        ) from exc
    histories = histories_before(
        events,
        period.user_snapshot(events["user_id"]),
        min(pch.split.history_max, model_config.max_len),
        pch.split.positives_only,
    )
    tables = embed_tables(model, catalog, histories, config.fallback)
    every = config.snapshot_every or ctx.config.test_period.day_seconds
    snapshots = snapshot_histories(
        events,
        every,
        min(pch.split.history_max, model_config.max_len),
        pch.split.positives_only,
        ctx.config.test_period.day_seconds,
    )
    tables["user_snapshots"] = embed_snapshots(model, catalog, snapshots, tables["users"].fallback_vector())
    ordinal = read_json(ctx.layout.validation).get("time") == "ordinal"
    length = min(pch.split.history_max, model_config.max_len)
    parity: dict = {}

    def _content_model(folder: Path) -> ContentParity:
        """The CEG model of the exported method, as ONNX with its tokenizer, checked on real items spread
        over the catalog."""
        assert method.encoder is not None
        ordered = item_rows.set_index("item_id").loc[list(catalog.ids)].reset_index()
        step = max(1, len(ordered) // config.content_parity_items)
        sentences = item_sentences(ordered.iloc[::step].head(config.content_parity_items), ctx.config.ceg.template)
        encoder = ContentEncoder(ctx.config.ceg.encoders[method.encoder])
        return export_content_model(encoder, sentences, folder, config.content_parity_items)

    def towers(staging: Path) -> dict:
        """The towers beside the tables, so that they are hashed and versioned with them."""
        if not config.towers or method.encoder is None or model_config.item_tower == "id_table":
            return {"towers": "not exported" + ("" if config.towers else " (export.towers: false)")}
        known = [catalog.index(h) for h in histories.histories if h][: config.parity_users]
        result = export_towers(model, content[method.encoder], known, staging / "towers", length)
        parity.update(result.as_metrics())
        described: dict = {}
        if config.content_model:
            parity.update(_content_model(staging / "towers").as_metrics())
            described = {
                "content": {
                    "onnx": f"towers/{MODEL}",
                    "tokenizer": f"towers/{TOKENIZER}",
                    "settings": f"towers/{SETTINGS}",
                    "encoder": method.encoder,
                    "inputs": {
                        "input_ids": "[batch, tokens] int64, right-padded",
                        "attention_mask": "[batch, tokens] int64, 1 for real tokens",
                    },
                    "output": "content_embedding: the raw CEG embedding the towers take",
                }
            }
        return {
            "towers": {
                **described,
                "user": {
                    "onnx": "towers/user.onnx",
                    "tensorflow": "towers/user_tf",
                    "inputs": {
                        "content": "[batch, length, content_dim] float32, raw CEG embeddings",
                        "mask": "[batch, length] float32, 1 for real items (right-padded)",
                    },
                    "tensorflow_length": length,
                },
                "item": {
                    "onnx": "towers/item.onnx",
                    "tensorflow": "towers/item_tf",
                    "inputs": {"content": "[batch, content_dim] float32, raw CEG embeddings"},
                },
                "parity_users": len(known),
                **result.as_metrics(),
            }
        }

    content_meta = read_embeddings(ctx.layout.content(method.encoder))[2] if method.encoder else None
    metadata = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "method": config.method,
        "content_model": content_meta,
        "template": ctx.config.ceg.template,
        "model_config": model_config,
        "export_config": config,
        "snapshot_ts": period.start_ts,
        "snapshot": period.description,
        "user_history": "the newest interactions before snapshot_ts"
        + (" (positives only)" if pch.split.positives_only else ""),
        "fallback": f"{config.fallback} of the users with history; has_embedding = false",
    }
    cadence = (
        "a refresh one time unit after each of a user's events, in partitions of "
        f"{ctx.config.test_period.day_seconds} time units"
        if every == "event"
        else f"a snapshot every {every} time units from the first event"
    )
    metadata["user_snapshots"] = (
        f"{cadence}; a user's row valid from v is built from their events with ts < v, "
        "written when their history changed; a reader takes each user's row with the "
        "largest valid_from <= its time (as_of <= valid_from: older partitions can be "
        "pruned)"
    )
    folder = write_export(
        ctx.stage_dir,
        tables,
        metadata,
        rows_per_part=config.rows_per_part,
        formats=tuple(config.formats),
        artefacts=towers,
        ordinal_time=ordinal,
    )
    users, items = tables["users"], tables["items"]
    metrics = {
        "rows_users": len(users.ids),
        "rows_items": len(items.ids),
        "rows_user_snapshots": len(snapshots.rows),
        "snapshots": int(snapshots.rows["as_of"].nunique()),
        "snapshot_refreshes": int(snapshots.rows["valid_from"].nunique()),
        "snapshot_every": every,
        "users_with_embedding": int(users.has_embedding.sum()),
        "dim": int(items.embeddings.shape[1]),
        "version": folder.name,
        "snapshot": period.description,
        "method": config.method,
        **parity,
    }
    log.info(
        "export %s: %d users (%d with history), %d items",
        folder,
        metrics["rows_users"],
        metrics["users_with_embedding"],
        metrics["rows_items"],
    )
    text = (
        "## Export: LEARN feature tables\n\n"
        f"Version `{folder.name}` of method `{config.method}`. Each user is embedded from the history before "
        f"their test period ({period.description}).\n\n"
        + md_table(
            ["table", "rows", "with embedding", "dim", "formats"],
            [
                [
                    "users",
                    metrics["rows_users"],
                    metrics["users_with_embedding"],
                    metrics["dim"],
                    ", ".join(config.formats),
                ],
                [
                    "user_snapshots",
                    metrics["rows_user_snapshots"],
                    metrics["rows_user_snapshots"],
                    metrics["dim"],
                    ", ".join(config.formats),
                ],
                ["items", metrics["rows_items"], metrics["rows_items"], metrics["dim"], ", ".join(config.formats)],
            ],
        )
        + f"\nUsers with no interaction before the snapshot carry the {config.fallback} fallback and "
        "`has_embedding = false`. `user_snapshots` holds the point-in-time vectors the ranker joins to "
        f"each sample: {cadence} ({metrics['snapshots']} partitions `user_snapshots/as_of=<time>/`), "
        "a user's row valid from `valid_from` built only from their events before it, written when their "
        "history changed since their previous row (a reader carries the last one forward).\n"
    )
    if parity:
        text += (
            "\nTowers: `towers/user.onnx` and `towers/item.onnx` (dynamic batch and history length) and the "
            f"TensorFlow SavedModels `towers/user_tf` (histories padded to {length}) and `towers/item_tf`. "
            f"Largest difference from PyTorch on {min(config.parity_users, metrics['users_with_embedding'])} "
            f"real users and all {metrics['rows_items']} items: onnxruntime {parity['parity_onnx_max_abs']:.1e}, "
            f"TensorFlow {parity['parity_tf_max_abs']:.1e}.\n"
        )
    if "content_parity_onnx_max_abs" in parity:
        text += (
            f"\nThe CEG model of `{method.encoder}` with its pooling: `towers/{MODEL}` (dynamic batch and "
            f"length) and its tokenizer `towers/{TOKENIZER}`, so that a ranker embeds a new item from its text "
            "without torch (`ranking.tables.embed_new_items`). Largest difference from the torch CEG on "
            f"{parity['content_parity_items']} real items: {parity['content_parity_onnx_max_abs']:.1e}.\n"
        )
    return StageOutput(metrics, text)
