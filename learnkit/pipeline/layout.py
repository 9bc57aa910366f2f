"""Every path of a run directory in one place, and this process's place in a torchrun job (read once from
RANK and WORLD_SIZE). Stages find their inputs and outputs here, never by spelling paths themselves."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FINISHED = "_stage.json"  # a finished stage's record: fingerprint, outputs digest, metrics, report
STARTED = "_running.json"  # what a running stage started from (for --resume)
LOCK = ".lock"


@dataclass(frozen=True)
class RunLayout:
    root: Path
    rank: int = 0
    world: int = 1

    @classmethod
    def of(cls, run_dir: Path) -> RunLayout:
        return cls(Path(run_dir), int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes shared files and reports."""
        return self.rank == 0

    def stage(self, name: str) -> Path:
        return self.root / name

    def finished(self, stage: str) -> Path:
        return self.stage(stage) / FINISHED

    def started(self, stage: str) -> Path:
        return self.stage(stage) / STARTED

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    # data
    @property
    def events(self) -> Path:
        return self.stage("data") / "events.parquet"

    @property
    def items(self) -> Path:
        return self.stage("data") / "items.parquet"

    @property
    def users(self) -> Path:
        return self.stage("data") / "users.parquet"

    @property
    def validation(self) -> Path:
        return self.stage("data") / "validation.json"

    # ceg, pch, export, ranking
    def content(self, encoder: str | None = None) -> Path:
        return self.stage("ceg") if encoder is None else self.stage("ceg") / encoder

    def checkpoint(self, method: str) -> Path:
        return self.stage("pch") / method / "model.safetensors"

    @property
    def exports(self) -> Path:
        return self.stage("export")

    def ranking_file(self, name: str) -> Path:
        return self.stage("ranking") / name

    def savedmodel(self, model: str) -> Path:
        return self.ranking_file(f"{model}_savedmodel")
