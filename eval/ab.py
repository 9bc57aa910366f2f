"""A simulated A/B test of two rankers (numpy, pandas, scipy and scikit-learn; no deep-learning framework).

Users go to arms by a salted sha256 of their id (control, treatment, or unexposed). A request is a user-day
of the test period whose candidates are the items that user was exposed to that day; each arm's ranker
orders them and its top K are shown. Two estimators give the outcome of a shown item:
- replay: the logged outcome (exact for re-ranking when every candidate's outcome is logged);
- simulated: conversions drawn from a response model fitted on all data, test period included (a
  logistic regression on user, item and user x category indicators: a different model from both arms).
Both arms see the same draws for the same (request, item), so the simulation's noise does not favour one.
Revenue is the sum of `value` over conversions; CVR is conversions over shown items. Lifts come with a
bootstrap 95% interval over users and a Welch p-value, optionally CUPED-adjusted by each user's revenue
before the test period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from eval.config import AbConfig
from eval.metrics import auc
from eval.segments import SEGMENTS
from learnkit.data.sampling import draw_avoiding, in_pairs
from learnkit.data.schema import CHRONOLOGICAL
from learnkit.data.splits import user_bucket

ARMS = ("control", "treatment")
MODEL_OF_ARM = {"control": "baseline", "treatment": "learn"}


def assign_arms(users: np.ndarray, salt: str, control_share: float, treatment_share: float) -> pd.DataFrame:
    bucket = user_bucket(pd.Series(users), salt)
    arm = np.where(
        bucket < control_share, "control", np.where(bucket < control_share + treatment_share, "treatment", "unexposed")
    )
    return pd.DataFrame({"user_id": users, "bucket": bucket, "arm": arm})


def shown(rows: pd.DataFrame, score: str, top_k: int) -> np.ndarray:
    """Rows an arm shows: the top K of each request by `score` (ties broken by item id)."""
    ordered = rows.sort_values(["request", score, "item_id"], ascending=[True, False, True], kind="stable")
    rank = ordered.groupby("request", sort=False).cumcount().to_numpy()
    mask = np.zeros(len(rows), bool)
    mask[ordered.index.to_numpy()[rank < top_k]] = True
    return mask


def response_model(samples: pd.DataFrame, items: pd.DataFrame, seed: int):
    """A logistic regression on one-hot user, item and (user, item category) indicators, fitted on every
    ranking sample including the test period; returns a function rows -> conversion probability."""
    from sklearn.linear_model import LogisticRegression

    category = items.set_index("item_id")["category"].astype("string").fillna("") if "category" in items else None

    def keys(rows: pd.DataFrame) -> list[np.ndarray]:
        out = [("u:" + rows["user_id"].astype(str)).to_numpy(), ("i:" + rows["item_id"].astype(str)).to_numpy()]
        if category is not None:
            cat = category.reindex(rows["item_id"]).fillna("").to_numpy().astype(str)
            out.append(np.char.add(np.char.add("uc:" + rows["user_id"].astype(str).to_numpy(), "|"), cat))
        return out

    vocab: dict[str, int] = {}
    for column in keys(samples):
        for key in np.unique(column):
            vocab.setdefault(key, len(vocab))

    def design(rows: pd.DataFrame) -> sparse.csr_matrix:
        columns = keys(rows)
        index = np.stack([np.fromiter((vocab.get(k, -1) for k in c), np.int64, len(c)) for c in columns], 1)
        r, c = np.nonzero(index >= 0)
        return sparse.csr_matrix((np.ones(len(r)), (r, index[r, c])), shape=(len(rows), len(vocab)))

    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    model.fit(design(samples), samples["label"].to_numpy())
    return lambda rows: model.predict_proba(design(rows))[:, 1]


@dataclass
class Lift:
    lift: float
    ci_low: float
    ci_high: float
    p_value: float
    control: float  # mean per user (CUPED-adjusted when asked)
    treatment: float


def cuped(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y - theta (x - mean x), theta = cov(x, y) / var(x) over all users of both arms."""
    if len(x) < 2 or np.var(x) == 0:
        return y
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    return y - theta * (x - x.mean())


def revenue_lift(y_c: np.ndarray, y_t: np.ndarray, bootstrap: int, rng: np.random.Generator) -> Lift:
    if len(y_c) < 2 or len(y_t) < 2 or y_c.mean() == 0:
        return Lift(
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            float(np.mean(y_c)) if len(y_c) else np.nan,
            float(np.mean(y_t)) if len(y_t) else np.nan,
        )
    lift = y_t.mean() / y_c.mean() - 1
    boot_c = y_c[rng.integers(0, len(y_c), (bootstrap, len(y_c)))].mean(1)
    boot_t = y_t[rng.integers(0, len(y_t), (bootstrap, len(y_t)))].mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lifts = boot_t / boot_c - 1
    low, high = np.percentile(lifts[np.isfinite(lifts)], [2.5, 97.5])
    p = stats.ttest_ind(y_t, y_c, equal_var=False).pvalue
    return Lift(float(lift), float(low), float(high), float(p), float(y_c.mean()), float(y_t.mean()))


def ratio_lift(
    num_c: np.ndarray, den_c: np.ndarray, num_t: np.ndarray, den_t: np.ndarray, bootstrap: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Lift of sum(num)/sum(den) (CVR) with a bootstrap interval over users."""
    if den_c.sum() == 0 or den_t.sum() == 0 or num_c.sum() == 0:
        return np.nan, np.nan, np.nan
    lift = (num_t.sum() / den_t.sum()) / (num_c.sum() / den_c.sum()) - 1
    ic = rng.integers(0, len(num_c), (bootstrap, len(num_c)))
    it = rng.integers(0, len(num_t), (bootstrap, len(num_t)))
    with np.errstate(divide="ignore", invalid="ignore"):
        lifts = (num_t[it].sum(1) / den_t[it].sum(1)) / (num_c[ic].sum(1) / den_c[ic].sum(1)) - 1
    low, high = np.percentile(lifts[np.isfinite(lifts)], [2.5, 97.5])
    return float(lift), float(low), float(high)


def per_user(
    rows: pd.DataFrame, mask: np.ndarray, conversions: np.ndarray, by: list[str] | None = None
) -> pd.DataFrame:
    """Revenue, conversions and shown items per user (and per `by` columns) of the shown rows."""
    frame = pd.DataFrame(
        {
            "user_id": rows["user_id"].to_numpy(),
            "shown": mask.astype(float),
            "conversions": mask * conversions,
            "revenue": mask * conversions * rows["value"].to_numpy(),
        }
    )
    for column in by or []:
        frame[column] = rows[column].to_numpy()
    return frame.groupby(["user_id", *(by or [])], sort=True)[["shown", "conversions", "revenue"]].sum()


def _arm_values(
    outcomes: dict[str, pd.DataFrame], members: dict[str, np.ndarray], column: str
) -> dict[str, np.ndarray]:
    """Per-user `column` of each arm's members under that arm's model (0 for a user with no shown row)."""
    return {arm: outcomes[MODEL_OF_ARM[arm]][column].reindex(members[arm], fill_value=0.0).to_numpy() for arm in ARMS}


Z_TWO_SIDED_5 = float(stats.norm.ppf(0.975))
Z_POWER_80 = float(stats.norm.ppf(0.80))


def min_detectable_lift(values: np.ndarray, n_control: int, n_treatment: int) -> float:
    """The smallest relative lift of mean revenue per user that a two-sided 5% test finds with 80% power,
    for arms of these sizes, from the per-user values under one ranker (before the arms are compared):
    (z_.975 + z_.8) * sd * sqrt(1/n_c + 1/n_t) / mean."""
    if n_control < 2 or n_treatment < 2 or len(values) < 2 or values.mean() == 0:
        return float("nan")
    spread = (Z_TWO_SIDED_5 + Z_POWER_80) * values.std(ddof=1) * np.sqrt(1 / n_control + 1 / n_treatment)
    return float(spread / abs(values.mean()))


def estimate(
    outcomes: dict[str, pd.DataFrame],
    members: dict[str, np.ndarray],
    pre_revenue: pd.Series,
    config: AbConfig,
    rng: np.random.Generator,
) -> dict[str, Any]:
    revenue = _arm_values(outcomes, members, "revenue")
    # the resolution, from the control ranker's outcomes for every exposed user: no look at the comparison
    everyone = np.concatenate([members[arm] for arm in ARMS])
    baseline = outcomes[MODEL_OF_ARM["control"]]["revenue"].reindex(everyone, fill_value=0.0).to_numpy()
    if config.cuped:
        baseline = cuped(baseline, pre_revenue.reindex(everyone, fill_value=0.0).to_numpy())
    resolution = min_detectable_lift(baseline, len(members["control"]), len(members["treatment"]))
    conv = _arm_values(outcomes, members, "conversions")
    shown_n = _arm_values(outcomes, members, "shown")
    raw = revenue_lift(revenue["control"], revenue["treatment"], config.bootstrap, rng)
    adjusted = raw
    if config.cuped:
        pre = {arm: pre_revenue.reindex(members[arm], fill_value=0.0).to_numpy() for arm in ARMS}
        y = cuped(np.r_[revenue["control"], revenue["treatment"]], np.r_[pre["control"], pre["treatment"]])
        n_c = len(revenue["control"])
        adjusted = revenue_lift(y[:n_c], y[n_c:], config.bootstrap, rng)
    cvr, cvr_low, cvr_high = ratio_lift(
        conv["control"], shown_n["control"], conv["treatment"], shown_n["treatment"], config.bootstrap, rng
    )
    return {
        "revenue_lift": adjusted.lift,
        "ci_low": adjusted.ci_low,
        "ci_high": adjusted.ci_high,
        "p_value": adjusted.p_value,
        "min_detectable_lift": resolution,
        "cvr_lift": cvr,
        "cvr_ci_low": cvr_low,
        "cvr_ci_high": cvr_high,
        "cuped": config.cuped,
        "unadjusted": {"revenue_lift": raw.lift, "ci_low": raw.ci_low, "ci_high": raw.ci_high, "p_value": raw.p_value},
        "users": {arm: int(len(revenue[arm])) for arm in ARMS},
        "revenue_per_user": {arm: float(revenue[arm].mean()) if len(revenue[arm]) else np.nan for arm in ARMS},
        "cvr": {arm: float(conv[arm].sum() / shown_n[arm].sum()) if shown_n[arm].sum() else np.nan for arm in ARMS},
    }


def aa_false_positive_rate(
    outcome: pd.DataFrame, users: np.ndarray, pre_revenue: pd.Series, config: AbConfig, alpha: float = 0.05
) -> dict[str, Any]:
    """Both arms served by the same model; the share of `aa_runs` salts whose p-value is below alpha."""
    y_all = outcome["revenue"].reindex(users, fill_value=0.0).to_numpy()
    x_all = pre_revenue.reindex(users, fill_value=0.0).to_numpy()
    p_values = []
    for run in range(config.aa_runs):
        arm = assign_arms(users, f"{config.salt}:aa:{run}", config.control_share, config.treatment_share)[
            "arm"
        ].to_numpy()
        exposed = arm != "unexposed"
        y = cuped(y_all[exposed], x_all[exposed]) if config.cuped else y_all[exposed]
        is_t = arm[exposed] == "treatment"
        if is_t.sum() < 2 or (~is_t).sum() < 2:
            continue
        p_values.append(stats.ttest_ind(y[is_t], y[~is_t], equal_var=False).pvalue)
    p = np.asarray(p_values)
    return {"runs": int(len(p)), "false_positive_rate": float((p < alpha).mean()) if len(p) else np.nan, "alpha": alpha}


def _segment_lift(
    values: dict[str, np.ndarray], share: float, config: AbConfig, rng: np.random.Generator
) -> dict[str, Any]:
    lift = revenue_lift(values["control"], values["treatment"], config.bootstrap, rng)
    return {
        "share": share,
        "revenue_lift": lift.lift,
        "ci_low": lift.ci_low,
        "ci_high": lift.ci_high,
        "p_value": lift.p_value,
    }


def _segment_lifts(
    outcomes: dict[str, pd.DataFrame],
    by_item_segment: dict[str, pd.DataFrame],
    rows: pd.DataFrame,
    members: dict[str, np.ndarray],
    user_segment: pd.Series,
    config: AbConfig,
    rng: np.random.Generator,
) -> dict[str, dict[str, Any]]:
    """Revenue lift per user segment (the segment's users) and per item segment (revenue from its items)."""
    out: dict[str, dict[str, Any]] = {"user": {}, "item": {}}
    for segment in SEGMENTS:
        in_segment = {arm: m[user_segment.reindex(m).to_numpy() == segment] for arm, m in members.items()}
        out["user"][segment] = _segment_lift(
            _arm_values(outcomes, in_segment, "revenue"), float((rows["user_segment"] == segment).mean()), config, rng
        )
        of_segment = {
            m: table[table.index.get_level_values(1) == segment].droplevel(1) for m, table in by_item_segment.items()
        }
        out["item"][segment] = _segment_lift(
            _arm_values(of_segment, members, "revenue"), float((rows["item_segment"] == segment).mean()), config, rng
        )
    return out


def _daily(outcomes_day: dict[str, pd.DataFrame], members: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    days = sorted(set().union(*(o.index.get_level_values(1) for o in outcomes_day.values())))
    out, cumulative = [], {arm: np.zeros(3) for arm in ARMS}
    counts = {arm: len(m) for arm, m in members.items()}
    for day in days:
        entry: dict[str, Any] = {"day": int(day)}
        for arm in ARMS:
            table = outcomes_day[MODEL_OF_ARM[arm]]
            part = (
                table.xs(day, level=1).reindex(members[arm], fill_value=0.0)
                if day in table.index.get_level_values(1)
                else pd.DataFrame({"revenue": [0.0], "conversions": [0.0], "shown": [0.0]})
            )
            totals = part[["revenue", "conversions", "shown"]].sum().to_numpy()
            cumulative[arm] += totals
            entry[arm] = {
                "revenue_per_user": totals[0] / max(counts[arm], 1),
                "cvr": totals[1] / totals[2] if totals[2] else np.nan,
                "cumulative_revenue_per_user": cumulative[arm][0] / max(counts[arm], 1),
                "cumulative_cvr": cumulative[arm][1] / cumulative[arm][2] if cumulative[arm][2] else np.nan,
            }
        for key in ("revenue_per_user", "cumulative_revenue_per_user"):
            c, t = entry["control"][key], entry["treatment"][key]
            entry[key.replace("revenue_per_user", "revenue_lift")] = t / c - 1 if c else np.nan
        out.append(entry)
    return out


def logged_requests(rows: pd.DataFrame) -> bool:
    """Whether every row names the logged request it was shown in (an impressions log's `request_id`)."""
    return "request_id" in rows and bool(rows["request_id"].notna().all()) and bool((rows["request_id"] != "").all())


def add_requests(rows: pd.DataFrame, day_seconds: int) -> pd.DataFrame:
    """Rows sorted by user and time, with `day` (days since the user's test period began) and `request`: the
    logged request (`request_id`) where every row names one, else one per user-day."""
    rows = rows.sort_values(CHRONOLOGICAL, kind="stable").reset_index(drop=True)
    rows["day"] = ((rows["ts"].to_numpy() - rows["snapshot"].to_numpy()) // day_seconds).astype(np.int64)
    keys = ["request_id"] if logged_requests(rows) else ["user_id", "day"]
    rows["request"] = rows.groupby(keys, sort=False).ngroup()
    return rows


def request_resolution(rows: pd.DataFrame, top_k: int) -> dict[str, Any]:
    """How many requests a re-ranking can change at all: one with at most `top_k` logged candidates shows
    them all under either ranker."""
    candidates = rows.groupby("request").size().to_numpy()
    if not len(candidates):
        return {"single_candidate_share": float("nan"), "rerankable_share": float("nan")}
    return {
        "single_candidate_share": float((candidates == 1).mean()),
        "rerankable_share": float((candidates > top_k).mean()),
        "candidates_per_request": {"mean": float(candidates.mean()), "median": float(np.median(candidates))},
    }


def widen_requests(rows: pd.DataFrame, catalog: np.ndarray, per_request: int, seed: int) -> pd.DataFrame:
    """`per_request` catalog items drawn uniformly for each request (rows from `add_requests`), none of
    them already a candidate of that request: user_id, item_id, ts (the request's first), snapshot."""
    rng = np.random.default_rng(seed)
    named = logged_requests(rows)
    requests = rows.groupby("request", sort=True).agg(
        user_id=("user_id", "first"),
        ts=("ts", "min"),
        snapshot=("snapshot", "first"),
        **({"request_id": ("request_id", "first")} if named else {}),
    )
    logged = set(zip(rows["request"], rows["item_id"], strict=True))
    request_ids = np.repeat(requests.index.to_numpy(), per_request)
    picks, keep = draw_avoiding(len(request_ids), len(catalog), None, in_pairs(request_ids, catalog, logged), rng)
    chosen = requests.loc[request_ids[keep]]
    return pd.DataFrame(
        {
            "user_id": chosen["user_id"].to_numpy(),
            "item_id": catalog[picks[keep]],
            "ts": chosen["ts"].to_numpy(),
            "snapshot": chosen["snapshot"].to_numpy(),
            **({"request_id": chosen["request_id"].to_numpy()} if named else {}),
        }
    )


def pre_period_revenue(events: pd.DataFrame, snapshot: np.ndarray) -> pd.Series:
    """Each user's revenue from conversions before their test period (the CUPED covariate), by user_id;
    `snapshot` is the test period's start per event row."""
    before = events[(events["ts"].to_numpy() < snapshot) & (events["label"] == 1)]
    return before.groupby("user_id")["value"].sum()


def run_ab(
    rows: pd.DataFrame,
    samples: pd.DataFrame,
    items: pd.DataFrame,
    pre_revenue: pd.Series,
    day_seconds: int,
    config: AbConfig,
    seed: int,
) -> dict[str, Any]:
    """rows: the scored test rows (user_id, item_id, ts, label, value, baseline, learn, user_segment,
    item_segment, snapshot: the start of the user's test period) and, optionally, `widened` rows: sampled
    catalog candidates with no logged outcome (label NaN), which only the simulated estimator can judge.
    Returns the whole A/B result (the assignment included, as a DataFrame under 'assignment')."""
    rows = add_requests(rows if "widened" in rows else rows.assign(widened=False), day_seconds)
    users = np.array(sorted(rows["user_id"].unique()))
    assignment = assign_arms(users, config.salt, config.control_share, config.treatment_share)
    members = {arm: users[assignment["arm"].to_numpy() == arm] for arm in ARMS}  # users sorted, as assigned
    user_segment = rows.groupby("user_id")["user_segment"].first()
    probability = response_model(samples, items, seed)(rows)
    # common random numbers: one uniform per (row, draw), shared by both arms
    draws = (np.random.default_rng(seed).random((config.simulated_seeds, len(rows))) < probability[None]).mean(0)
    logged = ~rows["widened"].to_numpy(bool)
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {
        "requests": int(rows["request"].nunique()),
        "days": int(rows["day"].nunique()),
        "widened_candidates": int((~logged).sum()),
        "users": {arm: int((assignment.arm == arm).sum()) for arm in (*ARMS, "unexposed")},
        "response_model": "logistic regression on user, item and user x category indicators, "
        "fitted on all ranking samples including the test period",
        "response_model_test_auc": auc(rows["label"].to_numpy()[logged], probability[logged]),
    }
    result["single_candidate_share"] = request_resolution(rows[logged], config.top_k)["single_candidate_share"]
    # replay ranks only the logged candidates (only their outcomes are known); the simulation ranks all
    for estimator, part, conv in (
        ("replay", rows[logged].reset_index(drop=True), rows["label"].to_numpy()[logged]),
        ("simulated", rows, draws),
    ):
        masks = {model: shown(part, model, config.top_k) for model in ("baseline", "learn")}
        outcomes = {m: per_user(part, masks[m], conv) for m in masks}
        block = estimate(outcomes, members, pre_revenue, config, rng)
        block.update(request_resolution(part, config.top_k))
        by_item_segment = {m: per_user(part, masks[m], conv, ["item_segment"]) for m in masks}
        block["segments"] = _segment_lifts(outcomes, by_item_segment, part, members, user_segment, config, rng)
        block["daily"] = _daily({m: per_user(part, masks[m], conv, ["day"]) for m in masks}, members)
        block["aa"] = aa_false_positive_rate(outcomes["learn"], users, pre_revenue, config)
        result[estimator] = block
    result["assignment"] = assignment
    return result
