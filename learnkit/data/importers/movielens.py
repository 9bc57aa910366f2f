"""MovieLens-100K, from RecBole atomic files (`ml-100k.inter/.item/.user`) or the GroupLens layout
(`u.data`, `u.item`, `u.user`). A rating at or above `positive_min_rating` is a conversion (label 1)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from learnkit.core.errors import DataError
from learnkit.data.importers import RawDataset
from learnkit.data.readers import read_delimited
from learnkit.data.schema import RejectLog

# Column order of the 19 genre flags in GroupLens `u.item` (the content of `u.genre`).
GROUPLENS_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")


def _labels(ratings: pd.Series, positive_min_rating: float) -> list[object]:
    numbers = pd.to_numeric(ratings, errors="coerce").to_numpy()
    return [None if np.isnan(r) else int(r >= positive_min_rating) for r in numbers]


def _events(frame: pd.DataFrame, positive_min_rating: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": frame["user_id"],
            "item_id": frame["item_id"],
            "ts": frame["timestamp"],
            "event": "rate",
            "rating": frame["rating"],
            "label": _labels(frame["rating"], positive_min_rating),
            "_file": frame["_file"],
            "_row": frame["_row"],
        }
    )


def _items(
    ids: pd.Series, titles: pd.Series, years: pd.Series, genres: list[list[str]], origin: pd.DataFrame
) -> pd.DataFrame:
    year_text = [y if isinstance(y, str) and y.isdigit() else None for y in years]
    return pd.DataFrame(
        {
            "item_id": ids.to_numpy(),
            "title": titles.to_numpy(),
            "category": [", ".join(g) if g else None for g in genres],
            "attributes": [f"released {y}" if y else None for y in year_text],
            "genres": ["|".join(g) for g in genres],
            "release_year": year_text,
            "_file": origin["_file"].to_numpy(),
            "_row": origin["_row"].to_numpy(),
        }
    )


def read_recbole(path: Path, positive_min_rating: float = 4.0) -> RawDataset:
    """RecBole atomic files: TSV with `name:type` headers."""
    log = RejectLog()
    inter_f, item_f, user_f = (path / f"ml-100k.{ext}" for ext in ("inter", "item", "user"))
    for f in (inter_f, item_f):
        if not f.is_file():
            raise DataError(f"{f}: file not found (expected RecBole ml-100k atomic files in {path})")
    inter = read_delimited(inter_f, "events", log, strip_types=True)
    item = read_delimited(item_f, "items", log, strip_types=True)
    _require(inter, ("user_id", "item_id", "rating", "timestamp"), inter_f)
    _require(item, ("item_id", "movie_title", "release_year", "class"), item_f)
    genres = [c.split() if isinstance(c, str) else [] for c in item["class"]]
    items = _items(item["item_id"], item["movie_title"], item["release_year"], genres, item)
    users = None
    if user_f.is_file():
        users = read_delimited(user_f, "users", log, strip_types=True)
    return RawDataset(
        items=items,
        events=_events(inter, positive_min_rating),
        users=users,
        items_file=str(item_f),
        events_file=str(inter_f),
        users_file=str(user_f),
        log=log,
    )


def read_grouplens(path: Path, positive_min_rating: float = 4.0) -> RawDataset:
    """The original GroupLens archive layout (`u.item` is Latin-1, `|`-separated)."""
    log = RejectLog()
    data_f, item_f, user_f = path / "u.data", path / "u.item", path / "u.user"
    data = read_delimited(data_f, "events", log, names=["user_id", "item_id", "rating", "timestamp"])
    item_cols = ["item_id", "title", "release_date", "video_release_date", "url"] + GROUPLENS_GENRES
    item = read_delimited(item_f, "items", log, sep="|", names=item_cols, encoding="latin-1")
    titles, years = [], []
    for raw_title, date in zip(item["title"], item["release_date"], strict=True):
        match = _YEAR_SUFFIX.search(raw_title)
        titles.append(raw_title[: match.start()] if match else raw_title)
        years.append(match.group(1) if match else (date[-4:] if date else None))
    genres = [[g for g in GROUPLENS_GENRES if row[g] == "1"] for _, row in item.iterrows()]
    items = _items(item["item_id"], pd.Series(titles), pd.Series(years), genres, item)
    users = None
    if user_f.is_file():
        users = read_delimited(
            user_f, "users", log, sep="|", names=["user_id", "age", "gender", "occupation", "zip_code"]
        )
    return RawDataset(
        items=items,
        events=_events(data, positive_min_rating),
        users=users,
        items_file=str(item_f),
        events_file=str(data_f),
        users_file=str(user_f),
        log=log,
    )


def _require(frame: pd.DataFrame, columns: tuple[str, ...], file: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{file}: missing required column(s) {', '.join(missing)}")
