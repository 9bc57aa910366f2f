from learnkit.pipeline.summary import run_summary


def interval(value, low, high):
    return {"value": value, "ci_low": low, "ci_high": high}


def test_summary_reads_the_figures_and_names_significant_segments():
    none = interval(0.0, -0.01, 0.01)
    metrics = {
        "data": {"items": 10, "events": 200, "rejected": 1},
        "retrieval": {
            "split": {},
            "a": {"N@10": 0.1, "R@50": 0.3},
            "b": {"N@10": 0.2, "R@50": 0.2},
            "popularity": {"N@10": 0.15, "R@50": 0.25},
            "random": {"N@10": 0.01, "R@50": 0.02},
            "below_popularity": {"b": ["R@50"]},
        },
        "ranking": {
            "protocol": {"negatives": "logged", "judges": "ranker", "label": "logged negatives"},
            "delta": {
                "UAUC": interval(0.012, 0.002, 0.02),
                "WUAUC": interval(0.01, -0.01, 0.03),
                "AUC": interval(0.0, -0.01, 0.01),
                "segments": {
                    "user": {
                        "cold_start": {"UAUC": interval(0.05, 0.01, 0.09), "AUC": interval(0.03, 0.01, 0.05)},
                        "others": {"UAUC": interval(-0.02, -0.03, -0.01), "AUC": none},
                    },
                    "item": {"long_tail": {"UAUC": none, "AUC": {"value": None, "ci_low": None, "ci_high": None}}},
                },
            },
        },
        "ab": {
            "replay": {
                "revenue_lift": 0.1,
                "ci_low": 0.02,
                "ci_high": 0.2,
                "p_value": 0.01,
                "rerankable_share": 0.8,
                "min_detectable_lift": 0.05,
            },
            "simulated": {
                "revenue_lift": -0.05,
                "ci_low": -0.2,
                "ci_high": 0.1,
                "p_value": 0.5,
                "rerankable_share": 0.03,
                "min_detectable_lift": 0.3,
            },
            "aa": {"false_positive_rate": 0.045, "runs": 200},
        },
    }
    text = run_summary(metrics)
    assert "10 items, 200 events, 1 rejected rows" in text
    assert "best R@50 is `a` (0.3000); `b` 0.2000; *popularity* 0.2500; *random* 0.0200." in text
    assert "**Below popularity** (a bug to find, not a finding): `b` on R@50." in text
    assert "**Ranking** (logged negatives; LEARN - baseline, 95% interval over users): UAUC +1.20pp" in text
    assert "UAUC +1.20pp [+0.20pp, +2.00pp]" in text and "LEARN is better on UAUC" in text
    assert (
        "LEARN better for cold-start users (UAUC +5.00pp, AUC +3.00pp); baseline better for other users (UAUC -2.00pp)."
    ) in text
    assert (
        "replay +10.0% [+2.0%, +20.0%], p = 0.010 (the interval excludes zero); smallest lift this traffic "
        "detects at 80% power ±5.0%; simulated: cannot tell (re-ranking can change only 3% of the requests)"
    ) in text
    assert "A/A false-positive rate 4.5% over 200 salts" in text
    assert run_summary({}) == ""


def test_sampled_negatives_are_a_tower_check_never_a_ranker_gain():
    from eval.ranking_report import protocol

    judged = protocol({"negatives": "sampled", "negatives_per_conversion": 4})
    assert judged["judges"] == "towers" and judged["per_conversion"] == 4
    delta = {m: interval(0.1, 0.05, 0.15) for m in ("UAUC", "WUAUC", "AUC")}
    text = run_summary({"ranking": {"protocol": judged, "delta": {**delta, "segments": {"user": {}, "item": {}}}}})
    assert (
        text.count("**") == 2
        and (
            "**Tower check, not a ranker gain** (sampled negatives (4 random items per conversion): a tower check, "
            "not a ranker gain; LEARN - baseline"
        )
        in text
    )
    assert protocol({"negatives": "logged"})["judges"] == "ranker"
