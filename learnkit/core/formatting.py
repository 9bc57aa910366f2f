"""How figures are written in reports and summaries: one place for signed percentages and percentage points,
and for Markdown tables (plain Python: every layer may use it)."""

from __future__ import annotations

import math
import re
from typing import Any


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pct(value: float | None) -> str:
    """A relative change: 0.0123 -> '+1.2%'; None or not finite -> 'n/a'."""
    return f"{100 * value:+.1f}%" if _finite(value) else "n/a"


def share(value: float | None) -> str:
    """A share of a whole: 0.977 -> '97.7%'; None or not finite -> 'n/a'."""
    return f"{100 * value:.1f}%" if _finite(value) else "n/a"


def pp(value: float | None, unit: str = "") -> str:
    """A difference of two shares in percentage points: 0.0123 -> '+1.23' (unit 'pp': '+1.23pp')."""
    return f"{100 * value:+.2f}{unit}" if _finite(value) else "n/a"


class Markup(str):
    """Markdown written by learn-kit itself (`*popularity*`), passed through as markup; every other string
    that reaches a report, a title from the data above all, is shown as text (`md_text`)."""


# What can make markup inside a line: code, emphasis, a backslash escape, the `](`, `][` or `]:`
# that turns brackets into a link, an image or a reference; `_` only at a word's edge (Python-Markdown leaves
# snake_case alone). `<` and `&` become entities (autolinks, raw HTML, entities). An interval "[.01, .02]"
# stays as it is.
_INLINE_SPECIAL = re.compile(r"[\\`*]|\](?=[(\[:])|(?<!\w)_|_(?!\w)")


def md_text(value: Any) -> str:
    """Any value as literal text inside a line of Markdown: a title like `[win](https://x)` stays those
    characters, never a link, an image, emphasis or HTML. `Markup` passes through unchanged."""
    if isinstance(value, Markup):
        return str(value)
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace("\r", " ").replace("\n", " ")
    return _INLINE_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def md_code(value: Any) -> str:
    """Any value as an inline code span, fenced by more backticks than it holds."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; string cells are shown as text (`md_text`) unless they are `Markup`."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return (str(v) if isinstance(v, Markup) else md_text(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
