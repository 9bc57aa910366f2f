"""What a stage is: its place in the chain, the config and outside inputs its fingerprint covers, and the
function that runs it on a `Context` and returns a `StageOutput`. The stages (`stages/`) and the runner both
build on this module; neither imports the other's insides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from learnkit.config import Config
from learnkit.pipeline.layout import RunLayout


@dataclass
class StageOutput:
    metrics: dict[str, Any]  # nested, placed under the stage's own key in metrics.json
    report: str = ""  # a markdown section of report.md


@dataclass
class Context:
    config: Config
    layout: RunLayout  # every path of the run, this process's rank and the world size
    options: dict[str, Any] = field(default_factory=dict)  # command-line options, e.g. resume


@dataclass(frozen=True)
class Stage:
    name: str
    after: tuple[str, ...]
    config_section: Callable[[Config], Any]
    run: Callable[[Context], StageOutput]
    # Fingerprint of inputs outside the run directory (the raw dataset files, say).
    external_inputs: Callable[[Config], Any] = lambda config: None
    # Where the stage's figures sit in metrics.json (default: the stage name).
    metrics_key: str = ""
    # Whether the config asks for this stage at all.
    enabled: Callable[[Config], bool] = lambda config: True
    # Whether a fresh (not resumed) run clears the stage folder first, so that nothing of an earlier run
    # passes for this one's output. Export keeps its earlier versions by design.
    clears_on_rerun: bool = True

    @property
    def key(self) -> str:
        return self.metrics_key or self.name
