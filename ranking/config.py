"""The rankers' config: YAML section `ranking` (its `segments` are the test period's, `learnkit.data.period`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from learnkit.core.configload import PlainName, option
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
class CandidateConfig:
    """A ranker trained beside the ID baseline on the same samples. The diagnosis variants and the residual
    integration are candidates; the shipped `learn` ranker is the one with the best validation UAUC."""

    inputs: Literal["vectors", "similarity", "both", "none"] = option(
        "vectors",
        help=(
            "what it reads of the LEARN features: the user and item vectors (paper Fig. 5), their user . item "
            "similarity, both, or none (another baseline)"
        ),
    )
    residual: bool = option(
        False,
        help=(
            "the LEARN branch as a residual on the trained baseline: warm-started from the baseline's weights, the "
            "branch's last layer zero-initialised, so that it starts as the baseline; early stopping on "
            "validation UAUC with the untrained start as the first candidate epoch"
        ),
    )
    aux_weight: float | None = option(None, help="lambda of the auxiliary CVR loss (null: ranking.model.aux_weight)")
    learn_dropout: float = option(0.0, help="dropout on the LEARN inputs while training")
    user_features: list[str] | None = option(None, help="the user columns it reads (null: ranking.model.user_features)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.learn_dropout < 1.0:
            raise ValueError(f"learn_dropout must be in [0, 1), got {self.learn_dropout}")
        if self.aux_weight is not None and self.aux_weight < 0:
            raise ValueError("aux_weight must be >= 0")
        if self.residual and self.inputs == "none":
            raise ValueError("a residual candidate needs LEARN inputs (inputs: vectors, similarity or both)")


def _default_candidates() -> dict[str, CandidateConfig]:
    return {
        "residual": CandidateConfig(inputs="both", residual=True),
        "fig5": CandidateConfig(inputs="vectors"),
        "fig5_similarity": CandidateConfig(inputs="both"),
    }


RESERVED = ("baseline", "learn", "popularity")  # the baseline, the shipped winner and the reference row


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
    candidates: dict[PlainName, CandidateConfig] = option(
        factory=_default_candidates,
        help=(
            "the rankers trained beside the ID baseline, by name; the one with the best validation UAUC ships as "
            "`learn` (its SavedModel, its test figures and the A/B arm)"
        ),
    )
    seeds: list[int] = option(
        factory=list,
        help=(
            "more seeds of ranking.train.seed's kind: the baseline and every candidate trained again from each, "
            "with validation and test UAUC reported as mean and spread (the intervals use ranking.train.seed)"
        ),
    )

    def __post_init__(self) -> None:
        if not self.learn_candidates:
            raise ValueError("candidates: name at least one ranker that reads the LEARN features (inputs not none)")
        clash = sorted(set(self.candidates) & set(RESERVED))
        if clash:
            raise ValueError(f"candidates: {clash[0]!r} is reserved ({', '.join(RESERVED)}); choose another name")
        if any(s < 0 for s in self.seeds):
            raise ValueError("seeds must be >= 0")
        for name, candidate in self.candidates.items():
            if candidate.residual and candidate.user_features not in (None, self.model.user_features):
                raise ValueError(f"candidates.{name}: a residual ranker reads the baseline's user_features")

    @property
    def learn_candidates(self) -> list[str]:
        """The candidates that read LEARN features: the shipped `learn` is one of them."""
        return [name for name, c in self.candidates.items() if c.inputs != "none"]

    def candidate_model(self, name: str) -> RankingModelConfig:
        """The model config one candidate trains with: ranking.model with the candidate's own choices."""
        candidate = self.candidates[name]
        return dataclasses.replace(
            self.model,
            aux_weight=self.model.aux_weight if candidate.aux_weight is None else candidate.aux_weight,
            user_features=self.model.user_features if candidate.user_features is None else candidate.user_features,
        )
