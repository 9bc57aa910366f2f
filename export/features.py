"""One export of a trained PCH method: the user, point-in-time snapshot and item tables, the towers and the
CEG model beside them, written as one verified version (torch; TensorFlow only in a child process)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from safetensors import SafetensorError
from safetensors.torch import load_file

from export.config import ExportConfig
from export.content_inputs import MODEL, SETTINGS, TOKENIZER
from export.content_model import ContentParity, export_content_model
from export.embed import embed_snapshots, embed_tables, histories_before
from export.snapshots import snapshot_histories
from export.tables import write_export
from export.towers import export_towers
from learn_embed.ceg import ContentEncoder
from learn_embed.config import CegConfig, PchConfig, PchStageConfig
from learn_embed.experiment import load_encoder
from learn_embed.pch import LearnModel
from learnkit.core.errors import DataError
from learnkit.core.fsutil import sha256_file
from learnkit.core.sql import EngineConfig
from learnkit.data.catalog import Catalog
from learnkit.data.period import TestPeriod
from learnkit.data.text import item_sentences

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportInputs:
    """What one export reads: the run's events and items, its test period, the trained checkpoint and the
    CEG embeddings, with the configs that made them."""

    events: pd.DataFrame
    items: pd.DataFrame
    period: TestPeriod
    checkpoint: Path
    content_dir: Path  # the CEG stage's folder, one subfolder per encoder
    config: ExportConfig
    pch: PchStageConfig
    ceg: CegConfig
    day_seconds: int
    ordinal_time: bool
    engine: EngineConfig = field(default_factory=EngineConfig)  # the relational steps' DuckDB limits


@dataclass(frozen=True)
class ExportResult:
    metrics: dict[str, Any]
    cadence: str  # how the user snapshots are refreshed, in words
    length: int  # the history length the TensorFlow user tower is padded to
    encoder: str | None


def load_trained(checkpoint: Path, model: LearnModel) -> LearnModel:
    try:
        model.load_state_dict(load_file(checkpoint))
    except (OSError, SafetensorError) as exc:
        raise DataError(
            f"{checkpoint}: not a readable safetensors checkpoint ({exc}); train the method again "
            "(the pch stage, with --force)"
        ) from exc
    return model


def export_features(inputs: ExportInputs, out_dir: Path) -> ExportResult:
    """Embed every user (before their test period, and at each snapshot) and every item with the trained
    towers of `config.method`, and write them as a new version under `out_dir`."""
    config, pch, events = inputs.config, inputs.pch, inputs.events
    method = pch.methods[config.method]
    model_config, _ = pch.method_configs(config.method)
    catalog = Catalog.of_items(inputs.items)
    matrix, content_meta = load_encoder(inputs.content_dir, method.encoder, catalog) if method.encoder else (None, None)
    model = load_trained(inputs.checkpoint, LearnModel(model_config, len(catalog.ids), matrix))
    length = min(pch.split.history_max, model_config.max_len)
    started = time.perf_counter()
    seconds: dict[str, float] = {}  # where the export's time goes: the demo's profile reads it
    histories = histories_before(
        events, inputs.period.user_snapshot(events["user_id"]), length, pch.split.positives_only
    )
    # the snapshot's tables know nothing of the test period: its new items are the ranker's to embed from text
    new_items = inputs.period.new_items(events)
    tables = embed_tables(model, catalog, histories, config.fallback, new_items)
    every = config.snapshot_every or inputs.day_seconds
    snapshots = snapshot_histories(events, every, length, pch.split.positives_only, inputs.day_seconds, inputs.engine)
    tables["user_snapshots"] = embed_snapshots(
        model, catalog, snapshots, tables["users"].fallback_vector(), inputs.engine
    )
    seconds["tables"] = round(time.perf_counter() - started, 1)
    parity: dict[str, Any] = {}

    def towers(staging: Path) -> dict[str, Any]:
        """The towers beside the tables, so that they are hashed and versioned with them."""
        if not config.towers or method.encoder is None or model_config.item_tower == "id_table":
            return {"towers": "not exported" + ("" if config.towers else " (export.towers: false)")}
        known = [catalog.index(h) for h in histories.histories if h][: config.parity_users]
        assert matrix is not None and method.encoder is not None
        encoder = method.encoder

        def content_model() -> None:  # beside the towers' TensorFlow conversion
            begun = time.perf_counter()
            parity.update(_content_model(inputs, catalog, encoder, staging / "towers").as_metrics())
            seconds["content_model"] = round(time.perf_counter() - begun, 1)

        begun = time.perf_counter()
        meanwhile = content_model if config.content_model else lambda: None
        result = export_towers(model, matrix, known, staging / "towers", length, meanwhile=meanwhile)
        seconds["towers_and_content_model" if config.content_model else "towers"] = round(
            time.perf_counter() - begun, 1
        )
        parity.update(result.as_metrics())
        described = {"content": _content_description(encoder)} if config.content_model else {}
        return {
            "towers": {**described, **_tower_description(length), "parity_users": len(known), **result.as_metrics()}
        }

    cadence = (
        f"a refresh one time unit after each of a user's events, in partitions of {inputs.day_seconds} time units"
        if every == "event"
        else f"a snapshot every {every} time units from the first event"
    )
    folder = write_export(
        out_dir,
        tables,
        _metadata(inputs, model_config, cadence, content_meta),
        rows_per_part=config.rows_per_part,
        formats=tuple(config.formats),
        artefacts=towers,
        ordinal_time=inputs.ordinal_time,
    )
    users, items = tables["users"], tables["items"]
    metrics = {
        "rows_users": len(users.ids),
        "rows_items": len(items.ids),
        "items_new_in_test_period": len(new_items),
        "rows_user_snapshots": len(snapshots.rows),
        "snapshots": int(snapshots.rows["as_of"].nunique()),
        "snapshot_refreshes": int(snapshots.rows["valid_from"].nunique()),
        "snapshot_every": every,
        "users_with_embedding": int(users.has_embedding.sum()),
        "dim": int(items.embeddings.shape[1]),
        "version": folder.name,
        "snapshot": inputs.period.description,
        "method": config.method,
        **parity,
        "seconds": {**seconds, "total": round(time.perf_counter() - started, 1)},
    }
    log.info(
        "export %s: %d users (%d with history), %d items",
        folder,
        metrics["rows_users"],
        metrics["users_with_embedding"],
        metrics["rows_items"],
    )
    return ExportResult(metrics, cadence, length, method.encoder)


def _metadata(
    inputs: ExportInputs, model_config: PchConfig, cadence: str, content_meta: dict[str, Any] | None
) -> dict[str, Any]:
    """The manifest's metadata: what made the tables and how a reader joins them."""
    return {
        "checkpoint": str(inputs.checkpoint),
        "checkpoint_sha256": sha256_file(inputs.checkpoint),
        "method": inputs.config.method,
        "content_model": content_meta,
        "template": inputs.ceg.template,
        "model_config": model_config,
        "export_config": inputs.config,
        "snapshot_ts": inputs.period.start_ts,
        "snapshot": inputs.period.description,
        "user_history": "the newest interactions before snapshot_ts"
        + (" (positives only)" if inputs.pch.split.positives_only else ""),
        "fallback": f"{inputs.config.fallback} of the users with history; has_embedding = false",
        "items": "every catalog item but those new in the test period (all their events in it): a reader "
        "embeds those from their text (ranking.tables.embed_new_items)",
        "user_snapshots": (
            f"{cadence}; a user's row valid from v is built from their events with ts < v, "
            "written when their history changed; a reader takes each user's row with the "
            "largest valid_from <= its time (as_of <= valid_from: older partitions can be "
            "pruned)"
        ),
    }


def _content_model(inputs: ExportInputs, catalog: Catalog, encoder: str, folder: Path) -> ContentParity:
    """The CEG model of the exported method, as ONNX with its tokenizer, checked on real items spread over
    the catalog."""
    count = inputs.config.content_parity_items
    ordered = inputs.items.set_index("item_id").loc[list(catalog.ids)].reset_index()
    step = max(1, len(ordered) // count)
    sentences = item_sentences(ordered.iloc[::step].head(count), inputs.ceg.template)
    return export_content_model(ContentEncoder(inputs.ceg.encoders[encoder]), sentences, folder, count)


def _content_description(encoder: str) -> dict[str, Any]:
    return {
        "onnx": f"towers/{MODEL}",
        "tokenizer": f"towers/{TOKENIZER}",
        "settings": f"towers/{SETTINGS}",
        "encoder": encoder,
        "inputs": {
            "input_ids": "[batch, tokens] int64, right-padded",
            "attention_mask": "[batch, tokens] int64, 1 for real tokens",
        },
        "output": "content_embedding: the raw CEG embedding the towers take",
    }


def _tower_description(length: int) -> dict[str, Any]:
    return {
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
    }
