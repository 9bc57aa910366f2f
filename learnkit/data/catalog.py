"""The item catalog: every item in one fixed order, the index that embeddings, tensors and tables share."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class Catalog:
    """Items in a fixed order (sorted ids): the index every tensor uses."""

    ids: list[str]
    position: dict[str, int]

    @classmethod
    def from_ids(cls, ids: list[str]) -> Catalog:
        return cls(ids, {item: i for i, item in enumerate(ids)})

    @classmethod
    def of_items(cls, items: pd.DataFrame) -> Catalog:
        """The catalog of an items table (its `item_id` column, sorted)."""
        return cls.from_ids(sorted(items["item_id"].tolist()))

    def index(self, items: list[str]) -> list[int]:
        return [self.position[i] for i in items]
