"""Amazon Review Data (2018): `<Category>_5.json.gz` reviews plus `meta_<Category>.json.gz` metadata.

Every review is a conversion (label 1) unless `positive_min_rating` is set. Prices such as "$1,234.50"
are parsed, a range "$10.00 - $25.00" becomes its midpoint, and anything else (the scraped CSS and
HTML some records carry) becomes an unknown price, counted in `validation.json` as `price_unparsed`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from learnkit.core.errors import DataError
from learnkit.data.importers import RawDataset
from learnkit.data.readers import read_json_lines
from learnkit.data.schema import RejectLog

_PRICE = re.compile(r"^\$\s?(\d[\d,]*(?:\.\d+)?)$")
_PRICE_RANGE = re.compile(r"^\$\s?(\d[\d,]*(?:\.\d+)?)\s*-\s*\$\s?(\d[\d,]*(?:\.\d+)?)$")
_TAG = re.compile(r"<[^>]+>")


def parse_price(text: Any) -> tuple[float | None, bool]:
    """Returns (price, understood). An empty field is (None, True); junk is (None, False)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None, True
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text), True
    if not isinstance(text, str):
        return None, False
    cleaned = text.strip()
    if match := _PRICE.match(cleaned):
        return float(match.group(1).replace(",", "")), True
    if match := _PRICE_RANGE.match(cleaned):
        low, high = (float(g.replace(",", "")) for g in match.groups())
        return (low + high) / 2.0, True
    return None, False


def _clean(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    text = " ".join(_TAG.sub(" ", html.unescape(text)).split())
    return text or None


def _join(parts: Any, sep: str) -> str | None:
    if isinstance(parts, str):
        parts = [parts]
    if not isinstance(parts, list):
        return None
    seen: list[str] = []
    for part in parts:
        cleaned = _clean(part)
        if cleaned and cleaned not in seen:
            seen.append(cleaned)
    return sep.join(seen) or None


def _find(path: Path, pattern: str, what: str) -> Path:
    matches = sorted(path.glob(pattern))
    if len(matches) != 1:
        raise DataError(
            f"{path}: expected exactly one {what} file matching {pattern!r}, found {[m.name for m in matches]}"
        )
    return matches[0]


def read_amazon(
    path: Path, positive_min_rating: float | None = None, reviews_file: str | None = None, meta_file: str | None = None
) -> RawDataset:
    reviews_f = path / reviews_file if reviews_file else _find(path, "*_5.json*", "5-core reviews")
    meta_f = path / meta_file if meta_file else _find(path, "meta_*.json*", "metadata")
    log = RejectLog()

    items: list[dict[str, Any]] = []
    price_unparsed = 0
    for row, record in read_json_lines(meta_f, "items", log):
        price, understood = parse_price(record.get("price"))
        price_unparsed += not understood
        features = _join(record.get("feature"), "; ")
        description = _join(record.get("description"), " ")
        items.append(
            {
                "item_id": record.get("asin"),
                "title": _clean(record.get("title")),
                "category": _join(record.get("category"), " > "),
                "brand": _clean(record.get("brand")),
                "price": price,
                "keywords": "; ".join(p for p in (features, description) if p) or None,
                "main_cat": _clean(record.get("main_cat")),
                "_file": str(meta_f),
                "_row": row,
            }
        )

    events: list[dict[str, Any]] = []
    for row, record in read_json_lines(reviews_f, "events", log):
        rating = record.get("overall")
        if positive_min_rating is None:
            label: Any = 1
        else:
            label = int(rating >= positive_min_rating) if isinstance(rating, (int, float)) else None
        events.append(
            {
                "user_id": record.get("reviewerID"),
                "item_id": record.get("asin"),
                "ts": record.get("unixReviewTime"),
                "event": "review",
                "label": label,
                "rating": rating,
                "verified": bool(record.get("verified", False)),
                "_file": str(reviews_f),
                "_row": row,
            }
        )
    notes = (
        [f"{price_unparsed} metadata price field(s) were not a price (scraped page markup) and became unknown prices"]
        if price_unparsed
        else []
    )
    return RawDataset(
        items=pd.DataFrame(items),
        events=pd.DataFrame(events),
        items_file=str(meta_f),
        events_file=str(reviews_f),
        notes=notes,
        counters={"price_unparsed": price_unparsed},
        log=log,
    )
