"""The LEARN towers as ONNX (dynamic batch and sequence) and as TensorFlow SavedModels (via onnx2tf, in a
child process), with parity against the PyTorch model on real inputs.

- user tower: `content` [batch, length, dim] (the raw CEG embeddings of a right-padded history) and `mask`
  [batch, length] (1 for real items) -> `user_embedding` [batch, out], taken at the last real position;
- item tower: `content` [batch, dim] -> `item_embedding` [batch, out], each item alone.
The content standardisation of training is inside both. onnx2tf needs a fixed sequence length, so the TF
user tower takes histories padded to `length` (batch stays dynamic).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from learn_embed.pch import LearnModel, content_scaling
from learnkit.core.children import child_beside
from learnkit.core.errors import DataError
from learnkit.core.frameworks import TENSORFLOW_ENV
from learnkit.core.fsutil import write_json

OPSET = 20


def _l2(v: torch.Tensor) -> torch.Tensor:
    # written out: onnx2tf cannot convert the ReduceL2 that torch.nn.functional.normalize exports to
    return v / torch.sqrt((v * v).sum(-1, keepdim=True)).clamp(min=1e-12)


class UserTower(nn.Module):
    def __init__(self, model: LearnModel, raw_content: torch.Tensor) -> None:
        super().__init__()
        if model.config.input != "content" or model.config.item_tower == "id_table":
            raise DataError("only a method with content input has towers that embed from text")
        self.tower = model.user_tower
        self.normalize = model.config.normalize
        mean, std = content_scaling(raw_content, model.config.content_norm)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, content: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # the hint spares torch.export a data-dependent check of the (causal) mask
        out = self.tower.encode((content - self.mean) / self.std, "causal", causal_hint=True)
        last = mask.sum(1).long() - 1
        out = out[torch.arange(out.shape[0], device=content.device), last]
        return _l2(out) if self.normalize else out


class ItemTower(nn.Module):
    """Variants 1 and 2 embed an item as a sequence of one through the user tower's weights (causal and
    self attention agree on one item); Variant 3 is the content itself, standardised as the towers read it,
    and normalised."""

    def __init__(self, model: LearnModel, raw_content: torch.Tensor) -> None:
        super().__init__()
        self.variant3 = model.config.item_tower == "variant3"
        self.user = UserTower(model, raw_content)

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        if self.variant3:
            return _l2((content - self.user.mean) / self.user.std)
        return self.user(content[:, None, :], torch.ones(content.shape[0], 1, device=content.device))


def export_onnx(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], output: str, path: Path, dynamic_length: bool
) -> None:
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=4096)
    shapes = {
        name: ({0: batch, 1: length} if dynamic_length and x.ndim > 1 else {0: batch})
        for name, x in zip(names, inputs, strict=True)
    }
    module.eval()
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # one INFO line per folded initializer otherwise
    torch.onnx.export(
        module,
        inputs,
        str(path),
        dynamo=True,
        opset_version=OPSET,
        external_data=False,
        dynamic_shapes=shapes,
        input_names=names,
        output_names=[output],
    )


def onnx_outputs(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@contextlib.contextmanager
def tf_child(plan: Path) -> Iterator[Callable[[], dict[str, float]]]:
    """Start `export.tf_towers` on a plan in a TensorFlow child process (onnx2tf calls `onnxsim` from PATH);
    the block runs beside it and calls the yielded function for the child's result."""
    env = {
        **os.environ,
        **TENSORFLOW_ENV,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [sys.executable, "-m", "export.tf_towers", str(plan)]
    with child_beside(command, f"TensorFlow tower conversion ({plan}) failed", env=env) as converted:
        yield lambda: json.loads(converted().strip().splitlines()[-1])


@dataclass
class TowerParity:
    onnx_user: float
    onnx_item: float
    tf_user: float
    tf_item: float
    tf_length: int

    def as_metrics(self) -> dict[str, float]:
        return {
            "parity_onnx_max_abs": max(self.onnx_user, self.onnx_item),
            "parity_tf_max_abs": max(self.tf_user, self.tf_item),
            "parity": {
                "onnx_user": self.onnx_user,
                "onnx_item": self.onnx_item,
                "tf_user": self.tf_user,
                "tf_item": self.tf_item,
            },
            "tf_user_length": self.tf_length,
        }


def export_towers(
    model: LearnModel,
    raw_content: torch.Tensor,
    histories: list[list[int]],
    folder: Path,
    length: int,
    tensorflow: bool = True,
    meanwhile: Callable[[], None] = lambda: None,
) -> TowerParity:
    """Write `user.onnx`, `item.onnx` (and `user_tf/`, `item_tf/` SavedModels) into `folder` and measure
    parity against the PyTorch model on `histories` (catalog indices, newest last) and every item.
    `meanwhile` runs while the TensorFlow child converts: that child and, say, an LLM's ONNX export are both
    mostly single-threaded Python, so on two cores they take the time of the longer one."""
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    raw = raw_content.float()
    user, item = UserTower(model, raw), ItemTower(model, raw)
    histories = [h[-length:] for h in histories if h]
    width = max(len(h) for h in histories)
    index = torch.tensor([h + [0] * (width - len(h)) for h in histories])
    mask = torch.tensor([[1.0] * len(h) + [0.0] * (width - len(h)) for h in histories])
    with torch.no_grad():
        padded = torch.tensor([h + [-1] * (width - len(h)) for h in histories])
        lengths = torch.tensor([len(h) for h in histories])
        want_user = model.user_embeddings(padded)[torch.arange(len(histories)), lengths - 1].numpy()
        want_item = model.item_embeddings(torch.arange(raw.shape[0])).numpy()
    user_feeds = {"content": raw[index].numpy(), "mask": mask.numpy()}
    item_feeds = {"content": raw.numpy()}
    export_onnx(user, (raw[index[:2]], mask[:2]), ["content", "mask"], "user_embedding", folder / "user.onnx", True)
    export_onnx(item, (raw[:2],), ["content"], "item_embedding", folder / "item.onnx", False)
    parity = TowerParity(
        float(np.abs(onnx_outputs(folder / "user.onnx", user_feeds) - want_user).max()),
        float(np.abs(onnx_outputs(folder / "item.onnx", item_feeds) - want_item).max()),
        float("nan"),
        float("nan"),
        length,
    )
    if not tensorflow:
        meanwhile()
        return parity
    # onnx2tf wants a fixed history length: a second user export at `length`, padded inputs to match
    fixed_index = torch.tensor([h + [0] * (length - len(h)) for h in histories])
    fixed_mask = torch.tensor([[1.0] * len(h) + [0.0] * (length - len(h)) for h in histories])
    work = folder / ".work"
    work.mkdir(exist_ok=True)
    export_onnx(
        user,
        (raw[fixed_index[:2]], fixed_mask[:2]),
        ["content", "mask"],
        "user_embedding",
        work / "user_fixed.onnx",
        False,
    )
    shutil.copy(folder / "item.onnx", work / "item_copy.onnx")  # onnx2tf rewrites its input in place
    np.savez(work / "user.npz", content=raw[fixed_index].numpy(), mask=fixed_mask.numpy(), expected=want_user)
    np.savez(work / "item.npz", content=raw.numpy(), expected=want_item)
    plan = {
        "user": {
            "onnx": str(work / "user_fixed.onnx"),
            "out": str(folder / "user_tf"),
            "inputs": ["content", "mask"],
            "check": str(work / "user.npz"),
        },
        "item": {
            "onnx": str(work / "item_copy.onnx"),
            "out": str(folder / "item_tf"),
            "inputs": ["content"],
            "check": str(work / "item.npz"),
        },
    }
    write_json(work / "plan.json", plan)
    with tf_child(work / "plan.json") as converted:
        meanwhile()
        checked = converted()
    parity.tf_user, parity.tf_item = float(checked["user"]), float(checked["item"])
    shutil.rmtree(work)
    return parity
