"""The exported CEG model's file contract, without torch: its file names and how text becomes its inputs
(the `tokenizers` package alone). `export.content_model` writes the files; `ranking.tables.embed_new_items`
reads them in a process that never imports torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOKENIZER, MODEL, SETTINGS = "tokenizer.json", "content.onnx", "content.json"  # under the export's towers/


def tokenize(tokenizer_file: Path, settings: dict, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sentences -> right-padded (input_ids, attention_mask) int64 [n, longest], cut at `max_tokens` with the
    special tokens counted, as `learn_embed.ceg` tokenizes them. Only the `tokenizers` package is needed."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(settings["max_tokens"]))
    encoded = [e.ids for e in tokenizer.encode_batch(sentences, add_special_tokens=True)]
    width = max((len(ids) for ids in encoded), default=0)
    ids = np.full((len(encoded), width), int(settings["pad_id"]), np.int64)
    mask = np.zeros((len(encoded), width), np.int64)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


def embed_text(folder: Path, sentences: list[str], batch_size: int = 64, threads: int | None = None) -> np.ndarray:
    """Raw CEG embeddings [n, dim] of `sentences` through the exported tokenizer and `content.onnx` in `folder`
    (ONNX Runtime), batched longest first as the torch CEG batches them, returned in the input order."""
    import json

    import onnxruntime as ort

    settings = json.loads((folder / SETTINGS).read_text())
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / MODEL), options, providers=["CPUExecutionProvider"])
    ids, mask = tokenize(folder / TOKENIZER, settings, sentences)
    order = np.argsort(-mask.sum(1), kind="stable")
    out = np.zeros((len(sentences), int(settings["dim"])), np.float32)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = int(mask[batch].sum(1).max())
        out[batch] = session.run(None, {"input_ids": ids[batch, :width], "attention_mask": mask[batch, :width]})[0]
    return out
