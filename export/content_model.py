"""The CEG model (the frozen LLM with its pooling) as ONNX, so that a ranker process embeds a brand-new item from
its text without torch: `tokenizer.json` (read by the `tokenizers` package), `content.onnx` (`input_ids` and
`attention_mask` [batch, tokens] int64, right-padded -> `content_embedding` [batch, dim], pooled over the real
tokens and L2-normalised, exactly as `learn_embed.ceg` does it) and `content.json` (how the text is cut and
padded). The item tower beside it then maps the content embedding to the LEARN item embedding.

The LLM is exported with torch's TorchScript tracer, not `torch.export` as the small towers are: on SmolLM2 the
tracer takes about 10 s against 70-110 s (most of them onnxscript's graph rewriter, single-threaded), and its
graph is as close to the torch CEG (largest difference on 300 MovieLens films 4.2e-7, against 4.8e-7; on the
demo's 64 parity films 4.5e-7, against 3.9e-7). The tracer records one path through the model's Python, so
the example it traces holds a padded row.
The file is still cached across runs under `cache_root()/onnx/`, keyed by the model's content fingerprint, the
pooling and the exporting code itself; every use, cached or not, is checked against the torch CEG on real items,
and a cached file that fails the check is exported again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.content_inputs import MODEL, SETTINGS, TOKENIZER, tokenize
from export.towers import OPSET, onnx_outputs
from learn_embed.ceg import ContentEncoder
from learnkit.core.errors import ConfigError, DataError, StorageError
from learnkit.core.fsutil import atomic_path, cache_root, write_json

log = logging.getLogger(__name__)
CACHED_PARITY = 1e-4  # a cached model further than this from the torch CEG is exported again


class PooledContentModel(nn.Module):
    """The backbone's last hidden layer, pooled over the real tokens and L2-normalised."""

    def __init__(self, backbone: nn.Module, pooling: str, is_decoder: bool) -> None:
        super().__init__()
        self.backbone, self.pooling, self.is_decoder = backbone, pooling, is_decoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"use_cache": False} if self.is_decoder else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        elif self.pooling == "last":  # right padding: the last real token sits at length - 1
            last = attention_mask.sum(1).clamp(min=1) - 1
            pooled = hidden[torch.arange(hidden.shape[0]), last]
        else:
            pooled = hidden[:, 0]
        pooled = pooled.float()
        return pooled / torch.sqrt((pooled * pooled).sum(-1, keepdim=True)).clamp(min=1e-12)


@dataclass
class ContentParity:
    items: int
    max_abs: float  # ONNX Runtime against the torch CEG on the same sentences

    def as_metrics(self) -> dict[str, float | int]:
        return {"content_parity_items": self.items, "content_parity_onnx_max_abs": self.max_abs}


def export_content_model(
    encoder: ContentEncoder, sentences: list[str], folder: Path, parity_items: int
) -> ContentParity:
    """Write the tokenizer, the pooled model as ONNX and its settings into `folder`; check that the exported
    tokenizer gives the torch tokenizer's ids and that ONNX Runtime gives the torch CEG's vectors on the first
    `parity_items` of `sentences` (real items)."""
    if encoder.config.precision != "float":
        raise ConfigError(
            f"key 'export.content_model': the encoder runs at precision {encoder.config.precision}, which has no "
            "ONNX form here; set export.content_model: false, or export a float encoder"
        )
    loaded = encoder.model
    backend = getattr(loaded.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise DataError(f"{loaded.name}: the tokenizer has no `tokenizers` (fast) form to export")
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / TOKENIZER))
    settings = {
        "max_tokens": encoder.config.max_tokens,
        "pooling": encoder.config.pooling,
        "pad_id": int(loaded.tokenizer.pad_token_id),
        "dim": loaded.hidden_size,
        "model": loaded.name,
        "model_fingerprint": loaded.fingerprint,
        "padding": "right",
        "inputs": {"input_ids": "[batch, tokens] int64", "attention_mask": "[batch, tokens] int64"},
        "output": "content_embedding [batch, dim] float32, L2-normalised",
    }
    write_json(folder / SETTINGS, settings)
    sample = sentences[:parity_items]
    ids, mask = tokenize(folder / TOKENIZER, settings, sample)
    want_ids = loaded.tokenizer(sample, truncation=True, max_length=encoder.config.max_tokens, add_special_tokens=True)[
        "input_ids"
    ]
    for row, tokens in enumerate(want_ids):
        if ids[row, : mask[row].sum()].tolist() != tokens:
            raise DataError(
                f"{loaded.name}: the exported tokenizer cuts item sentence {row} differently from the torch tokenizer"
            )
    want = encoder.encode(sample, progress=False)

    def parity() -> float:
        got = onnx_outputs(folder / MODEL, {"input_ids": ids, "attention_mask": mask})
        return float(np.abs(got - want).max()) if len(sample) else 0.0

    cached = _cached_model(settings)
    if cached.is_file():
        shutil.copyfile(cached, folder / MODEL)
        try:
            difference = parity()
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry of any kind is exported again
            log.warning("cached content model %s is unreadable (%s); exported again", cached, exc)
            difference = float("inf")
        if difference <= CACHED_PARITY:
            log.info("content model from the cache (%s)", cached.parent.name)
            return ContentParity(len(sample), difference)
        log.warning("cached content model %s is %.1e from the torch CEG; exported again", cached, difference)
    module = PooledContentModel(loaded.backbone, encoder.config.pooling, loaded.is_decoder).float().eval()
    lengths = mask.sum(1)
    example = [int(lengths.argmax()), int(lengths.argmin())]  # the longest and the shortest: a padded row
    with torch.inference_mode(False), torch.no_grad():
        export_traced(module, (torch.from_numpy(ids[example]), torch.from_numpy(mask[example])), folder / MODEL)
    difference = parity()
    if difference <= CACHED_PARITY:  # only a model that passes is kept for later runs
        try:
            with atomic_path(cached) as tmp:
                shutil.copyfile(folder / MODEL, tmp)
        except (OSError, StorageError) as exc:  # the export stands without the cache
            log.warning("content model not cached at %s: %s", cached, exc)
    return ContentParity(len(sample), difference)


def export_traced(module: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    """`module(input_ids, attention_mask)` as ONNX through the TorchScript tracer, batch and tokens dynamic."""
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    with warnings.catch_warnings():  # the tracer's deprecation and its notes on Python branches it recorded
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask"],
            output_names=["content_embedding"],
            dynamic_axes={**axes, "content_embedding": {0: "batch"}},
        )


def _cached_model(settings: dict) -> Path:
    """Where the ONNX file of this model, pooling and exporting code is cached."""
    key = {
        "model": settings["model_fingerprint"],
        "pooling": settings["pooling"],
        "torch": torch.__version__,
        "code": inspect.getsource(PooledContentModel) + inspect.getsource(export_traced),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "onnx" / f"content-{digest}" / MODEL
