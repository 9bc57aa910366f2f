"""UAUC / WUAUC speed on 10,000,000 rows of 1,000,000 users (grouped in DuckDB, `eval.metrics`), against a plain
per-user `sklearn.metrics.roc_auc_score` loop (timed on a subset of users in the same run and scaled per user),
against the numpy version it replaced (one `numpy.lexsort` and `bincount`s, `bench/pandas_path.py`) and against
that one `numpy.lexsort` alone. The subset's per-user AUCs are also checked against sklearn, and every figure
against the numpy version. Prints one JSON object.

    python bench/uauc.py [--rows 10000000] [--users 1000000] [--loop-users 3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from eval.metrics import user_auc  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parent))  # bench/, after the packages
import pandas_path  # noqa: E402


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--loop-users", type=int, default=3_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    users = rng.integers(0, args.users, args.rows)
    labels = (rng.random(args.rows) < 0.3).astype(np.int8)
    # rounded scores: realistic ties, which the metric must rank as averages
    scores = np.round(rng.random(args.rows) + 0.2 * labels, 4)

    ours = best_of(args.repeats, lambda: user_auc(users, labels, scores))
    numpy_version = best_of(args.repeats, lambda: pandas_path.user_auc(users, labels, scores))
    floor = best_of(args.repeats, lambda: np.lexsort((scores, users)))
    result = user_auc(users, labels, scores)
    before = pandas_path.user_auc(users, labels, scores)
    identical = bool(
        np.array_equal(result.per_user_auc, before["per_user_auc"], equal_nan=True)
        and result.uauc == before["uauc"]
        and result.wuauc == before["wuauc"]
    )

    # the per-user loop, on the rows of the first `loop_users` users
    subset = users < args.loop_users
    su, sl, ss = users[subset], labels[subset], scores[subset]
    order = np.argsort(su, kind="stable")
    su, sl, ss = su[order], sl[order], ss[order]
    bounds = np.flatnonzero(np.r_[True, su[1:] != su[:-1], True])
    started = time.perf_counter()
    loop = {}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if 0 < sl[a:b].sum() < b - a:
            loop[int(su[a])] = roc_auc_score(sl[a:b], ss[a:b])
    loop_seconds = time.perf_counter() - started
    loop_total = loop_seconds * len(result.users) / (len(bounds) - 1)
    ours_subset = dict(zip(result.users.tolist(), result.per_user_auc.tolist(), strict=True))
    max_diff = max(abs(ours_subset[u] - v) for u, v in loop.items())
    print(
        json.dumps(
            {
                "rows": args.rows,
                "users": int(len(result.users)),
                "users_evaluated": result.users_evaluated,
                "users_excluded": result.users_excluded,
                "uauc": result.uauc,
                "wuauc": result.wuauc,
                "seconds": round(ours, 3),
                "numpy_version_seconds": round(numpy_version, 3),
                "speedup_vs_numpy_version": round(numpy_version / ours, 2),
                "identical_to_numpy_version": identical,
                "lexsort_seconds": round(floor, 3),
                "sklearn_loop_users_timed": len(bounds) - 1,
                "sklearn_loop_seconds_timed": round(loop_seconds, 3),
                "sklearn_loop_seconds_scaled": round(loop_total, 1),
                "speedup_vs_sklearn_loop": round(loop_total / ours, 1),
                "ratio_to_lexsort": round(ours / floor, 3),
                "max_abs_diff_vs_sklearn": max_diff,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
