"""The retrieval comparison's evaluation and report: bootstrap intervals over test users, the
below-popularity check, the tables and the training curves. Numpy and pandas only: the per-user figures
arrive as frames (user_id and one column per figure), whichever framework scored them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from eval.intervals import difference_interval, interval_sign, mean_interval, user_resamples
from learnkit.core.formatting import Markup, md_table


class RetrievalSettings(Protocol):
    """What the evaluation reads of the retrieval config (`pch.eval`)."""

    ks: list[int]
    exclude_history: bool
    monitor_metric: str
    interval_metrics: list[str]
    compare_to: str
    bootstrap: int


def with_intervals(
    metrics: dict[str, Any],
    per_user: dict[str, pd.DataFrame],
    references: tuple[str, ...],
    methods: list[str],
    settings: RetrievalSettings,
    seed: int,
    period_per_user: dict[str, pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """`metrics` with each row's bootstrap intervals (`<row>.ci`) and `below_popularity` added, and the test
    period's (`with_period_intervals`) where `period_per_user` holds rows."""
    rows, figures = [*references, *methods], settings.interval_metrics
    for name, interval in _intervals(per_user, rows, figures, settings.compare_to, settings.bootstrap, seed).items():
        metrics[name]["ci"] = interval
    metrics["below_popularity"] = below_popularity(metrics, methods, settings.interval_metrics)
    return with_period_intervals(metrics, period_per_user or {}, references, methods, settings, seed)


def _intervals(
    per_user: dict[str, pd.DataFrame], rows: list[str], figures: list[str], compare_to: str, bootstrap: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Bootstrap 95% intervals over test users: each row's figures and, paired on the same users, each
    row's difference to `compare_to`. Every row scored on all test users shares one set of resamples (the
    first row, a reference, is scored on all of them)."""
    frames = {name: frame.set_index("user_id")[figures] for name, frame in per_user.items()}
    everyone = list(frames[rows[0]].index)
    shared = user_resamples(len(everyone), bootstrap, seed)
    out: dict[str, dict[str, Any]] = {}
    for name in rows:
        if name not in frames:
            continue
        frame = frames[name]
        weights = shared if list(frame.index) == everyone else user_resamples(len(frame), bootstrap, seed)
        out[name] = {f: mean_interval(frame[f].to_numpy(), weights) for f in figures}
        if compare_to in frames and name != compare_to:
            reference = frames[compare_to].reindex(frame.index)
            out[name][f"vs_{compare_to}"] = {
                f: difference_interval(frame[f].to_numpy(), reference[f].to_numpy(), weights) for f in figures
            }
    return out


def with_period_intervals(
    metrics: dict[str, Any],
    period_per_user: dict[str, pd.DataFrame],
    references: tuple[str, ...],
    methods: list[str],
    settings: RetrievalSettings,
    seed: int,
) -> dict[str, Any]:
    """`metrics` with the test period's intervals added to each scored row's `test_period` block: on all its
    targets (differences to `compare_to`), and on the targets new in the test period (`new_items.ci`,
    differences to random: popularity cannot reach an item with no interaction before the period)."""
    if not period_per_user:
        return metrics
    rows = [r for r in [*references, *methods] if r in period_per_user]
    figures = settings.interval_metrics
    on_all = {r: f[["user_id", *figures]] for r, f in period_per_user.items()}
    on_new = {
        r: f[["user_id", *(f"cold_{g}" for g in figures)]].dropna().set_axis(["user_id", *figures], axis=1)
        for r, f in period_per_user.items()
    }
    everyone = _intervals(on_all, rows, figures, settings.compare_to, settings.bootstrap, seed)
    new = _intervals(on_new, rows, figures, "random", settings.bootstrap, seed) if len(on_new[rows[0]]) else {}
    for name in rows:
        block = metrics[name]["test_period"]
        block["ci"] = everyone[name]
        if name in new:
            block["new_items"]["ci"] = new[name]
    return metrics


def below_popularity(metrics: dict[str, Any], methods: list[str], figures: list[str]) -> dict[str, list[str]]:
    """Each method's figures that do not beat popularity: a learned model below it is a bug to find."""
    popularity = metrics["popularity"]
    below = {name: [f for f in figures if metrics[name][f] <= popularity[f]] for name in methods if name in metrics}
    return {name: found for name, found in below.items() if found}


def plot_training_curves(metrics: dict[str, Any], monitor: str, path: Path) -> bool:
    """Training loss and the validation figure per epoch of every trained row; False when none trained."""
    from learnkit.core.frameworks import pyplot, save_figure

    curves = {
        name: r["training"]
        for name, r in metrics.items()
        if isinstance(r, dict) and r.get("training", {}).get("losses")
    }
    if not curves:
        return False
    plt = pyplot()
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
    save_figure(fig, path)
    return True


def retrieval_report(
    metrics: dict[str, Any],
    references: tuple[str, ...],
    methods: list[str],
    settings: RetrievalSettings,
    curves: str | None = None,
) -> str:
    """The report section: the figures beside the references, the intervals, cold items and seeds.
    `curves` is the training-curve plot's path relative to the report, when one was drawn."""
    rows = [*references, *methods]
    text = _figures_table(metrics, references, rows, settings) + _below_text(metrics["below_popularity"])
    text += _interval_table(metrics, rows, methods, settings)
    text += _cold_table(metrics, rows, settings.ks) + _seed_table(metrics, methods, settings.interval_metrics)
    text += _period_table(metrics, rows, settings)
    text += "\n"
    if curves:
        text += f"\nTraining loss and validation {settings.monitor_metric} per epoch:\n\n![training curves]({curves})\n"
    return text


def _figures_table(
    metrics: dict[str, Any], references: tuple[str, ...], rows: list[str], settings: RetrievalSettings
) -> str:
    ks = settings.ks
    header = ["method"] + [f"{m}@{k}" for m in ("H", "R", "N") for k in ks] + ["epochs (best)", "converged"]
    table = []
    for name in rows:
        r = metrics[name]
        training = r.get("training", {})
        epochs = f"{training['epochs']} ({training.get('best_epoch') or '-'})" if "losses" in training else "-"
        converged = training.get("converged", "-") if "losses" in training else "-"
        table.append(
            [Markup(f"*{name}*") if name in references else name]
            + [round(r[f"{m}@{k}"], 4) for m in ("H", "R", "N") for k in ks]
            + [epochs, converged]
        )
    split = metrics["split"]
    where = split.get("test_period") or split.get("trained_before")
    return (
        f"## Retrieval (PCH twin towers)\n\nSplit `{split['kind']}`"
        + (f" around the test period ({where})" if where else "")
        + f": {split['train_examples']} training ({split.get('example_kind', 'cuts')}), "
        f"{split['valid_examples']} validation and {split['test_examples']} test examples "
        f"({split['users_skipped']} users skipped for lack of history or target). Full ranking over "
        f"{metrics['gallery_items']} gallery items"
        + (", the user's history items excluded" if settings.exclude_history else "")
        + ". *popularity* (training-event counts) and *random* are reference rows ranked by the same "
        "evaluator on the same test users.\n\n" + md_table(header, table)
    )


def _below_text(below: dict[str, list[str]]) -> str:
    if not below:
        return ""
    return (
        "\n\n**Below popularity** (a learned model that loses to a most-popular list is a bug to find, "
        "not a finding): " + "; ".join(f"`{n}` on {', '.join(f)}" for n, f in below.items()) + ".\n"
    )


def _with_interval(block: dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{block['value']:{sign}.4f} [{block['ci_low']:{sign}.4f}, {block['ci_high']:{sign}.4f}]"


def _difference(block: dict[str, float]) -> Markup:
    """A paired difference with its interval, starred where the interval excludes zero."""
    return Markup(_with_interval(block, signed=True) + (" *" if interval_sign(block) else ""))


def _interval_table(metrics: dict[str, Any], rows: list[str], methods: list[str], settings: RetrievalSettings) -> str:
    figures, compare_to = settings.interval_metrics, settings.compare_to
    compared = compare_to in methods
    table = []
    for name in rows:
        ci = metrics[name].get("ci")
        if not ci:
            continue
        row = [name] + [_with_interval(ci[f]) for f in figures]
        vs = ci.get(f"vs_{compare_to}")
        if compared:
            row += [_difference(vs[f]) if vs else "-" for f in figures]
        table.append(row)
    if not table:
        return ""
    paired = f"; differences to `{compare_to}` paired on the same users, * where the interval excludes zero"
    return (
        f"\n\nBootstrap 95% intervals over the {metrics['test_users']} test users ({settings.bootstrap} resamples"
        + (paired if compared else "")
        + "):\n\n"
        + md_table(["method", *figures, *([f"{f} - {compare_to}" for f in figures] if compared else [])], table)
    )


def _cold_table(metrics: dict[str, Any], rows: list[str], ks: list[int]) -> str:
    table = [
        [name, metrics[name]["cold_items"]["users"]]
        + [_fmt(metrics[name]["cold_items"][f"{m}@{k}"]) for m in ("R", "N") for k in ks]
        for name in rows
    ]
    return (
        f"\n\nCold items: the test targets that never occur in the training events "
        f"({metrics['cold_items_in_catalog']} catalog items), scored on the same full ranking for the users "
        "who have one. Content input can reach them; ID input cannot.\n\n"
        + md_table(["method", "users", *[f"{m}@{k}" for m in ("R", "N") for k in ks]], table)
    )


def _period_table(metrics: dict[str, Any], rows: list[str], settings: RetrievalSettings) -> str:
    """The towers scored in the test period: on all its targets and on those new in it, with intervals."""
    period = metrics.get("test_period")
    if not period:
        return ""
    figures = settings.interval_metrics
    scored = [r for r in rows if "ci" in metrics[r].get("test_period", {})]
    table = []
    for name in scored:
        block = metrics[name]["test_period"]
        new = block["new_items"]
        row = [Markup(f"*{name}*") if name in ("popularity", "random") else name]
        row += [_with_interval(block["ci"][f]) for f in figures] + [new["users"]]
        new_ci = new.get("ci", {})
        row += [_with_interval(new_ci[f]) if f in new_ci else "-" for f in figures]
        row += [_difference(new_ci["vs_random"][f]) if "vs_random" in new_ci else "-" for f in figures]
        table.append(row)
    header = ["method", *figures, "users with a new target", *(f"{f} new" for f in figures)]
    header += [f"{f} new - random" for f in figures]
    left_out = [r for r in rows if r not in scored]
    return (
        "\n\n### Retrieval in the test period\n\nThe towers, trained before the test period, scored where the "
        f"rankers are judged: each of the {period['targets']:,} interactions in it of a user with an earlier one "
        f"({period['users']:,} users) is a target, ranked in full among the items that exist at its time, from "
        "the user's history just before it; figures are per-user means. Of its targets, "
        f"{period['targets_on_new_items']:,} are on the {period['new_items']:,} items new in the test period "
        "(no interaction before it), which content towers reach from their text alone and ID towers cannot "
        "have learned. *popularity* counts the interactions before the period. Intervals: 95% bootstrap over "
        "users; * where the difference to random excludes zero."
        + (f" Not scored here: {', '.join(f'`{r}`' for r in left_out)}." if left_out else "")
        + "\n\n"
        + md_table(header, table)
    )


def _seed_table(metrics: dict[str, Any], methods: list[str], figures: list[str]) -> str:
    table = [
        [name, len(metrics[name]["seeds"]["seeds"])]
        + [f"{metrics[name]['seeds'][f]['mean']:.4f} ± {metrics[name]['seeds'][f]['std']:.4f}" for f in figures]
        for name in methods
        if "seeds" in metrics[name]
    ]
    if not table:
        return ""
    return (
        "\n\nOver training seeds (mean ± sample standard deviation; the table above shows the first "
        "seed, the model that is exported):\n\n" + md_table(["method", "seeds", *figures], table)
    )


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"
