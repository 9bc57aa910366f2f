"""The rankers' config: YAML section `ranking` (its `segments` are the test period's, `learnkit.data.period`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from learnkit.core.configload import option
from learnkit.data.period import SegmentConfig


@dataclass
class RankingSamplesConfig:
    negatives: Literal["auto", "logged", "sampled"] = option(
        "auto",
        help=(
            "logged: the data's own negatives (label 0); sampled: popularity-proportional sampled exposures for "
            "implicit-only data; auto: logged when the data has label-0 events, else sampled"
        ),
    )
    negatives_per_positive: int = option(4, help="sampled exposures per conversion")
    popularity_exponent: float = option(
        1.0,
        help=(
            "sampled exposures are weighted by (events in the period) ** this: 1 follows popularity, 0 is uniform"
            " over the items that exist at the sample's time, 0.75 (word2vec's) flattens the head"
        ),
    )
    valid_fraction: float = option(0.1, help="the newest share of the training period, for early stopping")

    def __post_init__(self) -> None:
        if self.negatives_per_positive < 1:
            raise ValueError("negatives_per_positive must be >= 1")
        if not 0.0 <= self.popularity_exponent <= 1.0:
            raise ValueError("popularity_exponent must be in [0, 1]")
        if not 0 < self.valid_fraction < 0.5:
            raise ValueError("valid_fraction must be in (0, 0.5)")


@dataclass
class RankingModelConfig:
    id_dim: int = option(16, help="user and item ID embedding width", least=1)
    main_tower: list[int] = option(factory=lambda: [64, 32], help="layer widths of the main tower")
    aux_tower: list[int] = option(
        factory=lambda: [64, 32], help="layer widths of the auxiliary network; its last layer is the fusion embedding"
    )
    aux_weight: float = option(0.5, help="lambda: total loss = main + lambda x auxiliary")
    user_features: list[str] = option(factory=list, help="categorical columns of users.parquet")
    item_features: list[str] = option(factory=list, help="categorical columns of items.parquet")

    def __post_init__(self) -> None:
        if not self.main_tower or not self.aux_tower or min(self.main_tower + self.aux_tower) < 1:
            raise ValueError("main_tower and aux_tower need at least one positive layer width")
        if self.aux_weight < 0:
            raise ValueError("aux_weight must be >= 0")


@dataclass
class RankingTrainConfig:
    epochs: int = option(20, help="the most epochs")
    batch_size: int = option(512, help="rows per step")
    lr: float = option(1e-3, help="Adam's learning rate")
    patience: int = option(3, help="epochs without a better validation AUC before stopping")
    seed: int = option(0, help="seed of weights and order", least=0)
    table_format: Literal["parquet", "tfrecord"] = option("tfrecord", help="which copy of the export the ranker reads")
    strategy: Literal["none", "mirrored", "multi_worker"] = option("none", help="tf.distribute strategy")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.patience < 1:
            raise ValueError("epochs, batch_size, lr and patience must be positive")


@dataclass
class RankingConfig:
    samples: RankingSamplesConfig = option(factory=RankingSamplesConfig, help="how ranking samples are drawn")
    model: RankingModelConfig = option(factory=RankingModelConfig, help="the rankers")
    train: RankingTrainConfig = option(factory=RankingTrainConfig, help="their training")
    segments: SegmentConfig = option(factory=SegmentConfig, help="paper table 7's segments")
    bootstrap: int = option(500, help="resamples of users for the confidence intervals", least=10)
    wuauc_weight: Literal["samples", "clicks"] = option(
        "samples", help="WUAUC's user weights: test rows or conversions"
    )
