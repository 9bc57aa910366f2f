"""Every path of a run directory in one place, and this process's place in a torchrun job (read once from
RANK and WORLD_SIZE). Stages find their inputs and outputs here, never by spelling paths themselves."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from learnkit.core.fsutil import child

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
        return child(self.root, name)

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
    def rejected(self) -> Path:
        return self.stage("data") / "rejected.parquet"

    @property
    def validation(self) -> Path:
        return self.stage("data") / "validation.json"

    # ceg, i2i
    def content(self, encoder: str | None = None) -> Path:
        return self.stage("ceg") if encoder is None else child(self.stage("ceg"), encoder)

    @property
    def neighbours(self) -> Path:
        return self.stage("i2i") / "neighbours.json"

    def label_plot(self, label_key: str) -> Path:
        """The label figure's plot; the key holds a data column's name, so only its safe characters are kept."""
        return self.stage("i2i") / f"{re.sub(r'[^A-Za-z0-9_-]', '_', label_key)}.png"

    # pch (each method writes its checkpoints, figures and per-user scores under pch/<method>/)
    @property
    def split(self) -> Path:
        return self.stage("pch") / "split.parquet"

    @property
    def training_curves(self) -> Path:
        return self.stage("pch") / "curves.png"

    def method(self, method: str) -> Path:
        """A method's folder: its checkpoints, figures and per-user scores."""
        return child(self.stage("pch"), method)

    def checkpoint(self, method: str) -> Path:
        return self.method(method) / "model.safetensors"

    # export (versions, each a folder with its manifest; `latest` names the newest)
    @property
    def exports(self) -> Path:
        return self.stage("export")

    # ranking
    @property
    def ranking_samples(self) -> Path:
        return self.stage("ranking") / "samples.parquet"

    @property
    def ranking_scores(self) -> Path:
        return self.stage("ranking") / "scores.parquet"

    @property
    def ranking_metrics(self) -> Path:
        return self.stage("ranking") / "metrics.json"

    @property
    def segment_plot(self) -> Path:
        return self.stage("ranking") / "segment_deltas.png"

    def savedmodel(self, model: str) -> Path:
        return child(self.stage("ranking"), f"{model}_savedmodel")

    # ab
    @property
    def assignment(self) -> Path:
        return self.stage("ab") / "assignment.parquet"

    @property
    def ab_report(self) -> Path:
        return self.stage("ab") / "report.json"

    @property
    def daily_lift_plot(self) -> Path:
        return self.stage("ab") / "daily_lift.png"

    def link(self, path: Path) -> str:
        """`path` as the run report links it: relative to the run directory."""
        return path.relative_to(self.root).as_posix()
