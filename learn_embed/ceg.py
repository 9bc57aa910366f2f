"""CEG, the content-embedding generator (paper section 3.1): a frozen LLM reads each item's sentence;
the last hidden layer is pooled over non-padding tokens (mean by default; last-token, or [CLS] for
encoder models) and L2-normalised.

Outputs are Parquet parts `part-RRRRR-of-WWWWW.parquet` (item_id, embedding, text_hash) so that the
stage can run sharded under torchrun, one part per rank. A cache keyed by (model fingerprint, template,
pooling, max tokens) and the sentence's hash means a re-run encodes only new or changed items.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers import PreTrainedTokenizerBase

from learn_embed.config import EncoderConfig
from learn_embed.models import LoadedModel, ModelIdentity, load_model, load_tokenizer, model_identity
from learnkit.core.batches import map_table
from learnkit.core.errors import DataError
from learnkit.core.fsutil import stable_hash, write_parquet
from learnkit.core.progress import progress_bar
from learnkit.core.sql import EngineConfig
from learnkit.data.text import TemplateConfig, item_sentences, text_hashes

log = logging.getLogger(__name__)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states [batch, tokens, dim] over real tokens (mask 1) and L2-normalise."""
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    elif pooling == "last":  # right padding: the last real token sits at length - 1
        last = mask.sum(1).long().clamp(min=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0]), last]
    elif pooling == "cls":
        pooled = hidden[:, 0]
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


class ContentEncoder:
    """Encodes sentences with a frozen model; the model loads on first use (never for a cache hit)."""

    def __init__(self, config: EncoderConfig, identity: ModelIdentity | None = None) -> None:
        self.config = config
        self.identity = identity or model_identity(config.model, config.dtype)
        self._model: LoadedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None

    def __getstate__(self) -> dict:
        """Pickled (to a Ray actor) without the loaded model: each worker loads its own on first use."""
        return {**self.__dict__, "_model": None, "_tokenizer": None}

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The model's tokenizer, loaded alone when the model is not: counting tokens needs no weights."""
        if self._model is not None:
            return self._model.tokenizer
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config.model, self.identity)
        return self._tokenizer

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            if self.config.threads:
                torch.set_num_threads(self.config.threads)
            config = self.config
            self._model = load_model(config.model, config.dtype, config.device, self.identity, config.precision)
        return self._model

    def token_lengths(self, sentences: list[str]) -> list[int]:
        """Each sentence's length in tokens before truncation (special tokens included)."""
        if not sentences:
            return []
        return [len(t) for t in self.tokenizer(sentences, add_special_tokens=True)["input_ids"]]

    def _tokens(self, sentences: list[str]) -> list[list[int]]:
        """Each sentence's token ids as the encoder reads them: truncated to `max_tokens`."""
        return self.tokenizer(sentences, truncation=True, max_length=self.config.max_tokens, add_special_tokens=True)[
            "input_ids"
        ]

    def longest_first(self, sentences: list[str]) -> np.ndarray:
        """The order `encode` reads sentences in: longest first (stable), so that batches of similar length
        waste little on padding and the peak comes first."""
        return _longest_first(self._tokens(sentences))

    def encode(self, sentences: list[str], progress: bool = True, desc: str = "CEG") -> np.ndarray:
        model = self.model
        if not sentences:
            return np.zeros((0, model.hidden_size), dtype=np.float32)
        tokens = self._tokens(sentences)
        order = _longest_first(tokens)
        out = np.zeros((len(sentences), model.hidden_size), dtype=np.float32)
        bar = progress_bar(total=len(sentences), desc=desc, unit="item", enabled=progress)
        with torch.inference_mode():
            for start in range(0, len(order), self.config.batch_size):
                batch_idx = order[start : start + self.config.batch_size]
                batch = model.tokenizer.pad({"input_ids": [tokens[i] for i in batch_idx]}, return_tensors="pt")
                ids = batch["input_ids"].to(self.config.device)
                mask = batch["attention_mask"].to(self.config.device)
                extra = {"use_cache": False} if model.is_decoder else {}  # no KV cache: one pass only
                hidden = model.backbone(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
                out[batch_idx] = pool(hidden, mask, self.config.pooling).cpu().numpy()
                bar.update(len(batch_idx))
        bar.close()
        return out


def _longest_first(tokens: list[list[int]]) -> np.ndarray:
    return np.argsort([-len(t) for t in tokens], kind="stable")


class SentenceEncoder:
    """`map_batches`' model: a batch of (text_hash, sentence) -> (text_hash, embedding), the encoder loaded
    once per worker."""

    def __init__(self, encoder: ContentEncoder) -> None:
        self.encoder = encoder

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors = self.encoder.encode(batch.column("sentence").to_pylist(), progress=False)
        return pa.table({"text_hash": batch.column("text_hash"), "embedding": _fixed_list(vectors)})


def encode_in_batches(
    encoder: ContentEncoder,
    todo: list[tuple[str, str]],
    engine: EngineConfig,
    progress: bool = False,
    desc: str = "CEG",
    batch_rows: int = 4096,
) -> np.ndarray:
    """Embed `todo` (text_hash, sentence) through batch inference (`learnkit.core.batches`): in this process,
    or on Ray actors under `engine.kind: ray`. The sentences go longest first in batches of whole encoder
    batches, so that each encoder batch holds the sentences one `encode` call over all of them would put in
    it, and the embeddings are the same."""
    if not todo:  # every embedding was cached: no model is loaded
        return np.zeros((0, 0), dtype=np.float32)
    order = encoder.longest_first([sentence for _, sentence in todo])
    table = pa.table({"text_hash": [todo[i][0] for i in order], "sentence": [todo[i][1] for i in order]})
    rows = encoder.config.batch_size * max(1, batch_rows // encoder.config.batch_size)
    args = (encoder,)  # in this process the loaded model itself; a Ray actor loads its own
    result = map_table(table, SentenceEncoder, args, engine, rows, progress, desc)
    position = {h: i for i, (h, _) in enumerate(todo)}
    vectors = _matrix(result.column("embedding"))
    matrix = np.zeros((len(todo), vectors.shape[1]), dtype=np.float32)
    matrix[[position[h] for h in result.column("text_hash").to_pylist()]] = vectors
    return matrix


class EmbeddingCache:
    """Append-only Parquet parts of (text_hash, embedding) under one folder per cache key."""

    def __init__(self, root: Path, key: dict) -> None:
        self.folder = Path(root) / "ceg" / stable_hash(key)[:32]
        self.key = key

    def lookup(self, hashes: list[str]) -> dict[str, np.ndarray]:
        """Cached embeddings of these text hashes. A part that cannot be read, or rows that are not finite or
        not as wide as the first readable part's, are skipped with a warning: those items are encoded again."""
        if not self.folder.is_dir():
            return {}
        wanted = set(hashes)
        found: dict[str, np.ndarray] = {}
        dim: int | None = None
        for part in sorted(self.folder.glob("part-*.parquet")):
            try:
                table = pq.read_table(part)
                part_hashes = table.column("text_hash").to_pylist()
                matrix = _matrix(table.column("embedding"))
            except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
                log.warning("CEG cache part %s is unreadable (%s); its items are encoded again", part, exc)
                continue
            dim = matrix.shape[1] if dim is None else dim
            if matrix.shape[1] != dim:
                log.warning("CEG cache part %s holds %d-wide vectors, not %d; ignored", part, matrix.shape[1], dim)
                continue
            finite = np.isfinite(matrix).all(axis=1)
            if not finite.all():
                log.warning(
                    "CEG cache part %s: %d vectors with NaN or inf ignored; encoded again", part, int((~finite).sum())
                )
            for i, h in enumerate(part_hashes):
                if h in wanted and finite[i]:
                    found[h] = matrix[i]
        return found

    def add(self, hashes: list[str], embeddings: np.ndarray) -> None:
        if not hashes:
            return
        check_finite(embeddings, f"new CEG cache entries under {self.folder}")
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.exists():
            key_file.write_text(json.dumps(self.key, indent=2, sort_keys=True))
        write_parquet(
            self.folder / f"part-{uuid.uuid4().hex}.parquet",
            pa.table({"text_hash": hashes, "embedding": _fixed_list(embeddings)}),
        )


def check_finite(matrix: np.ndarray, where: str, ids: list[str] | None = None) -> None:
    """Refuse embeddings with NaN or inf: they train a model to a meaningless loss without an error."""
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1)) if matrix.size else np.array([], dtype=int)
    if len(bad):
        first = ids[bad[0]] if ids is not None else f"row {bad[0]}"
        raise DataError(f"{where}: {len(bad)} embeddings hold NaN or inf (first: {first})")


def _fixed_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    dim = array.type.list_size
    return array.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


@dataclass
class CegResult:
    encoder: str
    items: int
    encoded: int
    from_cache: int
    dim: int
    seconds: float
    items_per_s: float
    token_lengths: list[int]  # per item of this shard, before truncation at max_tokens


def run_ceg(
    items: pd.DataFrame,
    encoder_name: str,
    config: EncoderConfig,
    template: TemplateConfig,
    out_dir: Path,
    cache_root: Path | None,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    engine: EngineConfig | None = None,
) -> CegResult:
    """Embed this rank's share of `items` and write `out_dir/part-<rank>-of-<world>.parquet`; the sentences
    not in the cache go through batch inference under `engine` (this process, or Ray actors)."""
    start = time.perf_counter()
    shard = items.sort_values("item_id", kind="stable").iloc[rank::world].reset_index(drop=True)
    sentences = item_sentences(shard, template)
    hashes = text_hashes(sentences)
    encoder = ContentEncoder(config)
    cache_key = {
        "model": encoder.identity.fingerprint,
        "template": asdict(template),
        "pooling": config.pooling,
        "max_tokens": config.max_tokens,
        # int8 embeddings are another model's: kept apart (float ones keep their key, so their cache stays valid)
        **({"precision": config.precision} if config.precision != "float" else {}),
    }
    cache = EmbeddingCache(cache_root, cache_key) if cache_root is not None else None
    cached = cache.lookup(hashes) if cache else {}
    todo = sorted({h: s for h, s in zip(hashes, sentences, strict=True) if h not in cached}.items())
    fresh = encode_in_batches(encoder, todo, engine or EngineConfig(), progress, f"CEG {encoder_name}")
    check_finite(fresh, f"CEG {encoder_name} ({encoder.identity.name})")
    if cache:
        cache.add([h for h, _ in todo], fresh)
    by_hash = dict(cached)
    by_hash.update({h: fresh[i] for i, (h, _) in enumerate(todo)})
    if not by_hash and len(shard):
        raise DataError("no embeddings produced")
    dim = next(iter(by_hash.values())).shape[0] if by_hash else encoder.model.hidden_size
    matrix = np.stack([by_hash[h] for h in hashes]) if hashes else np.zeros((0, dim), np.float32)

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("part-*.parquet"):  # parts of an earlier run with another world size
        if not stale.name.endswith(f"-of-{world:05d}.parquet"):
            stale.unlink(missing_ok=True)
    meta = {
        "encoder": encoder_name,
        "model": encoder.identity.name,
        "fingerprint": encoder.identity.fingerprint,
        "pooling": config.pooling,
        "max_tokens": config.max_tokens,
        "dtype": config.dtype,
        "template": asdict(template),
        "dim": dim,
    }
    write_parquet(
        out_dir / f"part-{rank:05d}-of-{world:05d}.parquet",
        pa.table(
            {"item_id": shard["item_id"].astype(str).tolist(), "embedding": _fixed_list(matrix), "text_hash": hashes}
        ),
        metadata={"learnkit.ceg": json.dumps(meta, sort_keys=True)},
    )
    seconds = time.perf_counter() - start
    return CegResult(
        encoder=encoder_name,
        items=len(shard),
        encoded=len(todo),
        from_cache=sum(h in cached for h in hashes),
        dim=dim,
        seconds=seconds,
        items_per_s=len(todo) / seconds if todo else 0.0,
        token_lengths=encoder.token_lengths(sentences),
    )


def read_embeddings(folder: Path) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """All parts of a CEG output, sorted by item_id: (ids and hashes, [n, dim] float32, metadata)."""
    parts = sorted(Path(folder).glob("part-*.parquet"))
    if not parts:
        raise DataError(f"{folder}: no CEG embedding parts (part-*.parquet)")
    worlds = {p.name.rsplit("-of-", 1)[1] for p in parts}
    if len(worlds) != 1 or len(parts) != int(next(iter(worlds)).split(".")[0]):
        raise DataError(f"{folder}: incomplete set of parts {[p.name for p in parts]}")
    tables = [pq.read_table(p) for p in parts]
    meta = json.loads(tables[0].schema.metadata[b"learnkit.ceg"])
    table = pa.concat_tables(tables)
    ids = pd.DataFrame(
        {"item_id": table.column("item_id").to_pylist(), "text_hash": table.column("text_hash").to_pylist()}
    )
    matrix = _matrix(table.column("embedding"))
    if matrix.shape[1] != meta["dim"]:
        raise DataError(f"{folder}: embeddings are {matrix.shape[1]} wide, the metadata says {meta['dim']}")
    check_finite(matrix, str(folder), ids["item_id"].tolist())
    order = np.argsort(ids["item_id"].to_numpy(), kind="stable")
    return ids.iloc[order].reset_index(drop=True), matrix[order], meta
