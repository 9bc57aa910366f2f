"""The export's report section: the tables written, how user snapshots are refreshed, and the towers'
parity with PyTorch."""

from __future__ import annotations

from export.config import ExportConfig
from export.content_inputs import MODEL, TOKENIZER
from export.features import ExportResult
from learnkit.core.formatting import md_table


def export_report(result: ExportResult, config: ExportConfig) -> str:
    metrics, formats = result.metrics, ", ".join(config.formats)
    dim, snapshot_rows = metrics["dim"], metrics["rows_user_snapshots"]
    text = (
        "## Export: LEARN feature tables\n\n"
        f"Version `{metrics['version']}` of method `{config.method}`. Each user is embedded from the history "
        f"before their test period ({metrics['snapshot']}).\n\n"
        + md_table(
            ["table", "rows", "with embedding", "dim", "formats"],
            [
                ["users", metrics["rows_users"], metrics["users_with_embedding"], dim, formats],
                ["user_snapshots", snapshot_rows, snapshot_rows, dim, formats],
                ["items", metrics["rows_items"], metrics["rows_items"], dim, formats],
            ],
        )
        + f"\nUsers with no interaction before the snapshot carry the {config.fallback} fallback and "
        "`has_embedding = false`. `user_snapshots` holds the point-in-time vectors the ranker joins to "
        f"each sample: {result.cadence} ({metrics['snapshots']} partitions `user_snapshots/as_of=<time>/`), "
        "a user's row valid from `valid_from` built only from their events before it, written when their "
        "history changed since their previous row (a reader carries the last one forward).\n"
    )
    if "parity_onnx_max_abs" in metrics:
        text += (
            "\nTowers: `towers/user.onnx` and `towers/item.onnx` (dynamic batch and history length) and the "
            f"TensorFlow SavedModels `towers/user_tf` (histories padded to {result.length}) and `towers/item_tf`. "
            f"Largest difference from PyTorch on {min(config.parity_users, metrics['users_with_embedding'])} "
            f"real users and all {metrics['rows_items']} items: onnxruntime {metrics['parity_onnx_max_abs']:.1e}, "
            f"TensorFlow {metrics['parity_tf_max_abs']:.1e}.\n"
        )
    if "content_parity_onnx_max_abs" in metrics:
        text += (
            f"\nThe CEG model of `{result.encoder}` with its pooling: `towers/{MODEL}` (dynamic batch and "
            f"length) and its tokenizer `towers/{TOKENIZER}`, so that a ranker embeds a new item from its text "
            "without torch (`ranking.tables.embed_new_items`). Largest difference from the torch CEG on "
            f"{metrics['content_parity_items']} real items: {metrics['content_parity_onnx_max_abs']:.1e}.\n"
        )
    return text
