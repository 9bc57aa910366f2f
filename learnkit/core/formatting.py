"""How figures are written in reports and summaries: one place for signed percentages and percentage points,
and for Markdown tables (plain Python: every layer may use it)."""

from __future__ import annotations

import math
from typing import Any


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pct(value: float | None) -> str:
    """A relative change: 0.0123 -> '+1.2%'; None or not finite -> 'n/a'."""
    return f"{100 * value:+.1f}%" if _finite(value) else "n/a"


def share(value: float) -> str:
    """A share of a whole: 0.977 -> '97.7%'."""
    return f"{100 * value:.1f}%"


def pp(value: float | None, unit: str = "") -> str:
    """A difference of two shares in percentage points: 0.0123 -> '+1.23' (unit 'pp': '+1.23pp')."""
    return f"{100 * value:+.2f}{unit}" if _finite(value) else "n/a"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
