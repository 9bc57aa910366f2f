"""The paper's retrieval comparisons in one harness: every method is trained on the same split and scored
by the same full-ranking evaluation (H/R/N@K)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from learn_embed.ceg import ContentEncoder, read_embeddings
from learn_embed.pch import LearnModel
from learn_embed.retrieval import retrieval_metrics, top_k
from learn_embed.text import item_sentences
from learn_embed.train import SequenceData, train
from learnkit.config import EncoderConfig, EvalConfig, MethodConfig, PchConfig, TemplateConfig, TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Catalog:
    """Items in a fixed order (sorted ids): the index every tensor uses."""

    ids: list[str]
    position: dict[str, int]

    @classmethod
    def from_ids(cls, ids: list[str]) -> "Catalog":
        return cls(ids, {item: i for i, item in enumerate(ids)})

    def index(self, items: list[str]) -> list[int]:
        return [self.position[i] for i in items]


def examples_to_data(examples: pd.DataFrame, catalog: Catalog) -> SequenceData:
    return SequenceData.from_lists([catalog.index(h) for h in examples["history"]],
                                   [catalog.index(t) for t in examples["target"]])


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
    return torch.cat([model.item_embeddings(items[s:s + batch].to(device)).cpu()
                      for s in range(0, len(items), batch)])


def evaluate(users: torch.Tensor, gallery_vectors: torch.Tensor, gallery: np.ndarray, examples: pd.DataFrame,
             catalog: Catalog, config: EvalConfig) -> dict[str, float]:
    slot = {int(item): g for g, item in enumerate(gallery)}
    targets = [[slot[p] for p in catalog.index(t) if p in slot] or [-1] for t in examples["target"]]
    exclude = None
    if config.exclude_history:
        exclude = [[slot[p] for p in catalog.index(h) if p in slot] for h in examples["history"]]
    ranked = top_k(users, gallery_vectors, max(config.ks), exclude=exclude, chunk=config.chunk).numpy()
    return retrieval_metrics(ranked, targets, config.ks)


def gallery_items(catalog: Catalog, events: pd.DataFrame, kind: str) -> np.ndarray:
    if kind == "all":
        return np.arange(len(catalog.ids))
    return np.array(sorted(set(catalog.index(events["item_id"].unique().tolist()))))


def run_learn(name: str, method: MethodConfig, model_config: PchConfig, train_config: TrainConfig,
              eval_config: EvalConfig, examples: pd.DataFrame, catalog: Catalog, gallery: np.ndarray,
              content: dict[str, torch.Tensor], out_dir: Path, resume: bool) -> dict[str, Any]:
    torch.manual_seed(train_config.seed)
    matrix = content[method.encoder] if method.input == "content" else None
    model = LearnModel(model_config, len(catalog.ids), matrix)
    train_data = examples_to_data(examples[examples.part == "train"], catalog)
    valid = examples[examples.part == "valid"]
    valid_data = examples_to_data(valid, catalog) if not valid.empty else None
    gallery_t = torch.from_numpy(gallery)

    def monitor(epoch: int, current: LearnModel) -> dict[str, float]:
        if valid_data is None:
            return {}
        scores = evaluate(user_vectors(current, valid_data),
                          item_vectors(current, gallery_t), gallery, valid, catalog, eval_config)
        return {"epoch": epoch + 1, eval_config.monitor_metric: scores[eval_config.monitor_metric]}

    result = train(model, train_data, train_config, out_dir, resume=resume, on_epoch_end=monitor, desc=name)
    test = examples[examples.part == "test"]
    started = time.perf_counter()
    users = user_vectors(model, examples_to_data(test, catalog))
    scores = evaluate(users, item_vectors(model, gallery_t), gallery, test, catalog, eval_config)
    eval_s = time.perf_counter() - started
    finite = bool(np.isfinite(result.losses).all()) if result.losses else False
    converged = finite and len(result.losses) > 1 and result.losses[-1] < result.losses[0]
    return {**scores, "training": {
        "epochs": result.epochs, "steps": result.steps, "losses": [round(x, 5) for x in result.losses],
        "converged": converged, "sequences_per_s": round(result.sequences_per_s, 1),
        "resumed_from_step": result.resumed_from, "valid": result.epoch_metrics, "best_epoch": result.best_epoch,
        "parameters": sum(p.numel() for p in model.parameters()), "eval_users_per_s": round(len(test) / eval_s, 1),
        "model": asdict(model_config)}}


def history_text(sentences: list[str], token_counts: list[int], budget: int) -> str:
    """The newest history items whose sentences fit in `budget` tokens, oldest first."""
    kept, used = [], 0
    for sentence, count in zip(reversed(sentences), reversed(token_counts)):
        if kept and used + count > budget:
            break
        kept.append(sentence)
        used += count
    return " ".join(reversed(kept))


def run_baseline_v1(method: MethodConfig, encoder_config: EncoderConfig, template: TemplateConfig,
                    items: pd.DataFrame, examples: pd.DataFrame, catalog: Catalog, gallery: np.ndarray,
                    item_matrix: torch.Tensor, eval_config: EvalConfig, seed: int) -> dict[str, Any]:
    """Paper Baseline-v1: the frozen LLM reads the concatenated text of the user's history (cut to its
    context, newest items kept) and its pooled output is the user embedding; items are embedded alone."""
    test = examples[examples.part == "test"]
    if len(test) > method.max_users:
        test = test.sample(n=method.max_users, random_state=seed)
    ordered = items.set_index("item_id").loc[catalog.ids].reset_index()
    sentence_of = dict(zip(catalog.ids, item_sentences(ordered, template)))
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
    scores = evaluate(users, item_matrix[torch.from_numpy(gallery)], gallery, test, catalog, eval_config)
    return {**scores, "training": {"users_evaluated": len(test), "histories_cut_to_context": truncated,
                                   "context_tokens": method.context_tokens,
                                   "eval_users_per_s": round(len(test) / (time.perf_counter() - started), 2)}}


def load_content(ceg_dir: Path, encoders: list[str], catalog: Catalog) -> dict[str, torch.Tensor]:
    out = {}
    for name in encoders:
        ids, matrix, _ = read_embeddings(ceg_dir / name)
        if ids["item_id"].tolist() != catalog.ids:
            raise ValueError(f"CEG embeddings of {name} do not cover the catalog")
        out[name] = torch.from_numpy(matrix)
    return out
