"""`learn-kit`: run the whole pipeline, one stage, or fetch data.

learn-kit run CONFIG [--force] [--on-error drop] [--set KEY=VALUE ...]
learn-kit <stage> --config CONFIG [--set KEY=VALUE ...]  (ceg, i2i, pch, export, rank, ab; ceg, pch under torchrun)
learn-kit data fetch ml-100k|mind-small [--path DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from learnkit.core.errors import LearnKitError, storage_error, storage_fault

log = logging.getLogger("learnkit")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`--set a.b=value` pairs (the value read as YAML: `0.002`, `true`, `[1, 2]`, `{a: 1}`), then --on-error."""
    import yaml

    from learnkit.core.configload import parse_yaml

    overrides: dict[str, Any] = {}
    for pair in getattr(args, "set", None) or []:
        key, _, text = pair.partition("=")
        if not key or not _ or any(not part for part in key.split(".")):
            raise LearnKitError(f"--set {pair!r}: expected KEY=VALUE with a dotted key, e.g. pch.train.lr=0.002")
        try:
            overrides[key] = parse_yaml(text)
        except yaml.YAMLError as exc:
            raise LearnKitError(f"--set {pair!r}: the value is not YAML ({exc})") from exc
    if getattr(args, "on_error", None):
        overrides["data.on_error"] = args.on_error
    return overrides


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set pch.train.lr=0.002 (repeatable)",
    )


def _run(args: argparse.Namespace) -> int:
    from learnkit.config import load_config
    from learnkit.pipeline.runner import run_pipeline

    config = load_config(args.config, _overrides(args))
    metrics = run_pipeline(config, only=args.only, force=args.force)
    log.info("wrote %s/{metrics.json,report.md,report.html}", config.run_dir)
    stages = metrics["run"].get("stages", {})
    for name, info in stages.items():
        log.info("  %-5s %s (%.1f s)", name, "skipped (unchanged)" if info["skipped"] else "ran", info["seconds"])
    return 0


def _stage(args: argparse.Namespace) -> int:
    from learnkit.config import load_config
    from learnkit.pipeline.layout import RunLayout
    from learnkit.pipeline.preflight import preflight
    from learnkit.pipeline.runner import check_upstream, run_lock, run_stage, write_reports

    config = load_config(args.config, _overrides(args))
    layout = RunLayout.of(config.run_dir)
    if layout.world > 1:
        import torch
        import torch.distributed as dist

        # nccl between GPUs, gloo between CPU processes
        dist.init_process_group(
            "nccl"
            if torch.cuda.is_available() and config.pch is not None and config.pch.train.device == "cuda"
            else "gloo"
        )
    try:
        with run_lock(config.run_dir):
            if args.stage != "data":
                check_upstream(config, args.stage)
                preflight(config, layout)
            run_stage(
                config,
                args.stage,
                force=args.force or getattr(args, "resume", False),
                options={"resume": getattr(args, "resume", False)},
            )
            if layout.is_main:
                write_reports(config)
    finally:
        if layout.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from learnkit.data.fetch import fetch

    fetched = fetch(args.name, path=args.path, allow_download=not args.no_download)
    print(f"{args.name}: {fetched.path} (format {fetched.format}, from {fetched.origin}, verified)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from learnkit.pipeline.runner import stage_names

    parser = argparse.ArgumentParser(
        prog="learn-kit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every stage of CONFIG into runs/<name>/ (unchanged stages skipped)")
    run.add_argument("config")
    run.add_argument("--only", nargs="+", choices=stage_names(), help="run only these stages")
    run.add_argument("--force", action="store_true", help="re-run stages even if unchanged")
    run.add_argument("--on-error", choices=["fail", "drop"], help="override data.on_error")
    _add_set(run)
    run.set_defaults(func=_run)

    for name in stage_names():
        if name == "data":
            continue
        aliases = ["rank"] if name == "ranking" else []
        stage = sub.add_parser(name, aliases=aliases, help=f"run the {name} stage alone")
        stage.add_argument("--config", required=True)
        stage.add_argument("--force", action="store_true")
        if name == "pch":
            stage.add_argument(
                "--resume", action="store_true", help="continue an interrupted training from its last checkpoint"
            )
        _add_set(stage)
        stage.set_defaults(func=_stage, stage=name)

    data = sub.add_parser("data", help="import a dataset (data import) or fetch a known one (data fetch)")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="find or download a known dataset and verify its sha256")
    fetch.add_argument("name")
    fetch.add_argument("--path", help="look here first")
    fetch.add_argument("--no-download", action="store_true")
    fetch.set_defaults(func=_fetch)
    imp = data_sub.add_parser("import", help="run the data stage: canonical tables + validation report")
    imp.add_argument("--config", required=True)
    imp.add_argument("--force", action="store_true")
    imp.add_argument("--on-error", choices=["fail", "drop"], help="override data.on_error")
    _add_set(imp)
    imp.set_defaults(func=_stage, stage="data")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args)
    except LearnKitError as exc:
        log.error("%s", exc)
        return 2
    except Exception as exc:
        fault = storage_fault(exc)  # outside a stage: the run folder, its lock, the reports
        if fault is None:
            raise
        log.debug("the fault in full", exc_info=exc)
        log.error("%s", storage_error(*fault))
        return 2


if __name__ == "__main__":
    sys.exit(main())
