"""Framework boundaries of DESIGN.md: the metrics run with numpy alone, config loading and the data layer
import no framework, and the CEG/PCH code never imports TensorFlow."""

import subprocess
import sys

import pytest

CHECK = "import sys; import {module}; print(sorted(m for m in ({banned}) if m in sys.modules))"


@pytest.mark.parametrize(
    "module, banned",
    [
        (
            "eval.metrics, eval.compare, eval.segments, eval.ab, eval.ab_report, eval.ranking_report",
            ("torch", "tensorflow"),
        ),
        ("ranking.samples, ranking.pointintime, export.content_inputs", ("torch", "tensorflow")),
        ("ranking.model, ranking.tables, ranking.train", ("torch",)),
        ("export.tables", ("torch", "tensorflow")),
        (
            "learnkit.config, learnkit.data.importers, learnkit.data.splits, learnkit.data.text, "
            "learnkit.pipeline.runner, learnkit.core.formatting, learnkit.core.frameworks",
            ("torch", "tensorflow"),
        ),
        ("learn_embed.experiment, learn_embed.ceg", ("tensorflow",)),
    ],
)
def test_imports_stay_inside_their_framework(module, banned):
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module, banned=", ".join(map(repr, banned)) + ",")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "[]", f"{module} imported {out}"
