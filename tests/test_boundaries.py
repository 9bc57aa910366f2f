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
            "eval.metrics, eval.compare, eval.segments, eval.ab, eval.ab_report, eval.ranking_report, "
            "eval.retrieval_report",
            ("torch", "tensorflow"),
        ),
        ("ranking.samples, ranking.pointintime, export.content_inputs", ("torch", "tensorflow")),
        ("ranking.model, ranking.tables, ranking.train, ranking.experiment", ("torch",)),
        ("export.tables", ("torch", "tensorflow")),
        (
            "learnkit.config, learnkit.data.importers, learnkit.data.splits, learnkit.data.text, "
            "learnkit.pipeline.runner, learnkit.pipeline.stages, learnkit.core.formatting, learnkit.core.frameworks",
            ("torch", "tensorflow"),
        ),
        ("learn_embed.experiment, learn_embed.ceg, export.features", ("tensorflow",)),
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


def test_every_stage_function_is_thin():
    """A stage loads its inputs, calls one library function and hands the figures to a report: at most 30
    lines each (the rest belongs in the libraries and their report modules)."""
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "learnkit" / "pipeline" / "stages"
    lengths = {
        f"{path.name}:{node.name}": node.end_lineno - node.lineno + 1
        for path in sorted(folder.glob("*.py"))
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("run_")
    }
    assert len(lengths) >= 7, lengths  # data, ceg, i2i, pch, export, ranking, ab
    assert {name: n for name, n in lengths.items() if n > 30} == {}
