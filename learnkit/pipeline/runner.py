"""The pipeline runner: stages in one direction, each skipped when its inputs and config are unchanged.

A stage's fingerprint hashes its config section, its external inputs (raw data files, model weights),
each upstream stage's fingerprint and the content of that stage's outputs as they are on disk now, and the
learn-kit version. `<stage>/_running.json` records what a stage started from, so that a resume can refuse
another config; `<stage>/_stage.json` records the fingerprint, the content hash of the outputs, the
metrics and the report once the stage has finished. A stage is skipped only when both still match, so an
interrupted stage always re-runs, and so does one whose outputs (or whose inputs' outputs) were changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from learnkit import __version__
from learnkit.config import Config
from learnkit.core.configload import differing_keys, to_mapping
from learnkit.core.errors import LearnKitError, StorageError, storage_error, storage_fault
from learnkit.core.fsutil import (
    json_default,
    read_json,
    remove_leftovers,
    remove_path,
    sha256_file,
    stable_hash,
    write_json,
)
from learnkit.pipeline import stages
from learnkit.pipeline.layout import FINISHED, STARTED, RunLayout
from learnkit.pipeline.preflight import preflight
from learnkit.pipeline.report import write_run_report
from learnkit.pipeline.stage import Context, Stage, StageOutput
from learnkit.pipeline.summary import run_summary

log = logging.getLogger(__name__)


def _stages() -> dict[str, Stage]:
    return {s.name: s for s in stages.ALL}


def stage_names() -> list[str]:
    return list(_stages())


def outputs_digest(folder: Path) -> str:
    """Content hash of every file a stage wrote, its bookkeeping records aside."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (FINISHED, STARTED))
    return stable_hash({p.relative_to(folder).as_posix(): sha256_file(p) for p in files})


def _inputs(stage: Stage, config: Config, upstream: dict[str, Any]) -> dict[str, Any]:
    """Everything the fingerprint covers, as plain JSON values (so that a recorded copy compares equal)."""
    inputs = {
        "stage": stage.name,
        "version": __version__,
        "config": to_mapping(stage.config_section(config)),
        "external": stage.external_inputs(config),
        "upstream": upstream,
    }
    return json.loads(json.dumps(inputs, sort_keys=True, default=json_default))


def _record(layout: RunLayout, name: str) -> dict[str, Any] | None:
    path = layout.finished(name)
    return read_json(path) if path.is_file() else None


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def _prepare(stage: Stage, stage_dir: Path, inputs: dict[str, Any], fingerprint: str, resume: bool, rank: int) -> None:
    """Refuse a resume of another config; clear an earlier run's outputs before a fresh one."""
    started = stage_dir / STARTED
    if resume:
        previous = read_json(started) if started.is_file() else None
        if previous is None:
            log.info("stage %s: nothing to resume in %s, starting fresh", stage.name, stage_dir)
        elif previous["fingerprint"] != fingerprint:
            keys = differing_keys(previous.get("inputs", {}), inputs)
            raise LearnKitError(
                f"cannot resume stage '{stage.name}' in {stage_dir}: the interrupted run had another config or "
                f"other inputs (differing: {', '.join(keys) or 'unrecorded'}); run it again without --resume"
            )
    if rank != 0:
        return
    if not resume and stage.clears_on_rerun and stage_dir.exists():
        cleared = list(stage_dir.iterdir())
        for path in cleared:
            remove_path(path)
        if cleared:
            log.info("stage %s: cleared %d entries of an earlier run from %s", stage.name, len(cleared), stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / FINISHED).unlink(missing_ok=True)
    write_json(started, {"fingerprint": fingerprint, "inputs": inputs})


def _fingerprint(stage: Stage, config: Config, layout: RunLayout) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(fingerprint, inputs, upstream) of `stage` as its inputs are now: its config section, its outside
    inputs (hashed again), each upstream stage's recorded fingerprint and the content of its outputs."""
    upstream = {}
    for dep in stage.after:
        record = _record(layout, dep)
        if record is None:
            source = config.source
            raise LearnKitError(
                f"stage '{stage.name}' needs stage '{dep}' first: run "
                f"`learn-kit run {source} --only {dep}` or `learn-kit run {source}`"
            )
        upstream[dep] = {"fingerprint": record["fingerprint"], "outputs": outputs_digest(layout.stage(dep))}
    inputs = _inputs(stage, config, upstream)
    return stable_hash(inputs), inputs, upstream


def _ancestors(stage: Stage) -> list[str]:
    stages = _stages()
    found: set[str] = set()
    todo = list(stage.after)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += stages[name].after
    return [name for name in stages if name in found]  # in pipeline order


def check_upstream(config: Config, name: str, current: set[str] | None = None) -> None:
    """Refuse to run `name` on the outputs of a stage that is out of date: its raw input files, model weights,
    config or the outputs it read changed since it ran. `current` names the stages this process has
    already brought up to date (a whole run checks nothing twice)."""
    layout = RunLayout.of(config.run_dir)
    for dep in _ancestors(_stages()[name]):
        if current is not None and dep in current:
            continue
        record = _record(layout, dep)
        if record is None:
            continue  # the stage that reads it directly says it must run first
        fingerprint, inputs, _ = _fingerprint(_stages()[dep], config, layout)
        if fingerprint == record["fingerprint"]:
            continue  # (its outputs, edited or not, enter the fingerprints of the stages that read them)
        started = layout.started(dep)
        before = read_json(started).get("inputs", {}) if started.is_file() else {}
        changed = ", ".join(differing_keys(before, inputs)) or "unrecorded"
        raise LearnKitError(
            f"stage '{name}' would read the outputs of stage '{dep}', which is out of date (changed since it "
            f"ran: {changed}); run `learn-kit run {config.source}` to bring every stage up to date"
        )


def run_stage(
    config: Config, name: str, force: bool = False, options: dict[str, Any] | None = None
) -> tuple[StageOutput, bool]:
    """Run one stage (or reuse its finished output). Returns (output, skipped)."""
    stage = _stages()[name]
    options = options or {}
    if not stage.enabled(config):
        raise LearnKitError(f"{config.source} has no '{name}' section: nothing to run for stage '{name}'")
    layout = RunLayout.of(config.run_dir)
    fingerprint, inputs, upstream = _fingerprint(stage, config, layout)
    stage_dir = layout.stage(name)
    record = _record(layout, name)
    if not force and record and record.get("fingerprint") == fingerprint:
        if record.get("outputs") == outputs_digest(stage_dir):
            log.info("stage %s: inputs and config unchanged, skipped", name)
            return StageOutput(record["metrics"], record.get("report", "")), True
        log.warning("stage %s: its outputs in %s changed after it finished; running it again", name, stage_dir)
    started = time.perf_counter()
    with storage_faults(layout, name):
        _prepare(stage, stage_dir, inputs, fingerprint, bool(options.get("resume")), layout.rank)
        _barrier(layout.world)
        log.info("stage %s: running", name)
        output = stage.run(Context(config=config, layout=layout, options=options))
    if layout.is_main:
        write_json(
            stage_dir / FINISHED,
            {
                "fingerprint": fingerprint,
                "outputs": outputs_digest(stage_dir),
                "metrics": output.metrics,
                "report": output.report,
                "upstream": upstream,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
    return output, False


@contextlib.contextmanager
def storage_faults(layout: RunLayout, name: str) -> Iterator[None]:
    """A full disk, a read-only folder or a missing permission inside a stage, whichever library met it,
    ends the command with one line naming the path and the errno. What the stage had half-written (staging
    folders, temporary files) is removed; the stage has no finished record, so the next run re-runs it."""

    def clean_up() -> None:
        if layout.world == 1:
            with contextlib.suppress(OSError):  # a read-only folder keeps them; the next start removes them
                remove_leftovers(layout.stage(name))

    try:
        yield
    except StorageError:  # already one line (an atomic write names its file)
        clean_up()
        raise
    except Exception as exc:
        fault = storage_fault(exc)
        if fault is None:
            raise
        clean_up()
        raise storage_error(fault[0], fault[1] or layout.stage(name), f"in stage '{name}'") from exc


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One writer per run directory. The lock is an flock, so the kernel releases it when its holder dies,
    however it dies; the next holder then removes what a killed run left behind and says what. Under
    torchrun rank 0 holds it for the whole job, and leftovers are not touched (other ranks are writing)."""
    layout = RunLayout.of(run_dir)
    if not layout.is_main:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LearnKitError(
                f"{run_dir} is in use by another learn-kit run ({holder}); wait for it to end, "
                "or give this config another `name`"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        if layout.world == 1:
            for path in remove_leftovers(run_dir):
                log.warning("removed %s, left behind by a killed run", path)
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_pipeline(config: Config, only: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Run every stage in order (or `only` these), then write metrics.json and the reports."""
    timings: dict[str, Any] = {}
    checked, current = False, set()
    with run_lock(config.run_dir):
        for name, stage in _stages().items():
            if (only and name not in only) or not stage.enabled(config):
                continue
            if name != "data" and not checked:  # the data as imported, before anything is trained on it
                preflight(config, RunLayout.of(config.run_dir))
                checked = True
            started = time.perf_counter()
            check_upstream(config, name, current)
            _, skipped = run_stage(config, name, force=force)
            current.add(name)
            timings[name] = {"skipped": skipped, "seconds": round(time.perf_counter() - started, 3)}
        return write_reports(config, timings)


def write_reports(config: Config, timings: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"run": {"name": config.name, "config": config.source, "version": __version__}}
    sections = []
    for name, stage in _stages().items():
        record = _record(RunLayout.of(config.run_dir), name)
        if record is None or not stage.enabled(config):
            continue
        metrics[stage.key] = record["metrics"]
        sections.append(record.get("report", ""))
    if timings:
        metrics["run"]["stages"] = timings
    sections.insert(0, run_summary(metrics))
    write_run_report(config.run_dir, f"learn-kit run `{config.name}`", sections, metrics)
    return metrics
