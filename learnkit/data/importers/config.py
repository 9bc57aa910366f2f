"""Which dataset to import and how strictly: YAML section `data`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from learnkit.core.configload import option
from learnkit.data.schema import (
    DEFAULT_MAX_PRICE,
    DEFAULT_MAX_TEXT_CHARS,
    DEFAULT_MAX_TS,
    DEFAULT_MIN_TS,
    ValidationRules,
)


@dataclass
class DataConfig:
    format: str = option(
        "ml-100k", help="importer: ml-100k | ml-100k-grouplens | amazon-reviews | unisrec | mind | canonical"
    )
    path: str | None = option(None, help="folder with the dataset's files; null means `learn-kit data fetch <fetch>`")
    fetch: str | None = option(
        None, help="a known dataset to find or download and verify instead of `path` (e.g. ml-100k)"
    )
    on_error: Literal["fail", "drop"] = option(
        "fail", help="a rejected row stops the import (fail) or goes to data/rejected.parquet (drop)"
    )
    options: dict[str, Any] = option(
        factory=dict, help="importer options, e.g. positive_min_rating for MovieLens and Amazon"
    )
    max_price: float = option(DEFAULT_MAX_PRICE, help="prices above this are rejected")
    min_ts: int = option(DEFAULT_MIN_TS, help="timestamps before this (unix seconds) are rejected")
    max_ts: int = option(DEFAULT_MAX_TS, help="timestamps after this (unix seconds) are rejected")
    max_text_chars: int = option(DEFAULT_MAX_TEXT_CHARS, help="a longer text cell is rejected, never cut")

    def __post_init__(self) -> None:
        if self.path is None and self.fetch is None:
            raise ValueError("set data.path (a folder) or data.fetch (a dataset name, e.g. ml-100k)")
        # bounds that hold for the whole file, refused once here rather than as every row's rejection
        if self.max_price <= 0:
            raise ValueError(f"max_price {self.max_price} would reject every price; it must be > 0")
        if self.min_ts >= self.max_ts:
            raise ValueError(f"min_ts {self.min_ts} >= max_ts {self.max_ts} would reject every event")
        if self.max_text_chars < 1:
            raise ValueError(f"max_text_chars {self.max_text_chars} would reject every text; it must be >= 1")

    def rules(self) -> ValidationRules:
        """The row checks this config asks for."""
        return ValidationRules(
            on_error=self.on_error,
            max_price=self.max_price,
            min_ts=self.min_ts,
            max_ts=self.max_ts,
            max_text_chars=self.max_text_chars,
        )
