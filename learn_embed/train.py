"""Training of the LEARN twin towers: Adam, cosine schedule with linear warm-up, gradient clipping,
early stopping on the validation figure (`patience`), fixed seeds, safetensors checkpoints that hold model,
optimizer, scheduler and RNG state, `resume`, and data parallelism with torch.distributed (gloo on CPU, nccl
on GPU) under torchrun.

Batches are drawn from a seeded permutation per epoch. Each step scores every (position, positive) pair
against a candidate set (`learn_embed.losses`): the catalog, or the batch's positives with or without
sampled negatives. Under data parallelism each process takes its share of every global batch and the
candidate ids are all-gathered (sampled negatives come from a generator seeded by the step), so the
negatives and the loss are those of one process with the whole batch.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from learn_embed.config import TrainConfig
from learn_embed.losses import candidate_softmax_loss
from learn_embed.pch import LearnModel
from learnkit.core.configload import differing_keys
from learnkit.core.errors import LearnKitError
from learnkit.core.fsutil import atomic_path, publish_folder
from learnkit.core.progress import progress_bar

log = logging.getLogger(__name__)
# a position without a time (padding, or data without times): every item exists for it
NO_TIME = torch.iinfo(torch.int64).max
KILL_ENV = "LEARN_KIT_KILL_AFTER_CHECKPOINT"  # test hook: SIGKILL this process after that checkpoint step


@dataclass
class SequenceData:
    """Padded item indices (-1 = padding): each history position and the positives it must predict."""

    history: torch.Tensor  # [n, L]
    positives: torch.Tensor  # [n, L, W]
    times: torch.Tensor | None = None  # [n, L] each position's time: that of its first positive

    @classmethod
    def from_lists(
        cls,
        histories: list[list[int]],
        targets: list[list[int]],
        aligned: bool = False,
        window: int = 1,
        target_times: list[list[int]] | None = None,
    ) -> SequenceData:
        """`aligned`: target[t] is the item after history[t] (next-item sequences); position t's positives
        are target[t : t + window]. Otherwise every history position predicts the whole target list (the
        paper's history/target cuts). `target_times` (aligned with `targets`) give each position the time of
        its first positive: the items that exist by then are its negatives."""
        history = _pad(histories)
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        target = _padded(targets)  # [rows, longest target], -1 past each row's end
        if aligned:  # position t: target[t : t + window]; the padding reads as -1
            width = max(1, min(window, target.shape[1]))
            span = min(target.shape[1], history.shape[1])
            shifted = np.pad(target, ((0, 0), (0, width)), constant_values=-1)
            positives = np.full((len(targets), history.shape[1], width), -1, dtype=np.int64)
            positives[:, :span] = shifted[:, np.arange(span)[:, None] + np.arange(width)[None, :]]
        else:  # every history position predicts the whole target list
            has_history = lengths > 0
            width = max(1, max((len(t) for t, h in zip(targets, has_history, strict=True) if h), default=1))
            real = np.arange(history.shape[1])[None, :] < lengths[:, None]
            whole = np.pad(target, ((0, 0), (0, max(0, width - target.shape[1]))), constant_values=-1)[:, :width]
            positives = np.where(real[:, :, None], whole[:, None, :], -1)
        times = None
        if target_times is not None:
            when = _padded(target_times, fill=NO_TIME)  # [rows, longest]
            counted = np.array([len(w) for w in target_times], dtype=np.int64)
            column = np.arange(history.shape[1])[None, :]
            if aligned:  # position t: the time of target[t]
                wide = np.pad(when, ((0, 0), (0, max(0, history.shape[1] - when.shape[1]))), constant_values=NO_TIME)
                times = np.where(column < np.minimum(lengths, counted)[:, None], wide[:, : history.shape[1]], NO_TIME)
            else:  # every position: the earliest target's time
                earliest = np.where(counted > 0, when.min(axis=1, initial=NO_TIME), NO_TIME)
                times = np.where((column < lengths[:, None]) & (counted[:, None] > 0), earliest[:, None], NO_TIME)
            times = torch.from_numpy(np.ascontiguousarray(times, dtype=np.int64))
        positives = torch.from_numpy(np.ascontiguousarray(positives, dtype=np.int64))
        return cls(history, positives, times)

    def __len__(self) -> int:
        return self.history.shape[0]

    def rows(self, index: torch.Tensor) -> SequenceData:
        history = _trim(self.history[index])
        positives = self.positives[index][:, : history.shape[1]]
        width = int((positives >= 0).sum(-1).max().clamp(min=1)) if positives.numel() else 1
        times = self.times[index][:, : history.shape[1]] if self.times is not None else None
        return SequenceData(history, positives[:, :, :width], times)

    def to(self, device: torch.device) -> SequenceData:
        times = self.times.to(device) if self.times is not None else None
        return SequenceData(self.history.to(device), self.positives.to(device), times)

    def item_counts(self, num_items: int) -> torch.Tensor:
        """How often each item is a positive in this data: the popularity the sampled loss corrects for."""
        valid = self.positives[self.positives >= 0]
        return torch.bincount(valid, minlength=num_items).to(torch.float64)


def _padded(rows: list[list[int]], fill: int = -1) -> np.ndarray:
    """Ragged integer rows as one [rows, longest] int64 array, `fill` past each row's end."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.full((len(rows), max(1, int(lengths.max(initial=0)))), fill, dtype=np.int64)
    # row-major order of the real cells is the rows' concatenation
    values = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    out[np.arange(out.shape[1])[None, :] < lengths[:, None]] = values
    return out


def _pad(rows: list[list[int]]) -> torch.Tensor:
    return torch.from_numpy(_padded(rows))


def _trim(padded: torch.Tensor) -> torch.Tensor:
    """Drop trailing all-padding columns so a batch is only as long as its longest row."""
    width = int((padded >= 0).sum(1).max().clamp(min=1))
    return padded[:, :width]


def cosine_with_warmup(total_steps: int, warmup: float, decay: bool = True) -> Callable[[int], float]:
    """Linear warm-up over the first `warmup` share of the steps, then cosine decay to zero (or, without
    `decay`, the full rate to the end)."""
    warm = max(1, int(round(warmup * total_steps))) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if not decay:
            return 1.0
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _Twin(torch.nn.Module):
    """One forward for both towers, so that DistributedDataParallel sees a single call per step."""

    def __init__(self, model: LearnModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, history: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.user_embeddings(history), self.model.item_embeddings(candidates)


def resolve_loss(config: TrainConfig, num_items: int) -> str:
    """`auto`: the exact softmax over the catalog when it has at most `full_max_items` items."""
    if config.loss != "auto":
        return config.loss
    return "full" if num_items <= config.full_max_items else "sampled"


@dataclass
class Candidates:
    """The items a step scores against, with each position's positives as candidate columns."""

    ids: torch.Tensor  # [C] item indices
    positive_cols: torch.Tensor  # [B, L, W]
    banned_cols: torch.Tensor | None  # [B, L, L] the user's items up to each position, when masked
    log_q: torch.Tensor | None  # [C] sampling correction
    birth: torch.Tensor | None = None  # [C] when each candidate first exists (none: always)


def _candidates(
    batch: SequenceData,
    kind: str,
    num_items: int,
    sampling_q: torch.Tensor | None,
    config: TrainConfig,
    step: int,
    world: int,
    item_birth: torch.Tensor | None = None,
) -> Candidates:
    device = batch.history.device
    if kind == "full":
        ids = torch.arange(num_items, device=device)
    else:
        batch_items = batch.positives[batch.positives >= 0]
        if world > 1:  # every process scores against the candidates of the whole global batch
            batch_items = _gather_ids(batch_items)
        parts = [batch_items]
        if kind == "sampled":
            assert sampling_q is not None
            # the same draw on every process: a generator seeded by the step
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            parts.append(
                torch.multinomial(
                    sampling_q.float(), config.sampled_negatives, replacement=True, generator=generator
                ).to(device)
            )
        ids = torch.unique(torch.cat(parts))
    column = torch.full((num_items + 1,), -1, dtype=torch.int64, device=device)
    column[ids] = torch.arange(len(ids), device=device)

    def to_cols(items: torch.Tensor) -> torch.Tensor:
        return column[torch.where(items >= 0, items, num_items)]

    banned = None
    if config.mask_history:  # position t: the items at positions 0..t are no negatives
        length = batch.history.shape[1]
        upto = torch.arange(length, device=device)[None, :] <= torch.arange(length, device=device)[:, None]
        banned = torch.where(upto[None], to_cols(batch.history)[:, None, :], -1)
    log_q = None
    if kind == "sampled":
        assert sampling_q is not None
        log_q = torch.log(sampling_q[ids.cpu()].to(device).float())
    birth = item_birth.to(device)[ids] if item_birth is not None and batch.times is not None else None
    return Candidates(ids, to_cols(batch.positives), banned, log_q, birth)


def _gather_ids(items: torch.Tensor) -> torch.Tensor:
    sizes = torch.tensor([items.numel()], device=items.device)
    every = [torch.zeros_like(sizes) for _ in range(dist.get_world_size())]
    dist.all_gather(every, sizes)
    longest = int(max(int(s) for s in every))
    padded = torch.nn.functional.pad(items, (0, longest - items.numel()), value=-1)
    gathered = [torch.empty_like(padded) for _ in every]
    dist.all_gather(gathered, padded)
    out = torch.cat(gathered)
    return out[out >= 0]


def _loss(
    user: torch.Tensor, items: torch.Tensor, batch: SequenceData, cands: Candidates, temperature: float, world: int
) -> torch.Tensor:
    user_mask = batch.history >= 0
    when = dict(position_time=batch.times, candidate_birth=cands.birth) if cands.birth is not None else {}
    if world == 1:
        return candidate_softmax_loss(
            user, user_mask, cands.positive_cols, items, temperature, log_q=cands.log_q, banned_cols=cands.banned_cols,
            **when,
        )  # fmt: skip
    # normalise by the global number of (position, positive) pairs; DDP averages over processes
    pairs = ((cands.positive_cols >= 0) & user_mask[:, :, None]).sum().to(torch.float64)
    dist.all_reduce(pairs)
    return candidate_softmax_loss(
        user,
        user_mask,
        cands.positive_cols,
        items,
        temperature,
        log_q=cands.log_q,
        banned_cols=cands.banned_cols,
        normaliser=float(pairs) / world,
        **when,
    )


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


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("step-*") if (p / "trainer.json").is_file())


def _save_weights(model: LearnModel, path: Path) -> None:
    """The weights, published whole or not at all (a full disk leaves the previous file)."""
    with atomic_path(path) as tmp:
        save_file(_state(model), tmp)


def _save_checkpoint(
    folder: Path,
    step: int,
    model: LearnModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    keep: int,
) -> None:
    final = folder / f"step-{step:08d}"
    tmp = folder / f".step-{step:08d}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_state(model), tmp / "model.safetensors")
    opt = optimizer.state_dict()
    tensors = {
        f"{idx}.{name}": value.contiguous()
        for idx, entry in opt["state"].items()
        for name, value in entry.items()
        if isinstance(value, torch.Tensor)
    }
    tensors["rng"] = torch.get_rng_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "trainer.json").write_text(
        json.dumps(
            {
                **state,
                "step": step,
                "param_groups": opt["param_groups"],
                "scheduler": scheduler.state_dict(),
            },
            indent=1,
        )
    )
    publish_folder(tmp, final)
    for old in _checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _made_by(model: LearnModel, config: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must have been trained with for a resume to continue it exactly."""
    return {"train": asdict(config), "model": asdict(model.config), "items": model.num_items}


def _load_checkpoint(
    path: Path,
    model: LearnModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    made_by: dict[str, Any],
) -> dict[str, Any]:
    """Read every file first (a corrupt one raises before anything is changed), check the checkpoint was
    made by this config, then restore model, optimiser, schedule and RNG."""
    meta = json.loads((path / "trainer.json").read_text())
    weights = load_file(path / "model.safetensors")
    tensors = load_file(path / "optimizer.safetensors")
    if meta.get("made_by") != made_by:
        keys = differing_keys(meta.get("made_by", {}), made_by)
        raise LearnKitError(
            f"{path}: this checkpoint was trained with another config (differing: "
            f"{', '.join(keys)}); run again without --resume"
        )
    model.load_state_dict(weights)
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


def _resume(
    ckpt_dir: Path,
    model: LearnModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    made_by: dict[str, Any],
) -> tuple[Path, dict] | None:
    """The newest intact checkpoint, restored; an unreadable one is skipped with a warning."""
    found = _checkpoints(ckpt_dir)
    for path in reversed(found):
        try:
            meta = _load_checkpoint(path, model, optimizer, scheduler, made_by)
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            log.warning("checkpoint %s is unreadable (%s: %s); trying the one before it", path, type(exc).__name__, exc)
            continue
        if path != found[-1]:
            log.warning("resuming from %s, the newest intact checkpoint", path)
        return path, meta
    if found:
        raise LearnKitError(f"{ckpt_dir}: none of the {len(found)} checkpoints is readable; run again without --resume")
    return None


@dataclass
class TrainResult:
    steps: int
    epochs: int  # epochs run (early stopping may end before config.epochs)
    final_loss: float
    losses: list[float]  # mean loss per epoch
    sequences_per_s: float
    resumed_from: int | None
    epoch_metrics: list[dict[str, float]]
    best_epoch: int | None = None
    stopped_early: bool = False  # validation stopped improving for `patience` epochs
    loss: str = "full"


def train(
    model: LearnModel,
    data: SequenceData,
    config: TrainConfig,
    out_dir: Path,
    resume: bool = False,
    on_epoch_end: Callable[[int, LearnModel], dict[str, float]] | None = None,
    progress: bool = True,
    desc: str = "PCH",
    item_birth: torch.Tensor | None = None,
) -> TrainResult:
    """Train `model` in place; checkpoints and the final weights go to `out_dir`. `item_birth` [items]: when
    each item first exists; with `data.times`, an item is no negative for a position before that time."""
    rank, world = _distributed()
    torch.manual_seed(config.seed)
    device = _device(config.device, rank)
    model.to(device)
    ckpt_dir = out_dir / "checkpoints"
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0 and not resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        (out_dir / "best.safetensors").unlink(missing_ok=True)
    twin: torch.nn.Module = _Twin(model)
    if world > 1:
        twin = torch.nn.parallel.DistributedDataParallel(
            twin, device_ids=[device.index] if device.type == "cuda" else None
        )
    loss_kind = resolve_loss(config, model.num_items)
    # popularity of the training positives, +1 so that every item can be drawn
    sampling_q = (data.item_counts(model.num_items) + 1.0) if loss_kind == "sampled" else None
    if sampling_q is not None:
        sampling_q = sampling_q / sampling_q.sum()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total = steps_per_epoch * config.epochs
    decay = config.schedule == "cosine"
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, config.warmup, decay))
    step, losses, epoch_metrics, resumed_from = 0, [], [], None
    running: list[float] = []
    made_by = _made_by(model, config)
    restored = _resume(ckpt_dir, model, optimizer, scheduler, made_by) if resume else None
    if restored is not None:
        latest, meta = restored
        step, losses, epoch_metrics = meta["step"], meta["losses"], meta["epoch_metrics"]
        running = meta["running"]
        resumed_from = step
        log.info("resumed from %s (step %d of %d)", latest, step, total)
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    every = config.checkpoint_every or steps_per_epoch
    bar = progress_bar(total=total, initial=step, desc=desc, unit="step", enabled=progress and rank == 0)
    started, sequences = time.perf_counter(), 0
    stopped = _should_stop(epoch_metrics, config.patience)
    model.train()
    while step < total and not stopped:
        epoch, offset = divmod(step, steps_per_epoch)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        for b in range(offset, steps_per_epoch):
            index = order[b * config.batch_size : (b + 1) * config.batch_size][rank::world]
            batch = data.rows(index).to(device)
            cands = _candidates(batch, loss_kind, model.num_items, sampling_q, config, step, world, item_birth)
            user, items = twin(batch.history, cands.ids)
            loss = _loss(user, items, batch, cands, config.temperature, world)
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
            bar.set_postfix(
                loss=f"{sum(running[-20:]) / len(running[-20:]):.4f}",
                seq_s=f"{sequences / (time.perf_counter() - started):.0f}",
                refresh=False,
            )
            epoch_done = step % steps_per_epoch == 0
            if epoch_done:
                losses.append(sum(running) / len(running))
                running = []
                if on_epoch_end is not None:
                    model.eval()
                    epoch_metrics.append(on_epoch_end(epoch, model))
                    model.train()
                    if config.select_best and rank == 0 and _is_best(epoch_metrics):
                        _save_weights(model, out_dir / "best.safetensors")
                    if rank == 0:
                        log.info(
                            "%s epoch %d: loss %.4f, validation %s",
                            desc,
                            epoch + 1,
                            losses[-1],
                            {k: round(v, 4) for k, v in epoch_metrics[-1].items() if k != "epoch"},
                        )
                stopped = _should_stop(epoch_metrics, config.patience)
            if rank == 0 and (step % every == 0 or step == total or stopped):
                _save_checkpoint(
                    ckpt_dir,
                    step,
                    model,
                    optimizer,
                    scheduler,
                    {
                        "losses": losses,
                        "running": running,
                        "epoch_metrics": epoch_metrics,
                        "made_by": made_by,  # the train config, the model config and the catalog size
                    },
                    config.keep_checkpoints,
                )
                if kill_at and step == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            if stopped:
                log.info(
                    "%s: validation has not improved for %d epochs; stopped after epoch %d",
                    desc,
                    config.patience,
                    epoch + 1,
                )
                break
    bar.close()
    model.eval().cpu()
    best_epoch = None
    if config.select_best and epoch_metrics and (out_dir / "best.safetensors").is_file():
        if world > 1:
            dist.barrier()
        model.load_state_dict(load_file(out_dir / "best.safetensors"))
        best_epoch = _best_index(epoch_metrics) + 1
    if rank == 0:
        _save_weights(model, out_dir / "model.safetensors")
    elapsed = time.perf_counter() - started
    return TrainResult(
        steps=step,
        epochs=len(losses),
        final_loss=losses[-1] if losses else float("nan"),
        losses=losses,
        sequences_per_s=sequences / elapsed if elapsed and sequences else 0.0,
        resumed_from=resumed_from,
        epoch_metrics=epoch_metrics,
        best_epoch=best_epoch,
        stopped_early=stopped,
        loss=loss_kind,
    )


def _should_stop(epoch_metrics: list[dict[str, float]], patience: int) -> bool:
    """`patience` epochs in a row without a better validation figure than the best before them."""
    if patience < 1 or len(epoch_metrics) <= patience:
        return False
    return _best_index(epoch_metrics) < len(epoch_metrics) - patience


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
