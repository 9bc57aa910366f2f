"""Run-level outputs: nested metrics.json, report.md, and report.html rendered from it."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import markdown

from learnkit.fsutil import write_json, write_text

_STYLE = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f3f3f3}code{background:#f6f6f6;padding:0 .2rem}img{max-width:100%}"""


def nan_to_null(tree: Any) -> Any:
    """NaN and infinities (an undefined figure, e.g. a segment with one class) become null in JSON."""
    if isinstance(tree, dict):
        return {k: nan_to_null(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [nan_to_null(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_run_report(run_dir: Path, title: str, sections: list[str], metrics: dict[str, Any]) -> None:
    write_json(run_dir / "metrics.json", metrics)
    text = f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections if s.strip()) + "\n"
    write_text(run_dir / "report.md", text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    write_text(run_dir / "report.html", f"<!doctype html><html><head><meta charset='utf-8'>"
               f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n")
