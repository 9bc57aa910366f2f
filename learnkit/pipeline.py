"""The pipeline runner: stages in one direction, each skipped when its inputs and config are unchanged.

A stage's fingerprint hashes its config section, the fingerprints of the stages it reads and the
learn-kit version; `<stage>/_stage.json` records it with the stage's metrics and report once the stage
has finished, so an interrupted stage always re-runs.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from learnkit import __version__
from learnkit.config import Config
from learnkit.configload import to_mapping
from learnkit.errors import LearnKitError
from learnkit.fsutil import read_json, stable_hash, write_json
from learnkit.report import write_run_report
from learnkit.summary import run_summary

log = logging.getLogger(__name__)


@dataclass
class StageOutput:
    metrics: dict[str, Any]     # nested, placed under the stage's own key in metrics.json
    report: str = ""            # a markdown section of report.md


@dataclass
class Context:
    config: Config
    run_dir: Path
    stage_dir: Path
    rank: int = 0
    world: int = 1
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

    @property
    def key(self) -> str:
        return self.metrics_key or self.name


def _stages() -> dict[str, Stage]:
    from learnkit import stages

    return {s.name: s for s in stages.ALL}


def stage_names() -> list[str]:
    return list(_stages())


def _fingerprint(stage: Stage, config: Config, upstream: dict[str, str]) -> str:
    return stable_hash({"stage": stage.name, "version": __version__,
                        "config": to_mapping(stage.config_section(config)),
                        "external": stage.external_inputs(config), "upstream": upstream})


def _record(run_dir: Path, name: str) -> dict[str, Any] | None:
    path = run_dir / name / "_stage.json"
    return read_json(path) if path.is_file() else None


def run_stage(config: Config, name: str, force: bool = False,
              options: dict[str, Any] | None = None) -> tuple[StageOutput, bool]:
    """Run one stage (or reuse its finished output). Returns (output, skipped)."""
    stages = _stages()
    stage = stages[name]
    if not stage.enabled(config):
        raise LearnKitError(f"{config.source} has no '{name}' section: nothing to run for stage '{name}'")
    run_dir = config.run_dir
    upstream = {}
    for dep in stage.after:
        record = _record(run_dir, dep)
        if record is None:
            raise LearnKitError(f"stage '{name}' needs stage '{dep}' first: run `learn-kit {dep} --config "
                                f"{config.source}` or `learn-kit run {config.source}`")
        upstream[dep] = record["fingerprint"]
    fingerprint = _fingerprint(stage, config, upstream)
    record = _record(run_dir, name)
    if not force and record and record.get("fingerprint") == fingerprint:
        log.info("stage %s: inputs and config unchanged, skipped", name)
        return StageOutput(record["metrics"], record.get("report", "")), True
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    stage_dir = run_dir / name
    stage_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0 and (stage_dir / "_stage.json").exists():
        (stage_dir / "_stage.json").unlink()
    log.info("stage %s: running", name)
    started = time.perf_counter()
    output = stage.run(Context(config=config, run_dir=run_dir, stage_dir=stage_dir, rank=rank, world=world,
                               options=options or {}))
    if rank == 0:
        write_json(stage_dir / "_stage.json", {"fingerprint": fingerprint, "metrics": output.metrics,
                                               "report": output.report, "upstream": upstream,
                                               "seconds": round(time.perf_counter() - started, 3)})
    return output, False


def run_pipeline(config: Config, only: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Run every stage in order (or `only` these), then write metrics.json and the reports."""
    timings: dict[str, Any] = {}
    for name, stage in _stages().items():
        if (only and name not in only) or not stage.enabled(config):
            continue
        started = time.perf_counter()
        _, skipped = run_stage(config, name, force=force)
        timings[name] = {"skipped": skipped, "seconds": round(time.perf_counter() - started, 3)}
    return write_reports(config, timings)


def write_reports(config: Config, timings: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"run": {"name": config.name, "config": config.source, "version": __version__}}
    sections = []
    for name, stage in _stages().items():
        record = _record(config.run_dir, name)
        if record is None or not stage.enabled(config):
            continue
        metrics[stage.key] = record["metrics"]
        sections.append(record.get("report", ""))
    if timings:
        metrics["run"]["stages"] = timings
    sections.insert(0, run_summary(metrics))
    write_run_report(config.run_dir, f"learn-kit run `{config.name}`", sections, metrics)
    return metrics
