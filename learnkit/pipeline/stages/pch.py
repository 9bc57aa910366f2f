"""The pch stage: train and evaluate every configured retrieval method (torch, lazily), beside the
popularity and random reference rows ranked by the same evaluator on the same test users."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnkit.config import Config
from learnkit.core.formatting import md_table
from learnkit.core.fsutil import read_json, write_json, write_parquet
from learnkit.pipeline.runner import Context, StageOutput
from learnkit.pipeline.stages.data import read_items

log = logging.getLogger(__name__)
REFERENCES = ("popularity", "random")
PER_USER = "per_user.parquet"


def run_pch(ctx: Context) -> StageOutput:
    import torch

    from learn_embed.experiment import (
        Catalog,
        Scores,
        gallery_items,
        load_content,
        reference_scores,
        run_baseline_v1,
        run_learn,
    )
    from learnkit.data.splits import training_item_counts

    cfg = ctx.config.pch
    assert cfg is not None
    items = read_items(ctx.layout)
    events = pd.read_parquet(ctx.layout.events)
    examples, split_stats, events = _split(ctx.config, events)
    if ctx.layout.rank == 0:
        write_parquet(ctx.stage_dir / "split.parquet", examples)
    catalog = Catalog.from_ids(sorted(items["item_id"].tolist()))
    gallery = gallery_items(catalog, events, cfg.eval.gallery)
    counts = training_item_counts(examples, cfg.split.train_examples).reindex(catalog.ids, fill_value=0).to_numpy()
    cold = set(np.flatnonzero(counts == 0).tolist())
    test = examples[examples.part == "test"]
    encoders = sorted({m.encoder for m in cfg.methods.values() if m.encoder})
    content = load_content(ctx.layout.content(), encoders, catalog)
    resume = bool(ctx.options.get("resume"))
    aligned = cfg.split.train_examples == "sequence"
    results: dict[str, Any] = {}
    scores: dict[str, Scores] = {}
    for kind in REFERENCES:
        scores[kind] = reference_scores(kind, counts, gallery, test, catalog, cfg.eval, cold, ctx.config.seed)
        results[kind] = {**scores[kind].means(), "cold_items": scores[kind].cold_means()}
    for name, method in cfg.methods.items():
        out = ctx.stage_dir / name
        out.mkdir(parents=True, exist_ok=True)
        done = out / "metrics.json"
        if resume and done.is_file() and (out / PER_USER).is_file():
            results[name] = read_json(done)
            scores[name] = Scores.from_frame(pd.read_parquet(out / PER_USER))
            log.info("method %s: finished before the interruption, kept", name)
            continue
        log.info("method %s: %s", name, method.kind)
        torch.manual_seed(cfg.train.seed)
        if method.kind == "baseline_v1":
            if ctx.layout.rank != 0:
                continue
            assert method.encoder is not None
            results[name], scores[name] = run_baseline_v1(
                method,
                ctx.config.ceg.encoders[method.encoder],
                ctx.config.ceg.template,
                items,
                examples,
                catalog,
                gallery,
                content[method.encoder],
                cfg.eval,
                ctx.config.seed,
                cold,
            )
        else:
            model_config, train_config = cfg.method_configs(name)
            results[name], scores[name] = run_learn(
                name,
                method,
                model_config,
                train_config,
                cfg.eval,
                examples,
                catalog,
                gallery,
                content,
                out,
                resume,
                aligned,
                cold,
            )
        if ctx.layout.rank == 0:
            write_parquet(out / PER_USER, scores[name].to_frame())
            write_json(done, results[name])
    for name, interval in _intervals(
        scores, list(cfg.methods), cfg.eval.interval_metrics, cfg.eval.compare_to, cfg.eval.bootstrap, ctx.config.seed
    ).items():
        results[name]["ci"] = interval
    metrics: dict[str, Any] = {
        "split": split_stats,
        "gallery_items": int(len(gallery)),
        "test_users": int(len(test)),
        "cold_items_in_catalog": len(cold),
    }
    metrics.update(results)
    metrics["below_popularity"] = _below_popularity(results, list(cfg.methods), cfg.eval.interval_metrics)
    text = _pch_report(ctx.config, metrics, list(cfg.methods))
    if ctx.layout.rank == 0 and _plot_training_curves(results, cfg.eval.monitor_metric, ctx.stage_dir / "curves.png"):
        text += (
            "\nTraining loss and validation " + cfg.eval.monitor_metric + " per epoch:\n\n"
            "![training curves](pch/curves.png)\n"
        )
    return StageOutput(metrics, text)


def _split(config: Config, events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame]:
    """(examples, stats, the events PCH may see). With `boundary: test_period` the test targets are the
    users' events in the run's test period and training sees only what came before it; with
    `train_before_test_period` the whole split is made inside the events before it."""
    from learnkit.data.period import test_period
    from learnkit.data.splits import make_split

    cfg = config.pch
    assert cfg is not None
    on_period = cfg.split.kind == "temporal" and cfg.split.boundary == "test_period"
    period = test_period(events, config.test_period) if (cfg.train_before_test_period or on_period) else None
    if on_period:
        assert period is not None
        examples, stats = make_split(events, cfg.split, period.in_test)
        stats["test_period"] = period.description
        return examples, stats, events[~period.in_test]
    if period is not None:
        events = events[~period.in_test]
    examples, stats = make_split(events, cfg.split)
    if period is not None:
        stats["trained_before"] = period.description
    return examples, stats, events


def _intervals(
    scores: dict[str, Any], methods: list[str], figures: list[str], compare_to: str, bootstrap: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Bootstrap 95% intervals over test users: each row's figures and, paired on the same users, each
    method's difference to `compare_to`. Every row scored on all test users shares one set of resamples."""
    from eval.intervals import difference_interval, mean_interval, user_resamples

    everyone = scores[REFERENCES[0]].users
    shared = user_resamples(len(everyone), bootstrap, seed)
    frames = {
        name: pd.DataFrame({"user_id": s.users, **{f: s.per_user[f] for f in figures}}).set_index("user_id")
        for name, s in scores.items()
    }
    out: dict[str, dict[str, Any]] = {}
    for name in [*REFERENCES, *methods]:
        if name not in frames:
            continue
        frame = frames[name]
        same_users = list(frame.index) == everyone
        weights = shared if same_users else user_resamples(len(frame), bootstrap, seed)
        out[name] = {f: mean_interval(frame[f].to_numpy(), weights) for f in figures}
        if compare_to in frames and name != compare_to:
            reference = frames[compare_to].reindex(frame.index)
            out[name][f"vs_{compare_to}"] = {
                f: difference_interval(frame[f].to_numpy(), reference[f].to_numpy(), weights) for f in figures
            }
    return out


def _below_popularity(results: dict[str, Any], methods: list[str], figures: list[str]) -> dict[str, list[str]]:
    """Each method's figures that do not beat popularity: a learned model below it is a bug to find."""
    popularity = results["popularity"]
    below = {name: [f for f in figures if results[name][f] <= popularity[f]] for name in methods if name in results}
    return {name: found for name, found in below.items() if found}


def _plot_training_curves(results: dict[str, Any], monitor: str, path: Path) -> bool:
    from learnkit.core.frameworks import pyplot

    plt = pyplot()

    curves = {name: r["training"] for name, r in results.items() if r.get("training", {}).get("losses")}
    if not curves:
        return False
    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, training in curves.items():
        epochs = range(1, len(training["losses"]) + 1)
        loss_ax.plot(epochs, training["losses"], label=name)
        valid = [e.get(monitor) for e in training.get("valid", [])]
        if valid and all(v is not None for v in valid):
            valid_ax.plot(range(1, len(valid) + 1), valid, label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss")
    valid_ax.set(xlabel="epoch", ylabel=f"validation {monitor}")
    valid_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _with_interval(block: dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{block['value']:{sign}.4f} [{block['ci_low']:{sign}.4f}, {block['ci_high']:{sign}.4f}]"


def _pch_report(config: Config, metrics: dict[str, Any], methods: list[str]) -> str:
    from eval.intervals import interval_sign

    cfg = config.pch
    assert cfg is not None
    ks, figures, compare_to = cfg.eval.ks, cfg.eval.interval_metrics, cfg.eval.compare_to
    header = ["method"] + [f"{m}@{k}" for m in ("H", "R", "N") for k in ks] + ["epochs (best)", "converged"]
    rows = []
    for name in [*REFERENCES, *methods]:
        r = metrics[name]
        training = r.get("training", {})
        epochs = f"{training['epochs']} ({training.get('best_epoch') or '-'})" if "losses" in training else "-"
        converged = training.get("converged", "-") if "losses" in training else "-"
        rows.append(
            [f"*{name}*" if name in REFERENCES else name]
            + [round(r[f"{m}@{k}"], 4) for m in ("H", "R", "N") for k in ks]
            + [epochs, converged]
        )
    split = metrics["split"]
    where = split.get("test_period") or split.get("trained_before")
    text = (
        f"## Retrieval (PCH twin towers)\n\nSplit `{split['kind']}`"
        + (f" around the test period ({where})" if where else "")
        + f": {split['train_examples']} training ({split.get('example_kind', 'cuts')}), "
        f"{split['valid_examples']} validation and {split['test_examples']} test examples "
        f"({split['users_skipped']} users skipped for lack of history or target). Full ranking over "
        f"{metrics['gallery_items']} gallery items"
        + (", the user's history items excluded" if cfg.eval.exclude_history else "")
        + ". *popularity* (training-event counts) and *random* are reference rows ranked by the same "
        "evaluator on the same test users.\n\n" + md_table(header, rows)
    )
    below = metrics["below_popularity"]
    if below:
        text += (
            "\n\n**Below popularity** (a learned model that loses to a most-popular list is a bug to find, "
            "not a finding): " + "; ".join(f"`{n}` on {', '.join(f)}" for n, f in below.items()) + ".\n"
        )
    compared = compare_to in methods
    interval_rows = []
    for name in [*REFERENCES, *methods]:
        ci = metrics[name].get("ci")
        if not ci:
            continue
        row = [name] + [_with_interval(ci[f]) for f in figures]
        vs = ci.get(f"vs_{compare_to}")
        if compared:
            row += [
                (_with_interval(vs[f], signed=True) + (" *" if interval_sign(vs[f]) else "")) if vs else "-"
                for f in figures
            ]
        interval_rows.append(row)
    if interval_rows:
        text += (
            f"\n\nBootstrap 95% intervals over the {metrics['test_users']} test users ({cfg.eval.bootstrap} "
            "resamples"
            + (
                f"; differences to `{compare_to}` paired on the same users, * where the interval excludes zero"
                if compared
                else ""
            )
            + "):\n\n"
            + md_table(
                ["method", *figures, *([f"{f} - {compare_to}" for f in figures] if compared else [])], interval_rows
            )
        )
    cold_rows = [
        [name, metrics[name]["cold_items"]["users"]]
        + [_fmt(metrics[name]["cold_items"][f"{m}@{k}"]) for m in ("R", "N") for k in ks]
        for name in [*REFERENCES, *methods]
    ]
    text += (
        f"\n\nCold items: the test targets that never occur in the training events "
        f"({metrics['cold_items_in_catalog']} catalog items), scored on the same full ranking for the users "
        "who have one. Content input can reach them; ID input cannot.\n\n"
        + md_table(["method", "users", *[f"{m}@{k}" for m in ("R", "N") for k in ks]], cold_rows)
    )
    seeds = [
        [name, len(metrics[name]["seeds"]["seeds"])]
        + [f"{metrics[name]['seeds'][f]['mean']:.4f} ± {metrics[name]['seeds'][f]['std']:.4f}" for f in figures]
        for name in methods
        if "seeds" in metrics[name]
    ]
    if seeds:
        text += (
            "\n\nOver training seeds (mean ± sample standard deviation; the table above shows the first "
            "seed, the model that is exported):\n\n" + md_table(["method", "seeds", *figures], seeds)
        )
    return text + "\n"


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"
