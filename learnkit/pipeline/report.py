"""Run-level outputs: nested metrics.json, report.md, and report.html rendered from it.

report.html is one self-contained file: its images are embedded, and nothing from the data can run in the
reader's browser. Raw HTML in the markdown (an item title with a script, say) is shown as text, and the
rendered page is sanitised with an allow-list (nh3, the Ammonia sanitiser) before it is written.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any

import markdown
import nh3

from learnkit.core.fsutil import write_json, write_text

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


_TAGS = {
    "h1",
    "h2",
    "h3",
    "h4",
    "p",
    "br",
    "hr",
    "em",
    "strong",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "img",
    "a",
}
_IMAGE = re.compile(r'<img alt="([^"]*)" src="([^"]+)"\s*/?>')


def render_html(text: str, base: Path) -> str:
    """Markdown -> sanitised HTML, with every image under `base` embedded as a data URI."""
    md = markdown.Markdown(extensions=["tables", "fenced_code"])
    md.preprocessors.deregister("html_block")  # raw HTML stays text, escaped
    md.inlinePatterns.deregister("html")
    body = _IMAGE.sub(lambda m: _embedded_image(m.group(1), m.group(2), base), md.convert(text))
    return nh3.clean(
        body,
        tags=_TAGS,
        attributes={"img": {"alt", "src"}, "a": {"href"}},
        url_schemes={"http", "https", "data"},
        attribute_filter=_only_png_data,
    )


def _embedded_image(alt: str, src: str, base: Path) -> str:
    """A PNG inside the run folder becomes a data URI; anything else is left out, its alt text kept."""
    path = (base / html.unescape(src)).resolve()
    if path.suffix.lower() != ".png" or not path.is_file() or not path.is_relative_to(base.resolve()):
        return f"<em>[image not embedded: {alt}]</em>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def _only_png_data(tag: str, attribute: str, value: str) -> str | None:
    if value.startswith("data:") and not (tag == "img" and value.startswith("data:image/png;base64,")):
        return None
    return value


def write_run_report(run_dir: Path, title: str, sections: list[str], metrics: dict[str, Any]) -> None:
    write_json(run_dir / "metrics.json", metrics)
    text = f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections if s.strip()) + "\n"
    write_text(run_dir / "report.md", text)
    body = render_html(text, run_dir)
    write_text(
        run_dir / "report.html",
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n",
    )
