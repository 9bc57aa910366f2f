"""Training of the LEARN twin towers: Adam, cosine schedule with linear warm-up, gradient clipping,
fixed seeds, safetensors checkpoints that hold model, optimizer, scheduler and RNG state, `resume`, and
data parallelism with torch.distributed (gloo on CPU, nccl on GPU) under torchrun.

Batches are drawn from a seeded permutation per epoch; under data parallelism each process takes its
share of every global batch and the target embeddings are all-gathered, so the negatives and the loss
are those of one process with the whole batch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from learn_embed.losses import dense_all_action_infonce
from learn_embed.pch import LearnModel
from learnkit.config import TrainConfig
from learnkit.progress import progress_bar

log = logging.getLogger(__name__)
KILL_ENV = "LEARN_KIT_KILL_AFTER_CHECKPOINT"  # test hook: SIGKILL this process after that checkpoint step


@dataclass
class SequenceData:
    """Padded item indices (-1 = padding)."""

    history: torch.Tensor   # [n, Lh]
    target: torch.Tensor    # [n, Lt]

    @classmethod
    def from_lists(cls, histories: list[list[int]], targets: list[list[int]]) -> "SequenceData":
        return cls(_pad(histories), _pad(targets))

    def __len__(self) -> int:
        return self.history.shape[0]

    def rows(self, index: torch.Tensor) -> "SequenceData":
        return SequenceData(_trim(self.history[index]), _trim(self.target[index]))

    def to(self, device: torch.device) -> "SequenceData":
        return SequenceData(self.history.to(device), self.target.to(device))


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(1, max((len(r) for r in rows), default=1))
    out = torch.full((len(rows), width), -1, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return out


def _trim(padded: torch.Tensor) -> torch.Tensor:
    """Drop trailing all-padding columns so a batch is only as long as its longest row."""
    width = int((padded >= 0).sum(1).max().clamp(min=1))
    return padded[:, :width]


def cosine_with_warmup(total_steps: int, warmup: float) -> Callable[[int], float]:
    warm = max(1, int(round(warmup * total_steps))) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _Twin(torch.nn.Module):
    """One forward for both towers, so that DistributedDataParallel sees a single call per step."""

    def __init__(self, model: LearnModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, history: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.user_embeddings(history), self.model.target_embeddings(target)


def _device(name: str, rank: int) -> torch.device:
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("pch.train.device is 'cuda' but no GPU is visible to PyTorch")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return torch.device(name)


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _loss(user: torch.Tensor, items: torch.Tensor, batch: SequenceData, temperature: float,
          world: int, rank: int) -> torch.Tensor:
    user_mask, item_mask = batch.history >= 0, batch.target >= 0
    if world == 1:
        return dense_all_action_infonce(user, user_mask, items, item_mask, batch.target, temperature)
    from torch.distributed.nn.functional import all_gather

    # every process pads its share to the same shape so that the gathers line up
    rows = torch.tensor([items.shape[0], items.shape[1]], device=items.device)
    dist.all_reduce(rows, op=dist.ReduceOp.MAX)
    pad_rows, pad_len = int(rows[0]) - items.shape[0], int(rows[1]) - items.shape[1]
    items_p = torch.nn.functional.pad(items, (0, 0, 0, pad_len, 0, pad_rows))
    ids_p = torch.nn.functional.pad(batch.target, (0, pad_len, 0, pad_rows), value=-1)
    gathered = torch.cat(all_gather(items_p), 0)
    ids_all = [torch.empty_like(ids_p) for _ in range(world)]
    dist.all_gather(ids_all, ids_p)
    ids = torch.cat(ids_all, 0)
    per = int(rows[0])
    owner = torch.arange(world * per, device=items.device)
    row_owner = torch.arange(items.shape[0], device=items.device) + rank * per
    # normalise by the global number of (position, positive) pairs; DDP averages over processes
    pairs = (user_mask.sum(1) * item_mask.sum(1)).sum().to(torch.float64)
    dist.all_reduce(pairs)
    return dense_all_action_infonce(user, user_mask, gathered, ids >= 0, ids, temperature,
                                    owner=owner, row_owner=row_owner, normaliser=float(pairs) / world)


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("step-*") if (p / "trainer.json").is_file())


def _save_checkpoint(folder: Path, step: int, model: LearnModel, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any], keep: int) -> None:
    final = folder / f"step-{step:08d}"
    tmp = folder / f".step-{step:08d}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_state(model), tmp / "model.safetensors")
    opt = optimizer.state_dict()
    tensors = {f"{idx}.{name}": value.contiguous() for idx, entry in opt["state"].items()
               for name, value in entry.items() if isinstance(value, torch.Tensor)}
    tensors["rng"] = torch.get_rng_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "trainer.json").write_text(json.dumps({
        **state, "step": step, "param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(),
    }, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in _checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model: LearnModel, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    model.load_state_dict(load_file(path / "model.safetensors"))
    tensors = load_file(path / "optimizer.safetensors")
    meta = json.loads((path / "trainer.json").read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key == "rng":
            continue
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng"])
    return meta


@dataclass
class TrainResult:
    steps: int
    epochs: int
    final_loss: float
    losses: list[float]          # mean loss per epoch
    sequences_per_s: float
    resumed_from: int | None
    epoch_metrics: list[dict[str, float]]
    best_epoch: int | None = None


def train(model: LearnModel, data: SequenceData, config: TrainConfig, out_dir: Path, resume: bool = False,
          on_epoch_end: Callable[[int, LearnModel], dict[str, float]] | None = None,
          progress: bool = True, desc: str = "PCH") -> TrainResult:
    """Train `model` in place; checkpoints and the final weights go to `out_dir`."""
    rank, world = _distributed()
    torch.manual_seed(config.seed)
    device = _device(config.device, rank)
    model.to(device)
    ckpt_dir = out_dir / "checkpoints"
    if rank == 0 and not resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        (out_dir / "best.safetensors").unlink(missing_ok=True)
    twin: torch.nn.Module = _Twin(model)
    if world > 1:
        twin = torch.nn.parallel.DistributedDataParallel(
            twin, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, config.warmup))
    step, losses, epoch_metrics, resumed_from = 0, [], [], None
    running: list[float] = []
    if resume and _checkpoints(ckpt_dir):
        latest = _checkpoints(ckpt_dir)[-1]
        meta = _load_checkpoint(latest, model, optimizer, scheduler)
        step, losses, epoch_metrics = meta["step"], meta["losses"], meta["epoch_metrics"]
        running = meta["running"]
        resumed_from = step
        log.info("resumed from %s (step %d of %d)", latest, step, total)
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    every = config.checkpoint_every or steps_per_epoch
    bar = progress_bar(total=total, initial=step, desc=desc, unit="step", enabled=progress and rank == 0)
    started, sequences = time.perf_counter(), 0
    model.train()
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        for b in range(offset, steps_per_epoch):
            index = order[b * config.batch_size:(b + 1) * config.batch_size][rank::world]
            batch = data.rows(index).to(device)
            user, items = twin(batch.history, batch.target)
            loss = _loss(user, items, batch, config.temperature, world, rank)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            sequences += len(index) * world
            logged = loss.detach().clone()
            if world > 1:  # each process holds its share of the global loss, scaled by world
                dist.all_reduce(logged)
                logged /= world
            running.append(float(logged))
            bar.update(1)
            bar.set_postfix(loss=f"{sum(running[-20:]) / len(running[-20:]):.4f}",
                            seq_s=f"{sequences / (time.perf_counter() - started):.0f}", refresh=False)
            epoch_done = step % steps_per_epoch == 0
            if epoch_done:
                losses.append(sum(running) / len(running))
                running = []
                if on_epoch_end is not None:
                    model.eval()
                    epoch_metrics.append(on_epoch_end(epoch, model))
                    model.train()
                    if config.select_best and rank == 0 and _is_best(epoch_metrics):
                        save_file(_state(model), out_dir / "best.safetensors")
            if rank == 0 and (step % every == 0 or step == total):
                _save_checkpoint(ckpt_dir, step, model, optimizer, scheduler,
                                 {"losses": losses, "running": running, "epoch_metrics": epoch_metrics,
                                  "config": asdict(config)}, config.keep_checkpoints)
                if kill_at and step == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    model.eval().cpu()
    best_epoch = None
    if config.select_best and epoch_metrics and (out_dir / "best.safetensors").is_file():
        if world > 1:
            dist.barrier()
        model.load_state_dict(load_file(out_dir / "best.safetensors"))
        best_epoch = _best_index(epoch_metrics) + 1
    if rank == 0:
        save_file(_state(model), out_dir / "model.safetensors")
    elapsed = time.perf_counter() - started
    return TrainResult(steps=step, epochs=config.epochs, final_loss=losses[-1] if losses else float("nan"),
                       losses=losses, sequences_per_s=sequences / elapsed if elapsed and sequences else 0.0,
                       resumed_from=resumed_from, epoch_metrics=epoch_metrics, best_epoch=best_epoch)


def _state(model: LearnModel) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _monitor_value(entry: dict[str, float]) -> float:
    values = [v for k, v in entry.items() if k != "epoch"]
    return float(values[0]) if values else float("-inf")


def _best_index(epoch_metrics: list[dict[str, float]]) -> int:
    values = [_monitor_value(e) for e in epoch_metrics]
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _is_best(epoch_metrics: list[dict[str, float]]) -> bool:
    return _best_index(epoch_metrics) == len(epoch_metrics) - 1
