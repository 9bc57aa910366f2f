"""The A/B section of the report: the summary table, the table-7-shaped segment table and the daily-lift
plot (paper Fig. 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eval.intervals import interval_sign
from eval.segments import SEGMENTS
from learnkit.core.formatting import md_table, pct, pp, share

ESTIMATORS = ("replay", "simulated")


def _with_ci(block: dict[str, Any], key: str = "revenue_lift", low: str = "ci_low", high: str = "ci_high") -> str:
    if block.get(key) is None or not np.isfinite(block[key]):
        return "n/a"
    return f"{pct(block[key])} [{pct(block[low])}, {pct(block[high])}]"


def _p(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def ab_report(
    result: dict[str, Any],
    ranking_delta: dict[str, Any] | None,
    plot_link: str | None,
    top_k: int,
    shares: tuple[float, float],
) -> str:
    rows = []
    for name in ESTIMATORS:
        b = result[name]
        rows.append(
            [
                name,
                _with_ci(b),
                _p(b["p_value"]),
                _with_ci(b["unadjusted"]),
                _p(b["unadjusted"]["p_value"]),
                _with_ci(b, "cvr_lift", "cvr_ci_low", "cvr_ci_high"),
                f"{share(b['aa']['false_positive_rate'])} of {b['aa']['runs']}",
            ]
        )
    summary = md_table(
        [
            "estimator",
            "revenue lift [95% CI]" + (" (CUPED)" if result["replay"]["cuped"] else ""),
            "p-value",
            "unadjusted lift",
            "unadjusted p",
            "CVR lift [95% CI]",
            "A/A false positives",
        ],
        rows,
    )
    seg_rows = []
    for kind in ("user", "item"):
        for segment in SEGMENTS:
            replay = result["replay"]["segments"][kind][segment]
            simulated = result["simulated"]["segments"][kind][segment]
            auc = (ranking_delta or {}).get("segments", {}).get(kind, {}).get(segment, {}).get("AUC", {}).get("value")
            seg_rows.append(
                [
                    kind,
                    segment,
                    share(replay["share"]),
                    _with_ci(replay),
                    _with_ci(simulated),
                    pp(auc, "pp"),
                ]
            )
    table7 = md_table(
        [
            "",
            "segment",
            "share of test samples",
            "revenue lift, replay",
            "revenue lift, simulated",
            "AUC delta (ranking)",
        ],
        seg_rows,
    )
    control, treatment = shares
    text = (
        "## Simulated A/B test: LEARN ranker (treatment) against the ID baseline (control)\n\n"
        f"Users are split by a salted hash: {100 * control:.0f}% control, {100 * treatment:.0f}% treatment "
        f"({result['users']['control']} and {result['users']['treatment']} users with test traffic; "
        f"{result['users']['unexposed']} unexposed). {result['requests']:,} requests (user-days over "
        f"{result['days']} days); each arm shows its top {top_k} of the request's logged candidates. "
        "**Replay** counts only logged outcomes. **Simulated** draws conversions from a separate response "
        f"model ({result['response_model']}; AUC {result['response_model_test_auc']:.3f} on the test rows it "
        "was fitted on). The response model sees only ids and categories, so it favours neither arm's LEARN "
        "features, but it is an ID model and leans towards what the ID baseline learns. Intervals: 2.5 and "
        "97.5 percentiles of a bootstrap over users; p-values: Welch's t-test on revenue per user. The A/A "
        "row serves both arms with the LEARN ranker under many salts: its share of p < 0.05 should be near 5%."
        "\n\n" + summary + "\nBy segment (paper table 7):\n\n" + table7
    )
    text = text.replace(
        "\n\n" + summary,
        "\n\nWhat this traffic can resolve, before the arms are compared (a "
        f"request whose candidates all fit in the top {top_k} is shown the same under either "
        "ranker):\n\n" + _resolution(result, top_k) + "\n" + summary,
        1,
    )
    verdict = _verdict(result)
    text += f"\n{verdict}\n"
    if plot_link:
        text += f"\n![daily revenue lift]({plot_link})\n"
    return text


def _resolution(result: dict[str, Any], top_k: int) -> str:
    rows = []
    for name in ESTIMATORS:
        b = result[name]
        per_request = b["candidates_per_request"]
        mde = b["min_detectable_lift"]
        rows.append(
            [
                name,
                share(b["single_candidate_share"]),
                share(b["rerankable_share"]),
                f"{per_request['mean']:.1f} (median {per_request['median']:g})",
                "n/a" if mde is None or not np.isfinite(mde) else f"±{share(mde)}",
            ]
        )
    return md_table(
        [
            "estimator",
            "requests with 1 candidate",
            f"requests with > {top_k} (re-rankable)",
            "candidates per request",
            "min. detectable revenue lift (80% power)",
        ],
        rows,
    )


def _verdict(result: dict[str, Any]) -> str:
    lines = []
    for name in ESTIMATORS:
        b = result[name]
        if cannot_tell(b):
            share = b.get("rerankable_share")
            lines.append(
                f"- {name}: this test cannot tell: re-ranking can change only "
                f"{'n/a' if share is None else f'{100 * share:.0f}%'} of the requests, so no lift is read "
                "from it."
            )
        elif b["revenue_lift"] is None or not np.isfinite(b["ci_low"]):
            lines.append(f"- {name}: the lift is undefined (no control revenue).")
        elif interval_sign(b) > 0:
            lines.append(
                f"- {name}: LEARN raised revenue per user by {pct(b['revenue_lift'])}; the interval excludes zero."
            )
        elif interval_sign(b) < 0:
            lines.append(
                f"- {name}: LEARN lowered revenue per user by {pct(b['revenue_lift'])}; the interval excludes zero."
            )
        else:
            lines.append(
                f"- {name}: {pct(b['revenue_lift'])}, but the interval includes zero: this test cannot "
                "tell the arms apart."
            )
    return "What it says:\n\n" + "\n".join(lines)


def cannot_tell(block: dict[str, Any], least_rerankable: float = 0.5) -> bool:
    """When re-ranking cannot change most requests, a lift is noise from the user split."""
    share = block.get("rerankable_share")
    return share is not None and (not np.isfinite(share) or share < least_rerankable)


def plot_daily_lift(result: dict[str, Any], path: Path) -> bool:
    from learnkit.core.frameworks import pyplot, save_figure

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    drawn = False
    for ax, name in zip(axes, ESTIMATORS, strict=True):
        daily = result[name]["daily"]
        days = [d["day"] + 1 for d in daily]
        lift = [
            100 * d["revenue_lift"] if d["revenue_lift"] is not None and np.isfinite(d["revenue_lift"]) else np.nan
            for d in daily
        ]
        cumulative = [
            100 * d["cumulative_revenue_lift"]
            if d["cumulative_revenue_lift"] is not None and np.isfinite(d["cumulative_revenue_lift"])
            else np.nan
            for d in daily
        ]
        if days:
            ax.bar(days, lift, color="#8ab", label="daily")
            ax.plot(days, cumulative, color="#c33", marker=".", label="cumulative")
            # a day with few users can swing by hundreds of percent: keep the cumulative line readable
            finite = np.abs([v for v in lift + cumulative if np.isfinite(v)] or [1.0])
            limit = max(20.0, 3 * np.nanmax(np.abs(cumulative[-3:])), float(np.percentile(finite, 80)))
            ax.set_ylim(-limit, limit)
            drawn = True
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(
            title=f"{name}: revenue per user, treatment vs control",
            xlabel="test day",
            ylabel="revenue lift (%, axis clipped)",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    if drawn:
        save_figure(fig, path)
    else:
        plt.close(fig)
    return drawn


# the figures of each estimator that metrics.json carries (report.json keeps everything)
ESTIMATOR_FIGURES = (
    "revenue_lift",
    "cvr_lift",
    "ci_low",
    "ci_high",
    "p_value",
    "cvr_ci_low",
    "cvr_ci_high",
    "unadjusted",
    "users",
    "cuped",
    "min_detectable_lift",
    "rerankable_share",
    "single_candidate_share",
    "candidates_per_request",
)


def ab_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The A/B test's figures for metrics.json: each estimator's lifts, intervals, resolution and segments,
    the A/A false-positive rates, and the traffic."""
    metrics: dict[str, Any] = {}
    for name in ESTIMATORS:
        block = result[name]
        metrics[name] = {k: block[k] for k in ESTIMATOR_FIGURES}
        metrics[name]["segments"] = block["segments"]
    metrics["aa"] = {
        "false_positive_rate": result["replay"]["aa"]["false_positive_rate"],
        "runs": result["replay"]["aa"]["runs"],
        "simulated_false_positive_rate": result["simulated"]["aa"]["false_positive_rate"],
    }
    for key in ("requests", "days", "widened_candidates", "single_candidate_share"):
        metrics[key] = result[key]
    return metrics
