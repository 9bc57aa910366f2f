"""Ranking figures shaped like paper tables 6 and 7, the metrics.json tree and the per-segment plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eval.compare import METRICS, compare_models
from eval.segments import SEGMENTS
from learnkit.report import md_table

MODELS = ("baseline", "learn")


def ranking_metrics(rows: pd.DataFrame, bootstrap: int, seed: int, weight: str) -> dict[str, Any]:
    """rows: test rows with user_id, label, baseline, learn, user_segment, item_segment.
    Returns {baseline: {...}, learn: {...}, delta: {...}} with `segments.<user|item>.<segment>` in each."""

    def one(part: pd.DataFrame) -> dict[str, Any]:
        return compare_models(part["user_id"].to_numpy(), part["label"].to_numpy(), part["baseline"].to_numpy(),
                              part["learn"].to_numpy(), bootstrap=bootstrap, seed=seed, weight=weight)  # type: ignore[arg-type]

    overall = one(rows)
    out: dict[str, Any] = {"baseline": overall["a"], "learn": overall["b"], "delta": overall["delta"]}
    for model in (*MODELS, "delta"):
        out[model]["segments"] = {"user": {}, "item": {}}
    for kind in ("user", "item"):
        for segment in SEGMENTS:
            part = rows[rows[f"{kind}_segment"] == segment]
            share = len(part) / len(rows)
            if part.empty:
                empty = {**{m: float("nan") for m in METRICS}, "users_evaluated": 0, "users_excluded": 0, "rows": 0}
                result = {"a": dict(empty), "b": dict(empty),
                          "delta": {m: {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan} for m in METRICS}}
            else:
                result = one(part)
            for model, key in (("baseline", "a"), ("learn", "b")):
                out[model]["segments"][kind][segment] = {"share": share, **result[key]}
            out["delta"]["segments"][kind][segment] = {"share": share, **result["delta"]}
    return out


def _round(value: float) -> float | str:
    return round(value, 4) if np.isfinite(value) else "n/a"


def _pp(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:+.2f}"


def _interval(delta: dict[str, float]) -> str:
    if not np.isfinite(delta["value"]):
        return "n/a"
    return f"{_pp(delta['value'])} [{_pp(delta['ci_low'])}, {_pp(delta['ci_high'])}]"


def _verdict(delta: dict[str, float]) -> str:
    if not np.isfinite(delta["ci_low"]):
        return "undefined"
    if delta["ci_low"] > 0:
        return "LEARN better"
    if delta["ci_high"] < 0:
        return "baseline better"
    return "no clear difference"


def ranking_report(metrics: dict[str, Any], plot_path: Path, plot_link: str, samples_description: str,
                   bootstrap: int) -> str:
    base, learn, delta = metrics["baseline"], metrics["learn"], metrics["delta"]
    table6 = md_table(["model", "AUC", "UAUC", "WUAUC", "users with both classes", "users excluded"],
                      [[m, *(round(metrics[m][k], 4) for k in METRICS), metrics[m]["users_evaluated"],
                        metrics[m]["users_excluded"]] for m in MODELS]
                      + [["LEARN - baseline (pp, 95% CI)", *(_interval(delta[k]) for k in METRICS), "", ""]])
    rows = []
    for kind in ("user", "item"):
        for segment in SEGMENTS:
            d = delta["segments"][kind][segment]
            b, lr = base["segments"][kind][segment], learn["segments"][kind][segment]
            rows.append([kind, segment, f"{100 * d['share']:.1f}%", _round(b["UAUC"]), _round(lr["UAUC"]),
                         _interval(d["UAUC"]), _interval(d["AUC"]), _interval(d["WUAUC"]), _verdict(d["UAUC"])])
    table7 = md_table(["", "segment", "share of test samples", "UAUC baseline", "UAUC LEARN", "ΔUAUC pp",
                       "ΔAUC pp", "ΔWUAUC pp", "UAUC verdict"], rows)
    drawn = plot_segment_deltas(delta, plot_path)
    return ("## Ranking: the LEARN ranker against the ID baseline (paper tables 6 and 7)\n\n"
            f"Test rows: {base['rows']:,} ({samples_description}). UAUC averages the AUC of each user with both "
            "classes; WUAUC weights it by the user's number of samples. Intervals: 2.5 and 97.5 percentiles "
            f"over {bootstrap} bootstrap resamples of users.\n\n" + table6 + "\nBy segment (paper table 7):\n\n"
            + table7 + (f"\n![per-segment deltas]({plot_link})\n" if drawn else ""))


def plot_segment_deltas(delta: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
