"""Ranking figures shaped like paper tables 6 and 7, the metrics.json tree and the per-segment plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eval.compare import METRICS, compare_models
from eval.intervals import interval_sign
from eval.segments import SEGMENTS
from learnkit.core.formatting import Markup, md_table, pp, share

MODELS = ("baseline", "learn", "learn_similarity")
LABELS = {"learn": "LEARN", "learn_similarity": "LEARN + similarity"}
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


def ranking_metrics(rows: pd.DataFrame, bootstrap: int, seed: int, weight: str) -> dict[str, Any]:
    """rows: test rows with user_id, label, user_segment, item_segment and a score column per model
    (`baseline` and any of `learn`, `learn_similarity`). Returns {<model>: {...}, deltas: {<model>: {...}}}
    with `segments.<user|item>.<segment>` in each; every delta is against the baseline on the same users'
    resamples, and `delta` is LEARN's (paper Fig. 5)."""
    models = [m for m in MODELS if m in rows.columns]
    out: dict[str, Any] = {"deltas": {}}
    for model in models[1:]:
        result = _compare(rows, "baseline", model, bootstrap, seed, weight)
        out["baseline"], out[model], out["deltas"][model] = result["a"], result["b"], result["delta"]
    if REFERENCE in rows.columns:
        out[REFERENCE] = _compare(rows, "baseline", REFERENCE, bootstrap, seed, weight)["b"]
    out["delta"] = out["deltas"].get("learn")
    return out


def _compare(rows: pd.DataFrame, a: str, b: str, bootstrap: int, seed: int, weight: str) -> dict[str, Any]:
    """compare_models overall and on every segment: {"a", "b", "delta"}, each with `segments`."""

    def one(part: pd.DataFrame) -> dict[str, Any]:
        return compare_models(
            part["user_id"].to_numpy(),
            part["label"].to_numpy(),
            part[a].to_numpy(),
            part[b].to_numpy(),
            bootstrap=bootstrap,
            seed=seed,
            weight=weight,
        )  # type: ignore[arg-type]

    out = one(rows)
    for key in ("a", "b", "delta"):
        out[key]["segments"] = {"user": {}, "item": {}}
    for kind in ("user", "item"):
        for segment in SEGMENTS:
            part = rows[rows[f"{kind}_segment"] == segment]
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
    rows = [
        [
            name,
            t["epochs_run"],
            t["best_epoch"],
            t["history"][t["best_epoch"] - 1].get("val_main_auc", "n/a"),
            t["examples_per_s"],
            f"{t['savedmodel_max_abs_diff']:.1e}",
        ]
        for name, t in training.items()
    ]
    header = ["model", "epochs run", "best epoch", "validation AUC", "examples/s"]
    return "\nTraining (Adam, early stopping on the validation slice's AUC, the best epoch kept):\n\n" + md_table(
        [*header, "SavedModel vs trained model, max abs diff"], rows
    )


def _tables(
    metrics: dict[str, Any],
    plot_path: Path,
    plot_link: str,
    samples_description: str,
    bootstrap: int,
    judged: dict[str, Any],
) -> str:
    models = [m for m in MODELS if m in metrics]
    base = metrics["baseline"]
    shown = [*([REFERENCE] if REFERENCE in metrics else []), *models]
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
            [f"{LABELS[m]} - baseline (pp, 95% CI)", *(_interval(metrics["deltas"][m][k]) for k in METRICS), "", ""]
            for m in models[1:]
        ],
    )
    rows = []
    for kind in ("user", "item"):
        for segment in SEGMENTS:
            b = base["segments"][kind][segment]
            row = [kind, segment, share(b["share"]), b.get("rows", "n/a"), _round(b["UAUC"])]
            for model in models[1:]:
                d = metrics["deltas"][model]["segments"][kind][segment]
                row += [
                    _round(metrics[model]["segments"][kind][segment]["UAUC"]),
                    _interval(d["UAUC"]),
                    _interval(d["AUC"]),
                    _verdict(d["UAUC"]),
                ]
            rows.append(row)
    header = ["", "segment", "share of test samples", "rows", "UAUC baseline"]
    for model in models[1:]:
        header += [f"UAUC {LABELS[model]}", "ΔUAUC pp", "ΔAUC pp", "UAUC verdict"]
    table7 = md_table(header, rows)
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
        "every user. The same samples train and test every model: "
        "the ID baseline; LEARN (paper Fig. 5: the auxiliary network over the LEARN vectors, fused into the "
        "main tower); LEARN + similarity (Fig. 5 with the user . item score of the LEARN vectors as one "
        "more input). UAUC averages the AUC of each user with both classes; WUAUC weights it by the user's "
        "number of samples. Intervals: 2.5 and 97.5 percentiles over "
        f"{bootstrap} bootstrap resamples of users.\n\n" + table6 + "\nBy segment (paper table 7), with each "
        "segment's rows (its reference size):\n\n"
        + table7
        + (f"\n![per-segment deltas]({plot_link})\n" if drawn else "")
    )


def plot_segment_deltas(delta: dict[str, Any], path: Path) -> bool:
    from learnkit.core.frameworks import pyplot, save_figure

    plt = pyplot()

    labels, values, lows, highs = [], [], [], []
    for kind in ("user", "item"):
        for segment in SEGMENTS:
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
