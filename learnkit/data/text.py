"""One content sentence per item from its six aspects (paper Fig. 4); missing aspects are left out. Plain
pandas: the CEG (torch) and a ranker embedding a new item (no torch) render the same sentence."""

from __future__ import annotations

import math
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from learnkit.core.configload import option
from learnkit.core.fsutil import sha256_text

ITEM_FIELDS = ("title", "category", "brand", "price", "keywords", "attributes")


@dataclass
class TemplateConfig:
    """One sentence per item: each part names one item field; parts whose field is missing are dropped."""

    parts: list[str] = option(
        factory=lambda: [
            "Title: {title}",
            "Category: {category}",
            "Brand: {brand}",
            "Price: ${price:.2f}",
            "Keywords: {keywords}",
            "Attributes: {attributes}",
        ],
        help="one part per aspect, each naming one item field (title, category, brand, price, keywords, attributes)",
    )
    separator: str = option(". ", help="between the parts")
    suffix: str = option(".", help="after the last part")

    def __post_init__(self) -> None:
        for part in self.parts:
            names = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
            if len(names) != 1 or names[0] not in ITEM_FIELDS:
                raise ValueError(f"template part {part!r} must name exactly one of {', '.join(ITEM_FIELDS)}")


def _present(value: Any) -> bool:
    if value is None or value is pd.NA:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def item_sentence(item: dict[str, Any], template: TemplateConfig) -> str:
    parts = []
    for part in template.parts:
        (name,) = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
        value = item.get(name)
        if _present(value):
            parts.append(part.format(**{name: value.strip() if isinstance(value, str) else value}))
    return template.separator.join(parts) + (template.suffix if parts else "")


def item_sentences(items: pd.DataFrame, template: TemplateConfig) -> list[str]:
    return [item_sentence(row, template) for row in items.to_dict("records")]


def text_hashes(sentences: Iterable[str]) -> list[str]:
    return [sha256_text(s) for s in sentences]
