"""The export's config: YAML section `export`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from learnkit.core.configload import option


@dataclass
class ExportConfig:
    method: str = option("learn_llm", help="the pch method whose towers embed the users and items")
    formats: list[Literal["parquet", "tfrecord"]] = option(
        factory=lambda: ["parquet", "tfrecord"],
        help="table formats; parquet is the verified reference copy and required",
    )
    rows_per_part: int = option(100_000, help="rows per part file")
    fallback: Literal["mean", "zero"] = option(
        "mean", help="users without history before the test period: the mean of the other users' embeddings (flagged)"
    )
    towers: bool = option(
        True,
        help="the user and item towers as ONNX and as TensorFlow SavedModels, with parity checks (content methods)",
    )
    parity_users: int = option(512, help="real user histories the parity is measured on (and every item)", least=1)
    content_model: bool = option(
        True,
        help=(
            "the CEG model with its pooling as ONNX beside the towers, with its tokenizer: a ranker embeds a "
            "brand-new item from its text without torch (ranking.tables.embed_new_items); parity on this many "
            "real items"
        ),
    )
    content_parity_items: int = option(256, help="real items the ONNX CEG is checked on against the torch CEG")
    snapshot_every: int | Literal["event"] | None = option(
        None,
        help=(
            "point-in-time user snapshots (table `user_snapshots`, partitioned by as_of): one every this many "
            "time units from the first event; null: test_period.day_seconds (one day, or one position of ordinal "
            'time); "event": a refresh one time unit after each of a user\'s events (rows partitioned by '
            "day_seconds)"
        ),
    )

    def __post_init__(self) -> None:
        if "parquet" not in self.formats:
            raise ValueError("formats must include parquet (the verified reference copy)")
        if isinstance(self.snapshot_every, int) and self.snapshot_every < 1:
            raise ValueError("snapshot_every must be >= 1 or 'event'")
        if self.rows_per_part < 1 or self.content_parity_items < 1:
            raise ValueError("rows_per_part and content_parity_items must be >= 1")
