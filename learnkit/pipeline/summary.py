"""The opening of report.md: what was trained, how well it retrieves, what the ranker gained where, and
what the simulated A/B test says, each figure read from the run's metrics (no framework)."""

from __future__ import annotations

from typing import Any

from eval.ab_report import cannot_tell
from eval.intervals import interval_sign
from learnkit.core.formatting import pct, pp, share

SEGMENT_NAMES = {"cold_start": "cold-start", "long_tail": "long-tail", "others": "other"}


def _pp_interval(block: dict[str, float]) -> str:
    return f"{pp(block['value'], 'pp')} [{pp(block['ci_low'], 'pp')}, {pp(block['ci_high'], 'pp')}]"


def _segment_title(kind: str, segment: str) -> str:
    return "items new in the test period" if segment == "new_in_test_period" else f"{SEGMENT_NAMES[segment]} {kind}s"


def _new_items_line(retrieval: dict[str, Any], methods: dict[str, Any]) -> list[str]:
    """The towers' R@50 on targets new in the test period, each against random with its interval."""
    period = retrieval.get("test_period")
    scored = {
        k: v["test_period"]["new_items"]
        for k, v in methods.items()
        if "ci" in v.get("test_period", {}).get("new_items", {})
    }
    if not period or not scored or "random" not in retrieval:
        return []
    first = next(f for f in next(iter(scored.values()))["ci"] if not f.startswith("vs_"))
    figure = "R@50" if all("R@50" in v["ci"] for v in scored.values()) else first
    random = retrieval["random"]["test_period"]["new_items"][figure]
    parts = []
    for name, block in scored.items():
        vs = block["ci"]["vs_random"][figure]
        parts.append(f"`{name}` {block[figure]:.4f} ({_pp_interval(vs)} against random)")
    return [
        f"- **Items new in the test period** ({period['targets_on_new_items']} targets on {period['new_items']} "
        f"new items; towers trained before the period, ranking every item that exists at each target's time): "
        f"{figure} " + ", ".join(parts) + f"; *random* {random:.4f}."
    ]


def run_summary(metrics: dict[str, Any]) -> str:
    lines = []
    data = metrics.get("data")
    if data:
        lines.append(
            f"- **Data**: {data.get('items', 0):,} items, {data.get('events', 0):,} events, "
            f"{data.get('rejected', 0)} rejected rows."
        )
    retrieval = metrics.get("retrieval")
    if retrieval:
        references = ("popularity", "random")
        methods = {k: v for k, v in retrieval.items() if isinstance(v, dict) and "N@10" in v and k not in references}
        if methods:
            key = "R@50" if all("R@50" in v for v in methods.values()) else "N@10"
            best = max(methods, key=lambda k: methods[k][key])
            lines.append(
                f"- **Retrieval** ({len(methods)} methods, full ranking): best {key} is `{best}` "
                f"({methods[best][key]:.4f}); "
                + ", ".join(f"`{k}` {v[key]:.4f}" for k, v in methods.items() if k != best)
                + "".join(f"; *{r}* {retrieval[r][key]:.4f}" for r in references if r in retrieval)
                + "."
            )
            lines += _new_items_line(retrieval, methods)
            below = retrieval.get("below_popularity") or {}
            if below:
                lines.append(
                    "- **Below popularity** (a bug to find, not a finding): "
                    + ", ".join(f"`{k}` on {', '.join(v)}" for k, v in below.items())
                    + "."
                )
    export = metrics.get("export")
    if export:
        lines.append(
            f"- **Export** `{export['version']}` of `{export['method']}`: {export['rows_users']:,} users "
            f"({export['users_with_embedding']:,} with history before the test period), "
            f"{export['rows_items']:,} items, {export['dim']}-d."
        )
    ranking = metrics.get("ranking")
    if ranking:
        delta = ranking["delta"]
        verdict = {1: "LEARN is better", -1: "the baseline is better", 0: "no clear difference"}
        judged = ranking.get("protocol", {})
        title = (
            f"**Tower check, not a ranker gain** ({judged['label']}; LEARN - baseline, 95% interval over users)"
            if judged.get("judges") == "towers"
            else f"**Ranking** ({judged.get('label', 'negatives not recorded')}; LEARN - baseline, 95% interval "
            "over users)"
        )
        lines.append(
            f"- {title}: UAUC {_pp_interval(delta['UAUC'])}, "
            f"WUAUC {pp(delta['WUAUC']['value'], 'pp')}, AUC {pp(delta['AUC']['value'], 'pp')}: "
            f"{verdict[interval_sign(delta['UAUC'])]} on UAUC."
        )
        selection = ranking.get("selection")
        if selection:
            valid = selection["valid_uauc"]
            lines.append(
                f"  `learn` is candidate `{selection['shipped']}`, chosen by validation UAUC "
                f"({valid[selection['shipped']]:.4f}; baseline {valid['baseline']:.4f})"
                + ("" if selection["beats_baseline"] else ": **no candidate beats the baseline on validation**")
                + ". Other candidates on test UAUC: "
                + ", ".join(
                    f"`{name}` {_pp_interval(d['UAUC'])}"
                    for name, d in ranking.get("deltas", {}).items()
                    if name not in ("learn", selection["shipped"])
                )
                + "."
            )
        better, worse = [], []
        for kind in ("user", "item"):
            for segment, figures in delta["segments"][kind].items():
                up = [f"{m} {pp(figures[m]['value'], 'pp')}" for m in ("UAUC", "AUC") if interval_sign(figures[m]) > 0]
                down = [
                    f"{m} {pp(figures[m]['value'], 'pp')}" for m in ("UAUC", "AUC") if interval_sign(figures[m]) < 0
                ]
                name = _segment_title(kind, segment)
                better += [f"{name} ({', '.join(up)})"] if up else []
                worse += [f"{name} ({', '.join(down)})"] if down else []
        lines.append(
            "  Segments where the interval excludes zero: LEARN better for "
            + (", ".join(better) or "none")
            + "; baseline better for "
            + (", ".join(worse) or "none")
            + "."
        )
    ab = metrics.get("ab")
    if ab:
        parts = []
        for name in ("replay", "simulated"):
            b = ab[name]
            if cannot_tell(b):
                parts.append(
                    f"{name}: cannot tell (re-ranking can change only "
                    f"{100 * (b.get('rerankable_share') or 0):.0f}% of the requests)"
                )
                continue
            sign = interval_sign(b)
            p_value = "n/a" if b["p_value"] is None else "< 0.001" if b["p_value"] < 0.001 else f"= {b['p_value']:.3f}"
            parts.append(
                f"{name} {pct(b['revenue_lift'])} [{pct(b['ci_low'])}, {pct(b['ci_high'])}], "
                f"p {p_value}"
                + (" (the interval excludes zero)" if sign else "")
                + f"; smallest lift this traffic detects at 80% power ±{pct(b['min_detectable_lift']).lstrip('+')}"
            )
        lines.append(
            "- **Simulated A/B** (revenue per user, treatment LEARN vs control baseline): "
            + "; ".join(parts)
            + f". A/A false-positive rate {share(ab['aa']['false_positive_rate'])} "
            f"over {ab['aa']['runs']} salts (nominal 5%)."
        )
    return "## Summary\n\n" + "\n".join(lines) + "\n" if lines else ""
