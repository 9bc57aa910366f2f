"""Ranking figures shaped like paper tables 6 and 7, the metrics.json tree and the per-segment plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eval.compare import METRICS, compare_models
from eval.intervals import interval_sign
from eval.segments import segment_masks
from learnkit.core.formatting import Markup, md_table, pp, share
from learnkit.core.sql import EngineConfig

REFERENCE = "popularity"  # a reference row: the item's positive training samples, the same for every user


def protocol(samples: dict[str, Any]) -> dict[str, Any]:
    """What the ranking figures can judge, named by their negatives: logged impressions judge a ranker;
    sampled negatives (random items beside each conversion) only check the towers, since any good retrieval
    score tells a converted item from random ones, and a production ranker never sees random exposures."""
    if samples.get("negatives") == "logged":
        return {"negatives": "logged", "judges": "ranker", "label": "logged negatives (the data's own non-conversions)"}
    k = samples.get("negatives_per_conversion")
    return {
        "negatives": "sampled",
        "per_conversion": k,
        "judges": "towers",
        "label": f"sampled negatives ({k} random items per conversion): a tower check, not a ranker gain",
    }


def ranking_metrics(
    rows: pd.DataFrame, models: list[str], bootstrap: int, seed: int, weight: str, engine: EngineConfig | None = None
) -> dict[str, Any]:
    """rows: test rows with user_id, label, user_segment, item_segment and a score column per model
    (`baseline` and each of `models`, the shipped `learn` first). Returns {<model>: {...}, deltas: {<model>:
    {...}}}, every delta against the baseline on the same users' resamples; the shipped `learn` (`delta`, paper
    Fig. 5) and the baseline carry `segments.<user|item>.<segment>` too."""
    out: dict[str, Any] = {"deltas": {}}
    for model in models:
        result = _compare(rows, "baseline", model, bootstrap, seed, weight, engine, segments=model == "learn")
        out["baseline"] = out.get("baseline") or result["a"]
        out[model], out["deltas"][model] = result["b"], result["delta"]
    if REFERENCE in rows.columns:
        out[REFERENCE] = _compare(rows, "baseline", REFERENCE, bootstrap, seed, weight, engine)["b"]
    out["delta"] = out["deltas"].get("learn")
    return out


def _compare(
    rows: pd.DataFrame,
    a: str,
    b: str,
    bootstrap: int,
    seed: int,
    weight: str,
    engine: EngineConfig | None,
    segments: bool = True,
) -> dict[str, Any]:
    """compare_models overall and (`segments`) on every segment: {"a", "b", "delta"}, each with `segments`."""

    def one(part: pd.DataFrame) -> dict[str, Any]:
        return compare_models(
            part["user_id"].to_numpy(),
            part["label"].to_numpy(),
            part[a].to_numpy(),
            part[b].to_numpy(),
            bootstrap=bootstrap,
            seed=seed,
            weight=weight,  # type: ignore[arg-type]
            engine=engine,
        )

    out = one(rows)
    if not segments:
        return out
    for key in ("a", "b", "delta"):
        out[key]["segments"] = {"user": {}, "item": {}}
    for kind, masks in segment_masks(rows).items():
        for segment, mask in masks.items():
            part = rows[mask]
            share = len(part) / len(rows)
            if part.empty:
                empty = {**{m: float("nan") for m in METRICS}, "users_evaluated": 0, "users_excluded": 0, "rows": 0}
                result = {
                    "a": dict(empty),
                    "b": dict(empty),
                    "delta": {m: {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan} for m in METRICS},
                }
            else:
                result = one(part)
            for key in ("a", "b", "delta"):
                out[key]["segments"][kind][segment] = {"share": share, **result[key]}
    return out


def _round(value: float) -> float | str:
    return round(value, 4) if np.isfinite(value) else "n/a"


def _interval(delta: dict[str, float]) -> str:
    if not np.isfinite(delta["value"]):
        return "n/a"
    return f"{pp(delta['value'])} [{pp(delta['ci_low'])}, {pp(delta['ci_high'])}]"


def _verdict(delta: dict[str, float]) -> str:
    if not np.isfinite(delta["ci_low"]):
        return "undefined"
    return {1: "LEARN better", -1: "baseline better", 0: "no clear difference"}[interval_sign(delta)]


def ranking_report(
    metrics: dict[str, Any], plot_path: Path, plot_link: str, samples_description: str, bootstrap: int
) -> str:
    """The ranking section: paper tables 6 and 7 with the per-segment plot, then the user vectors' coverage
    (from `metrics.samples`) and each ranker's training (from `metrics.training`) where present."""
    text = _tables(metrics, plot_path, plot_link, samples_description, bootstrap, metrics["protocol"])
    if "test_rows_with_user_vector" in metrics.get("samples", {}):
        text += _coverage_text(metrics["samples"])
    if "training" in metrics:
        text += _training_table(metrics["training"])
    return text


def _coverage_text(samples: dict[str, Any]) -> str:
    return (
        "\nUser vectors are joined point in time: each sample reads its user's newest snapshot row valid at "
        "or before it, built only from earlier events (the export's `user_snapshots`). "
        f"{share(samples['test_rows_with_user_vector'])} of the test rows carry a real user vector "
        f"({share(samples['test_rows_with_user_vector_single_snapshot'])} with one snapshot at each "
        "user's test-period start). Of the test rows whose user has any earlier interaction, "
        f"{share(samples['test_rows_with_history_and_vector'])} carry a vector; the others "
        f"({share(samples['test_rows_awaiting_first_snapshot'])} of all test rows) come from users whose "
        "whole history falls after the last snapshot before them (`export.snapshot_every`: "
        "`event` refreshes a user after each event).\n"
    )


def _training_table(training: dict[str, Any]) -> str:
    def best(t: dict[str, Any], key: str) -> Any:
        entry = next((h for h in t["history"] if h["epoch"] == t["best_epoch"]), {})
        return entry.get(key, "-")

    rows = [
        [
            name,
            t["epochs_run"],
            "0 (the untrained start)" if t["best_epoch"] == 0 else t["best_epoch"],
            best(t, "val_main_auc"),
            best(t, "val_uauc"),
            t["examples_per_s"],
            f"{t['savedmodel_max_abs_diff']:.1e}" if "savedmodel_max_abs_diff" in t else "-",
        ]
        for name, t in training.items()
    ]
    header = ["model", "epochs run", "best epoch", "validation AUC", "validation UAUC", "examples/s"]
    return (
        "\nTraining (Adam; early stopping on the validation slice's AUC, or, for a residual candidate, on its "
        "UAUC with the untrained start as epoch 0; the best epoch kept):\n\n"
        + md_table([*header, "SavedModel vs trained model, max abs diff"], rows)
    )


def _selection_text(selection: dict[str, Any]) -> str:
    """Which candidate ships as `learn`, by validation UAUC, and every ranker's figures over the seeds."""
    shipped, valid = selection["shipped"], selection["valid_uauc"]
    text = (
        f"\n**Shipped `learn`: candidate `{shipped}`**, the best validation UAUC of the candidates "
        f"({valid[shipped]:.4f} against the baseline's {valid['baseline']:.4f}; the validation slice is the "
        "newest share of the training period, after the training rows in time). "
    )
    if not selection["beats_baseline"]:
        text += (
            "**No candidate beats the ID baseline on validation UAUC**: the LEARN features do not help this "
            "ranker here, and the export ships all the same. "
        )
    seeds = selection["seeds"]
    rows = []
    for name, figures in selection["per_seed"].items():
        row = [Markup(f"`{name}`") if name == shipped else name]
        for key in ("valid_uauc", "test_uauc"):
            values = np.asarray(figures[key], dtype=float)
            spread = f" ± {values.std():.4f}" if len(values) > 1 else ""
            row.append(f"{np.nanmean(values):.4f}{spread}")
        rows.append(row)
    label = f"mean ± spread over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
    return (
        text
        + f"Validation and test UAUC of every ranker ({label}):\n\n"
        + md_table(["ranker", "validation UAUC", "test UAUC"], rows)
    )


def _tables(
    metrics: dict[str, Any],
    plot_path: Path,
    plot_link: str,
    samples_description: str,
    bootstrap: int,
    judged: dict[str, Any],
) -> str:
    compared = list(metrics["deltas"])  # the shipped `learn` first, then every candidate
    base = metrics["baseline"]
    shown = [*([REFERENCE] if REFERENCE in metrics else []), "baseline", *compared]
    table6 = md_table(
        ["model", "AUC", "UAUC", "WUAUC", "users with both classes", "users excluded"],
        [
            [
                Markup(f"*{m}*") if m == REFERENCE else m,
                *(_round(metrics[m][k]) for k in METRICS),
                metrics[m]["users_evaluated"],
                metrics[m]["users_excluded"],
            ]
            for m in shown
        ]
        + [
            [f"{m} - baseline (pp, 95% CI)", *(_interval(metrics["deltas"][m][k]) for k in METRICS), "", ""]
            for m in compared
        ],  # fmt: skip
    )
    rows = []
    for kind in ("user", "item"):
        for segment in base["segments"][kind]:
            b = base["segments"][kind][segment]
            d = metrics["deltas"]["learn"]["segments"][kind][segment]
            rows.append(
                [
                    kind,
                    segment,
                    share(b["share"]),
                    b.get("rows", "n/a"),
                    _round(b["UAUC"]),
                    _round(metrics["learn"]["segments"][kind][segment]["UAUC"]),
                    _interval(d["UAUC"]),
                    _interval(d["AUC"]),
                    _verdict(d["UAUC"]),
                ]  # fmt: skip
            )
    header = ["", "segment", "share of test samples", "rows", "UAUC baseline", "UAUC learn", "ΔUAUC pp", "ΔAUC pp"]
    table7 = md_table([*header, "UAUC verdict"], rows)
    drawn = plot_segment_deltas(metrics["delta"], plot_path) if metrics.get("delta") else False
    return (
        (
            "## Ranking on logged negatives: the LEARN rankers against the ID baseline (paper tables 6 and 7)\n\n"
            if judged["judges"] == "ranker"
            else "## Tower check on sampled negatives, not a ranker gain (the layout of paper tables 6 and 7)\n\n"
            "These samples put random items beside each conversion: any good retrieval score separates them, "
            "and a production ranker never sees random exposures, so the figures below check the LEARN "
            "towers and say nothing of a gain over a ranker trained on logged impressions.\n\n"
        )
        + f"Negatives: {judged['label']}. Test rows: {base['rows']:,} ({samples_description}). "
        "*popularity* is a reference row: each item scored by its positive training samples, the same for "
        "every user. The same samples train and test every model: the ID baseline and each candidate LEARN "
        "ranker (`fig5`: paper Fig. 5, the auxiliary network over the LEARN vectors fused into the main tower; "
        "`_similarity`: with the user . item score of the LEARN vectors as one more input; `residual`: the "
        "LEARN branch added to the trained baseline's logit, starting at zero). `learn` is the shipped one. UAUC "
        "averages the AUC of each user with both classes; WUAUC weights it by the user's number of samples. "
        f"Intervals: 2.5 and 97.5 percentiles over {bootstrap} bootstrap resamples of users.\n\n"
        + table6
        + (_selection_text(metrics["selection"]) if "selection" in metrics else "")
        + "\nThe shipped `learn` by segment (paper table 7), with each segment's rows (its reference size):\n\n"
        + table7
        + (f"\n![per-segment deltas]({plot_link})\n" if drawn else "")
    )


def plot_segment_deltas(delta: dict[str, Any], path: Path) -> bool:
    from learnkit.core.frameworks import pyplot, save_figure

    plt = pyplot()

    labels, values, lows, highs = [], [], [], []
    for kind in ("user", "item"):
        for segment in delta["segments"][kind]:
            d = delta["segments"][kind][segment]["UAUC"]
            if np.isfinite(d["value"]) and np.isfinite(d["ci_low"]):
                labels.append(f"{kind}\n{segment}")
                values.append(100 * d["value"])
                lows.append(100 * (d["value"] - d["ci_low"]))
                highs.append(100 * (d["ci_high"] - d["value"]))
    overall = delta["UAUC"]
    if np.isfinite(overall["ci_low"]):
        labels.insert(0, "all")
        values.insert(0, 100 * overall["value"])
        lows.insert(0, 100 * (overall["value"] - overall["ci_low"]))
        highs.insert(0, 100 * (overall["ci_high"] - overall["value"]))
    if not labels:
        return False
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.errorbar(range(len(labels)), values, yerr=[lows, highs], fmt="o", capsize=4)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("UAUC, LEARN - baseline (pp)")
    ax.set_title("UAUC difference with 95% bootstrap interval")
    fig.tight_layout()
    save_figure(fig, path)
    return True
