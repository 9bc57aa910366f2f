"""The stages of `learn-kit run`, in order. Each imports its framework lazily, inside its own function."""

from __future__ import annotations

from learnkit.config import Config
from learnkit.pipeline.stage import Stage
from learnkit.pipeline.stages.ab import run_ab
from learnkit.pipeline.stages.ceg import model_weights_digest, run_ceg_stage
from learnkit.pipeline.stages.data import data_files_digest, run_data
from learnkit.pipeline.stages.export import run_export
from learnkit.pipeline.stages.i2i import run_i2i
from learnkit.pipeline.stages.pch import run_pch
from learnkit.pipeline.stages.ranking import run_ranking


def _period(config: Config) -> object:
    """The test period, for the stages whose output depends on it."""
    pch = config.pch
    pch_uses_it = pch is not None and (pch.train_before_test_period or pch.split.boundary == "test_period")
    return config.test_period if pch_uses_it else None


def _baseline_weights(config: Config) -> object:
    """baseline_v1 reads the LLM itself, not only CEG's output."""
    pch = config.pch
    if pch is None or not any(m.kind == "baseline_v1" for m in pch.methods.values()):
        return None
    return model_weights_digest(config)


ALL = [
    Stage("data", (), lambda c: c.data, run_data, external_inputs=data_files_digest),
    Stage("ceg", ("data",), lambda c: c.ceg, run_ceg_stage, external_inputs=model_weights_digest),
    Stage(
        "i2i", ("ceg",), lambda c: {"i2i": c.i2i, "encoders": list(c.ceg.encoders), "primary": c.ceg.primary}, run_i2i
    ),
    Stage(
        "pch",
        ("data", "ceg"),
        lambda c: {
            "pch": c.pch,
            "template": c.ceg.template,
            "period": _period(c),
            **({"ranker_validation": c.ranker_validation} if c.ranker_validation else {}),
            "encoders": {n: e for n, e in c.ceg.encoders.items()},
            "seed": c.seed,
        },
        run_pch,
        metrics_key="retrieval",
        enabled=lambda c: c.pch is not None,
        external_inputs=_baseline_weights,
    ),
    Stage(
        "export",
        ("data", "ceg", "pch"),
        lambda c: {"export": c.export, "period": c.test_period},
        run_export,
        enabled=lambda c: c.export is not None,
        clears_on_rerun=False,
    ),
    Stage(
        "ranking",
        ("data", "export"),
        lambda c: {"ranking": c.ranking, "period": c.test_period, "seed": c.seed},
        run_ranking,
        enabled=lambda c: c.ranking is not None,
    ),
    Stage(
        "ab",
        ("data", "ranking"),
        lambda c: {"ab": c.ab, "period": c.test_period, "seed": c.seed},
        run_ab,
        enabled=lambda c: c.ab is not None,
    ),
]
