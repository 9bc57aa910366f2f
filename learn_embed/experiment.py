"""The paper's retrieval comparisons in one harness: every method is trained on the same split and scored
by the same full-ranking evaluation (H/R/N@K)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from learn_embed.ceg import ContentEncoder, read_embeddings
from learn_embed.config import (
    CegConfig,
    EncoderConfig,
    EvalConfig,
    MethodConfig,
    PchConfig,
    PchStageConfig,
    TrainConfig,
)
from learn_embed.pch import LearnModel
from learn_embed.retrieval import per_user_metrics, top_k
from learn_embed.train import NO_TIME, SequenceData, train
from learnkit.core.fsutil import child, read_json, write_json, write_parquet
from learnkit.core.sql import EngineConfig
from learnkit.data.catalog import Catalog
from learnkit.data.firsts import first_times
from learnkit.data.period import TestPeriodConfig, test_period
from learnkit.data.popularity import item_counts
from learnkit.data.splits import training_item_counts
from learnkit.data.text import TemplateConfig, item_sentences

log = logging.getLogger(__name__)
REFERENCES = ("popularity", "random")  # reference rows ranked by the same evaluator as every method
PER_USER = "per_user.parquet"
PERIOD_PER_USER = "test_period_per_user.parquet"


def examples_to_data(
    examples: pd.DataFrame,
    catalog: Catalog,
    aligned: bool = False,
    window: int = 1,
    clock: EventClock | None = None,
) -> SequenceData:
    """`aligned`: next-item training rows (target[t] follows history[t]); see `SequenceData.from_lists`. With
    a `clock`, each position carries the time of its first positive."""
    return SequenceData.from_lists(
        [catalog.index(h) for h in examples["history"]],
        [catalog.index(t) for t in examples["target"]],
        aligned=aligned,
        window=window,
        target_times=clock.target_times(examples) if clock is not None else None,
    )


@dataclass(frozen=True)
class EventClock:
    """When things happened, for a softmax over the items that exist: each item's first event (`birth`, in
    catalog order; NO_TIME for an item without events) and each (user, item)'s first event."""

    birth: torch.Tensor  # [catalog] int64
    first: pd.Series  # (user_id, item_id) -> ts of the user's first event with the item

    @classmethod
    def of(cls, events: pd.DataFrame, catalog: Catalog, engine: EngineConfig | None = None) -> EventClock:
        """Both from `events`, aggregated in DuckDB under `engine` (`learnkit.data.firsts`)."""
        born = first_times(events, ["item_id"], engine).reindex(catalog.ids)
        known = born.notna().to_numpy()
        birth = torch.full((len(catalog.ids),), NO_TIME, dtype=torch.int64)
        birth[torch.tensor(known)] = torch.tensor(born[known].to_numpy(dtype=np.int64))
        return cls(birth, first_times(events, ["user_id", "item_id"], engine))

    def target_times(self, examples: pd.DataFrame) -> list[list[int]]:
        """Each example's target times (a user's first event with the item: earlier, never later, than the
        one the target stands for, so the mask can only drop negatives, never admit a later item)."""
        flat = examples[["user_id", "target"]].explode("target").dropna()
        keys = pd.MultiIndex.from_arrays([flat["user_id"].to_numpy(), flat["target"].to_numpy()])
        when = self.first.reindex(keys).fillna(NO_TIME).to_numpy(dtype=np.int64)
        counts = examples["target"].map(len).to_numpy()
        return [chunk.tolist() for chunk in np.split(when, np.cumsum(counts)[:-1])] if len(counts) else []


@torch.no_grad()
def user_vectors(model: LearnModel, data: SequenceData, batch: int = 512) -> torch.Tensor:
    """The user embedding at each user's last history position."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(data), batch):
        rows = data.rows(torch.arange(start, min(start + batch, len(data)))).to(device)
        emb = model.user_embeddings(rows.history)
        last = (rows.history >= 0).sum(1) - 1
        out.append(emb[torch.arange(emb.shape[0], device=device), last].cpu())
    return torch.cat(out)


@torch.no_grad()
def item_vectors(model: LearnModel, items: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat(
        [model.item_embeddings(items[s : s + batch].to(device)).cpu() for s in range(0, len(items), batch)]
    )


@dataclass
class Scores:
    """One method's full ranking of the test users, scored on all their targets and on the cold ones."""

    users: list[str]  # test users, in the examples' order
    per_user: dict[str, np.ndarray]  # figure -> [users]
    cold_users: list[str]  # users with at least one cold target
    cold_per_user: dict[str, np.ndarray]  # figure -> [cold users], scored on the cold targets only
    period: Scores | None = None  # the same model scored on the test period (`Comparison.period`), where made

    def means(self) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in self.per_user.items()}

    def cold_means(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"users": len(self.cold_users)}
        out.update(
            {name: float(values.mean()) if len(values) else float("nan") for name, values in self.cold_per_user.items()}
        )
        return out

    def to_frame(self) -> pd.DataFrame:
        """Per-user figures (`cold_` columns are NaN for users without a cold target)."""
        frame = pd.DataFrame({"user_id": self.users, **self.per_user})
        cold = pd.DataFrame({"user_id": self.cold_users, **{f"cold_{k}": v for k, v in self.cold_per_user.items()}})
        return frame.merge(cold, on="user_id", how="left")

    def by_user(self) -> Scores:
        """One row per user: the mean of their rows' figures (all, and cold), for examples of one target each."""

        def mean(users: list[str], figures: dict[str, np.ndarray]) -> tuple[list[str], dict[str, np.ndarray]]:
            frame = pd.DataFrame({"user_id": users, **figures}).groupby("user_id", sort=False).mean()
            return frame.index.tolist(), {f: frame[f].to_numpy() for f in figures}

        users, figures = mean(self.users, self.per_user)
        cold_users, cold = mean(self.cold_users, self.cold_per_user)
        return Scores(users, figures, cold_users, cold)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Scores:
        figures = [c for c in frame.columns if c != "user_id" and not c.startswith("cold_")]
        cold = frame.dropna(subset=[f"cold_{figures[0]}"]) if figures else frame.iloc[:0]
        return cls(
            frame["user_id"].tolist(),
            {f: frame[f].to_numpy() for f in figures},
            cold["user_id"].tolist(),
            {f: cold[f"cold_{f}"].to_numpy() for f in figures},
        )


def evaluate(
    users: torch.Tensor,
    gallery_vectors: torch.Tensor,
    gallery: np.ndarray,
    examples: pd.DataFrame,
    catalog: Catalog,
    config: EvalConfig,
    cold_items: set[int] | None = None,
    as_of: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Scores:
    """Full ranking of `gallery` for each user of `examples` (dot product, the user's history excluded when
    configured), scored on all targets and on the targets in `cold_items` (catalog indices). `as_of`: (each
    catalog item's first time, each example's time): an item is ranked only for examples at or after it."""
    slot = {int(item): g for g, item in enumerate(gallery)}
    exclude = None
    if config.exclude_history:
        exclude = [[slot[p] for p in catalog.index(h) if p in slot] for h in examples["history"]]
    born, when = (as_of[0][torch.from_numpy(gallery)], as_of[1]) if as_of is not None else (None, None)
    ranked = top_k(
        users, gallery_vectors, max(config.ks), exclude=exclude, chunk=config.chunk, born=born, as_of=when
    ).numpy()
    targets = [catalog.index(t) for t in examples["target"]]
    per_user = per_user_metrics(ranked, [[slot[p] for p in t if p in slot] or [-1] for t in targets], config.ks)
    cold = cold_items or set()
    cold_rows = [u for u, t in enumerate(targets) if any(p in cold and p in slot for p in t)]
    cold_per_user = per_user_metrics(
        ranked[cold_rows], [[slot[p] for p in targets[u] if p in cold and p in slot] for u in cold_rows], config.ks
    )
    user_ids = examples["user_id"].tolist()
    return Scores(user_ids, per_user, [user_ids[u] for u in cold_rows], cold_per_user)


def reference_scores(
    kind: str, item_counts: np.ndarray, comparison: Comparison, examples: pd.DataFrame, seed: int
) -> Scores:
    """The reference rows, ranked by the same evaluator: `popularity` (`item_counts`, in catalog order: the
    same list for everyone) or `random` (a fixed random score per user and item)."""
    n, gallery = len(examples), comparison.gallery
    if kind == "popularity":
        users = torch.ones((n, 1), dtype=torch.float64)
        items = torch.from_numpy(item_counts[gallery].astype(np.float64))[:, None]
    elif kind == "random":
        generator = torch.Generator().manual_seed(seed)
        users, items = torch.randn(n, 32, generator=generator), torch.randn(len(gallery), 32, generator=generator)
    else:
        raise ValueError(f"unknown reference {kind!r}")
    return comparison.score(users, items, examples)


@dataclass(frozen=True)
class Comparison:
    """What every row of one comparison shares: the examples, the catalog, the gallery every user's ranking
    covers, the items cold in training, the CEG matrices and how the rows are scored."""

    examples: pd.DataFrame
    catalog: Catalog
    gallery: np.ndarray
    cold_items: set[int]
    content: dict[str, torch.Tensor]  # encoder -> [catalog, dim] CEG embeddings
    eval: EvalConfig
    clock: EventClock | None = None  # when items first exist (None: ordinal time, or the mask turned off)
    period: Comparison | None = None  # the test period scored as retrieval (`period_comparison`), where made
    # one example per target, ranked among the items that exist at its time (the clock's); figures per user
    per_target: bool = False

    @property
    def test(self) -> pd.DataFrame:
        return self.examples[self.examples.part == "test"]

    def score(self, users: torch.Tensor, items: torch.Tensor, examples: pd.DataFrame) -> Scores:
        """Rank the gallery (`items`: its vectors) for `examples`' users, scored on all and on cold targets."""
        as_of = None
        if self.per_target and self.clock is not None:
            times = torch.tensor([t[0] for t in self.clock.target_times(examples)], dtype=torch.int64)
            as_of = (self.clock.birth, times)
        scores = evaluate(users, items, self.gallery, examples, self.catalog, self.eval, self.cold_items, as_of)
        return scores.by_user() if self.per_target else scores


def gallery_items(catalog: Catalog, events: pd.DataFrame, kind: str) -> np.ndarray:
    if kind == "all":
        return np.arange(len(catalog.ids))
    return np.array(sorted(set(catalog.index(events["item_id"].unique().tolist()))))


def run_learn(
    name: str,
    method: MethodConfig,
    model_config: PchConfig,
    train_config: TrainConfig,
    comparison: Comparison,
    out_dir: Path,
    resume: bool,
    aligned: bool,
) -> tuple[dict[str, Any], Scores]:
    """Train one method (its first seed is the model that is kept and exported; `method.extra_seeds` train
    again from other seeds for the spread) and score it on the test users."""

    def train_from(seed: int, label: str, folder: Path) -> tuple[dict[str, Any], Scores]:
        config = replace(train_config, seed=seed)
        return _train_and_score(label, method, model_config, config, comparison, folder, resume, aligned)

    figures, scores = train_from(train_config.seed, name, out_dir)
    if method.extra_seeds:
        runs = {train_config.seed: figures}
        for seed in method.extra_seeds:
            runs[seed] = train_from(seed, f"{name} seed {seed}", out_dir / f"seed-{seed}")[0]
        figures["seeds"] = seed_summary(runs)
    return figures, scores


def seed_summary(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample standard deviation and values of every figure over the seeds."""
    names = [k for k, v in next(iter(runs.values())).items() if isinstance(v, float)]
    out: dict[str, Any] = {"seeds": list(runs)}
    for figure in names:
        values = np.array([runs[s][figure] for s in runs])
        out[figure] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": [float(v) for v in values],
        }
    return out


def _train_and_score(
    name: str,
    method: MethodConfig,
    model_config: PchConfig,
    train_config: TrainConfig,
    comparison: Comparison,
    out_dir: Path,
    resume: bool,
    aligned: bool,
) -> tuple[dict[str, Any], Scores]:
    torch.manual_seed(train_config.seed)
    begun = time.perf_counter()
    examples, catalog, monitored = comparison.examples, comparison.catalog, comparison.eval.monitor_metric
    matrix = comparison.content[method.encoder] if method.input == "content" else None
    model = LearnModel(model_config, len(catalog.ids), matrix)
    clock = comparison.clock if train_config.time_valid_negatives else None
    train_data = examples_to_data(examples[examples.part == "train"], catalog, aligned, train_config.window, clock)
    valid = examples[examples.part == "valid"]
    valid_data = examples_to_data(valid, catalog) if not valid.empty else None
    gallery_t = torch.from_numpy(comparison.gallery)

    def monitor(epoch: int, current: LearnModel) -> dict[str, float]:
        if valid_data is None:
            return {}
        # validation is scored on all its targets; cold items are a test-time slice
        scores = evaluate(
            user_vectors(current, valid_data), item_vectors(current, gallery_t), comparison.gallery, valid, catalog,
            comparison.eval,
        ).means()  # fmt: skip
        return {"epoch": epoch + 1, monitored: scores[monitored]}

    result = train(
        model, train_data, train_config, out_dir, resume=resume, on_epoch_end=monitor, desc=name,
        item_birth=clock.birth if clock is not None else None,
    )  # fmt: skip
    test = comparison.test
    started = time.perf_counter()
    users = user_vectors(model, examples_to_data(test, catalog))
    scores = comparison.score(users, item_vectors(model, gallery_t), test)
    eval_s = time.perf_counter() - started
    in_period = {}
    if comparison.period is not None:
        period = comparison.period
        users = user_vectors(model, examples_to_data(period.examples, catalog))
        items = item_vectors(model, torch.from_numpy(period.gallery))
        scores.period = period.score(users, items, period.examples)
        in_period = {"test_period": {**scores.period.means(), "new_items": scores.period.cold_means()}}
    return {
        **scores.means(),
        "cold_items": scores.cold_means(),
        **in_period,
        "training": {
            "epochs": result.epochs,
            "max_epochs": train_config.epochs,
            "steps": result.steps,
            "loss": result.loss,
            "window": train_config.window,
            "time_valid_negatives": clock is not None,
            "temperature": train_config.temperature,
            "dropout": model_config.dropout,
            "losses": [round(x, 5) for x in result.losses],
            # converged: validation stopped improving (early stopping), not merely "the loss went down"
            "converged": result.stopped_early,
            "sequences_per_s": round(result.sequences_per_s, 1),
            "resumed_from_step": result.resumed_from,
            "valid": result.epoch_metrics,
            "best_epoch": result.best_epoch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "eval_users_per_s": round(len(test) / eval_s, 1),
            "seconds": round(time.perf_counter() - begun, 1),  # training and every scoring of this seed
            "model": asdict(model_config),
        },
    }, scores


def history_text(sentences: list[str], token_counts: list[int], budget: int) -> str:
    """The newest history items whose sentences fit in `budget` tokens, oldest first."""
    kept, used = [], 0
    for sentence, count in zip(reversed(sentences), reversed(token_counts), strict=True):
        if kept and used + count > budget:
            break
        kept.append(sentence)
        used += count
    return " ".join(reversed(kept))


def run_baseline_v1(
    method: MethodConfig,
    encoder_config: EncoderConfig,
    template: TemplateConfig,
    items: pd.DataFrame,
    comparison: Comparison,
    seed: int,
) -> tuple[dict[str, Any], Scores]:
    """Paper Baseline-v1: the frozen LLM reads the concatenated text of the user's history (cut to its
    context, newest items kept) and its pooled output is the user embedding; items are embedded alone."""
    begun = time.perf_counter()
    test, catalog = comparison.test, comparison.catalog
    if len(test) > method.max_users:
        test = test.sample(n=method.max_users, random_state=seed)
    ordered = items.set_index("item_id").loc[catalog.ids].reset_index()
    sentence_of = dict(zip(catalog.ids, item_sentences(ordered, template), strict=True))
    encoder = ContentEncoder(replace(encoder_config, max_tokens=method.context_tokens, batch_size=4))
    tokenizer = encoder.model.tokenizer
    counts = {i: len(tokenizer(s, add_special_tokens=False)["input_ids"]) for i, s in sentence_of.items()}
    texts, truncated = [], 0
    for history in test["history"]:
        text = history_text([sentence_of[i] for i in history], [counts[i] for i in history], method.context_tokens)
        truncated += len(text) < len(" ".join(sentence_of[i] for i in history))
        texts.append(text)
    started = time.perf_counter()
    users = torch.from_numpy(encoder.encode(texts, desc="baseline_v1 users"))
    assert method.encoder is not None
    items_matrix = comparison.content[method.encoder][torch.from_numpy(comparison.gallery)]
    scores = comparison.score(users, items_matrix, test)
    return {
        **scores.means(),
        "cold_items": scores.cold_means(),
        "training": {
            "users_evaluated": len(test),
            "histories_cut_to_context": truncated,
            "context_tokens": method.context_tokens,
            "eval_users_per_s": round(len(test) / (time.perf_counter() - started), 2),
            "seconds": round(time.perf_counter() - begun, 1),
        },
    }, scores


def load_encoder(ceg_dir: Path, encoder: str, catalog: Catalog) -> tuple[torch.Tensor, dict[str, Any]]:
    """One encoder's CEG embeddings in catalog order, with the metadata of the model that made them."""
    ids, matrix, meta = read_embeddings(child(ceg_dir, encoder))
    if ids["item_id"].tolist() != catalog.ids:
        raise ValueError(f"CEG embeddings of {encoder} do not cover the catalog")
    return torch.from_numpy(matrix), meta


def load_content(ceg_dir: Path, encoders: list[str], catalog: Catalog) -> dict[str, torch.Tensor]:
    return {name: load_encoder(ceg_dir, name, catalog)[0] for name in encoders}


@dataclass
class RetrievalRun:
    """Every row of the comparison: the reference rows and each method, with their figures and per-user scores."""

    metrics: dict[str, Any]  # the catalog's figures, then one entry per row
    per_user: dict[str, pd.DataFrame]  # row -> user_id and each figure, one row per test user
    references: tuple[str, ...] = REFERENCES
    # row -> per-user figures in the test period (`cold_` columns: on its new items), where scored
    period_per_user: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class PeriodEvents:
    """Every event of the run, its test period and the items new in it: what scoring the towers (trained
    before the period) on the period's targets needs."""

    events: pd.DataFrame
    in_test: np.ndarray  # [events] bool
    new_items: set[str]

    @classmethod
    def of(cls, events: pd.DataFrame, config: TestPeriodConfig) -> PeriodEvents:
        period = test_period(events, config)
        return cls(events, period.in_test, period.new_items(events))


def period_comparison(
    examples: pd.DataFrame, period: PeriodEvents, catalog: Catalog, base: Comparison, positives_only: bool
) -> tuple[Comparison, np.ndarray]:
    """The test period as a retrieval comparison: its `period` examples (one target each), each ranked among
    the items that exist at the target's time (the clock over every event), the items new in the test period
    as its cold slice; and popularity's counts there (interactions before the period)."""
    before = period.events[~period.in_test]
    if positives_only:
        before = before[before["label"] == 1]
    counts = item_counts(before["item_id"]).reindex(catalog.ids, fill_value=0).to_numpy()
    comparison = replace(
        base,
        examples=examples[examples.part == "period"].reset_index(drop=True),
        gallery=gallery_items(catalog, period.events, base.eval.gallery),
        cold_items=set(catalog.index(sorted(period.new_items))),
        clock=EventClock.of(period.events, catalog),
        per_target=True,
    )
    return comparison, counts


def run_retrieval(
    config: PchStageConfig,
    ceg: CegConfig,
    items: pd.DataFrame,
    events: pd.DataFrame,
    examples: pd.DataFrame,
    content_dir: Path,
    out_dir: Path,
    seed: int,
    rank: int = 0,
    resume: bool = False,
    ordinal_time: bool = False,
    period: PeriodEvents | None = None,
) -> RetrievalRun:
    """Train and score every configured method on one split beside the popularity and random references,
    each method's figures and per-user scores written to `out_dir/<method>/` (a finished method is kept
    on `resume`). `events` are those PCH may see: they define the gallery. With `period` and `period`
    examples, every trained tower is also scored on the test period's targets (not `baseline_v1`, which reads
    each history through the LLM)."""
    catalog = Catalog.of_items(items)
    gallery = gallery_items(catalog, events, config.eval.gallery)
    counts = training_item_counts(examples, config.split.train_examples).reindex(catalog.ids, fill_value=0).to_numpy()
    cold = set(np.flatnonzero(counts == 0).tolist())
    encoders = sorted({m.encoder for m in config.methods.values() if m.encoder})
    clock = None if ordinal_time else EventClock.of(events, catalog)  # positions of a sequence are no times
    content = load_content(content_dir, encoders, catalog)
    comparison = Comparison(examples, catalog, gallery, cold, content, config.eval, clock)
    in_period = None
    if period is not None and (examples.part == "period").any() and not ordinal_time:
        in_period, period_counts = period_comparison(examples, period, catalog, comparison, config.split.positives_only)
        comparison = replace(comparison, period=in_period)
    test = comparison.test
    metrics: dict[str, Any] = {
        "gallery_items": int(len(gallery)),
        "test_users": int(len(test)),
        "cold_items_in_catalog": len(cold),
    }
    scores: dict[str, Scores] = {}
    for kind in REFERENCES:
        scores[kind] = reference_scores(kind, counts, comparison, test, seed)
        metrics[kind] = {**scores[kind].means(), "cold_items": scores[kind].cold_means()}
        if in_period is not None:
            scores[kind].period = reference_scores(kind, period_counts, in_period, in_period.examples, seed)
            metrics[kind]["test_period"] = {
                **scores[kind].period.means(),
                "new_items": scores[kind].period.cold_means(),
            }
    for name, method in config.methods.items():
        out = child(out_dir, name)
        out.mkdir(parents=True, exist_ok=True)
        done = out / "metrics.json"
        if resume and done.is_file() and (out / PER_USER).is_file():
            metrics[name] = read_json(done)
            scores[name] = Scores.from_frame(pd.read_parquet(out / PER_USER))
            if (out / PERIOD_PER_USER).is_file():
                scores[name].period = Scores.from_frame(pd.read_parquet(out / PERIOD_PER_USER))
            log.info("method %s: finished before the interruption, kept", name)
            continue
        log.info("method %s: %s", name, method.kind)
        torch.manual_seed(config.train.seed)
        if method.kind == "baseline_v1":
            if rank != 0:
                continue  # one process reads the LLM over the histories
            assert method.encoder is not None
            metrics[name], scores[name] = run_baseline_v1(
                method, ceg.encoders[method.encoder], ceg.template, items, comparison, seed
            )
        else:
            model_config, train_config = config.method_configs(name)
            aligned = config.split.train_examples == "sequence"
            metrics[name], scores[name] = run_learn(
                name, method, model_config, train_config, comparison, out, resume, aligned
            )
        if rank == 0:
            write_parquet(out / PER_USER, scores[name].to_frame())
            if scores[name].period is not None:
                write_parquet(out / PERIOD_PER_USER, scores[name].period.to_frame())
            write_json(done, metrics[name])
    if in_period is not None:
        metrics["test_period"] = {
            "targets": len(in_period.examples),
            "users": int(in_period.examples["user_id"].nunique()),
            "gallery_items": int(len(in_period.gallery)),
            "new_items": len(period.new_items),
            "targets_on_new_items": int(in_period.examples["target"].map(lambda t: t[0] in period.new_items).sum()),
        }
    return RetrievalRun(
        metrics,
        {name: pd.DataFrame({"user_id": s.users, **s.per_user}) for name, s in scores.items()},
        period_per_user={name: s.period.to_frame() for name, s in scores.items() if s.period is not None},
    )
