"""Logged impressions in MIND's layout (Microsoft News): `behaviors.tsv` and `news.tsv`, tab-separated, no
header. A folder holds the two files, or sub-folders that each do (MIND-small's `MINDsmall_train` and
`MINDsmall_dev`, read together; their request ids are prefixed with the sub-folder's name).

behaviors.tsv: impression_id, user_id, time ("11/15/2019 8:55:22 AM"), history (space-separated news ids the
user clicked before), impressions (space-separated "N123-1" / "N456-0": each news item shown in the request
and whether it was clicked). Every shown item becomes one event, label = its clicked flag, `request_id` = the
impression id: the ranker's rows are exactly the logged impressions and the A/B replay uses the logged
requests. The history has no times, only that it came before its request: with `history: true` each clicked
item becomes a label-1 event one second before the first request that lists it (once per user and item), so
that it is never placed before a moment it is known to precede, and is never a request's outcome.

news.tsv: news_id, category, subcategory, title, abstract, url, title_entities, abstract_entities. Items take
the title, the category, the subcategory (as keywords) and the abstract (as attributes); the url and the
entity lists are not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from learnkit.core.errors import DataError
from learnkit.data.importers import RawDataset
from learnkit.data.readers import read_delimited
from learnkit.data.schema import RejectLog

BEHAVIOURS = ["impression_id", "user_id", "time", "history", "impressions"]
NEWS = ["news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities"]
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def _folders(path: Path) -> list[Path]:
    if (path / "behaviors.tsv").is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and (p / "behaviors.tsv").is_file())
    if not found:
        raise DataError(f"{path}: no behaviors.tsv here or in a sub-folder (MIND's layout)")
    for folder in found:
        if not (folder / "news.tsv").is_file():
            raise DataError(f"{folder}: behaviors.tsv without news.tsv")
    return found


def _impressions(behaviours: pd.DataFrame, prefix: str, log: RejectLog) -> pd.DataFrame:
    """One row per shown item: user_id, item_id, ts, label, request_id, with each behaviours row's origin.
    A row with a bad time or a malformed shown item is rejected whole, by file, row and field."""
    times = pd.to_datetime(behaviours["time"], format=TIME_FORMAT, errors="coerce")
    bad_time = times.isna().to_numpy()
    log.add_many("events", behaviours, bad_time, "time", f"not a time of the form {TIME_FORMAT}")
    tokens = behaviours["impressions"].fillna("").str.split().explode()  # index: the behaviours row
    pieces = tokens.str.rsplit("-", n=1)
    malformed = tokens.isna() | ~pieces.str[1].isin(["0", "1"]) | (pieces.str[0].str.len() == 0)
    bad_items = np.zeros(len(behaviours), dtype=bool)
    bad_items[np.unique(malformed[malformed].index.to_numpy())] = True
    log.add_many(
        "events",
        behaviours,
        bad_items & ~bad_time,
        "impressions",
        "every shown item must read NEWSID-0 or NEWSID-1, and a request shows at least one",
        behaviours["impressions"].to_numpy(),
    )
    rows = tokens.index.to_numpy()
    keep = ~(bad_time | bad_items)[rows]
    source = behaviours.iloc[rows[keep]]
    seconds = ((times - pd.Timestamp(0)) // pd.Timedelta(seconds=1)).fillna(0).astype("int64").to_numpy()
    return pd.DataFrame(
        {
            "user_id": source["user_id"].to_numpy(),
            "item_id": pieces.str[0].to_numpy()[keep],
            "ts": seconds[rows[keep]],
            "event": "impression",
            "label": pieces.str[1].to_numpy()[keep].astype(int),
            "request_id": (prefix + source["impression_id"].astype(str)).to_numpy(),
            "_file": source["_file"].to_numpy(),
            "_row": source["_row"].to_numpy(),
        }
    )


def _history(behaviours: pd.DataFrame, impressions: pd.DataFrame) -> pd.DataFrame:
    """Each user's earlier clicks, once per item, one second before the first logged request that lists it:
    the click came before that request, and nothing says how long before (a request rejected for its time or
    items places none)."""
    request_ts = impressions.drop_duplicates(["_file", "_row"]).set_index(["_file", "_row"])["ts"]
    clicks = behaviours[["user_id", "_file", "_row"]].assign(item_id=behaviours["history"].str.split())
    clicks = clicks.explode("item_id").dropna(subset=["item_id"])
    clicks["ts"] = request_ts.reindex(pd.MultiIndex.from_frame(clicks[["_file", "_row"]])).to_numpy() - 1
    clicks = clicks.dropna(subset=["ts"]).sort_values("ts", kind="stable")
    clicks = clicks.drop_duplicates(["user_id", "item_id"], keep="first")
    return pd.DataFrame(
        {
            "user_id": clicks["user_id"].to_numpy(),
            "item_id": clicks["item_id"].to_numpy(),
            "ts": clicks["ts"].to_numpy(dtype=np.int64),
            "event": "history",
            "label": 1,
            "request_id": "",
            "_file": clicks["_file"].to_numpy(),
            "_row": clicks["_row"].to_numpy(),
        }
    )


def read_mind(path: Path, history: bool = True) -> RawDataset:
    log = RejectLog()
    folders = _folders(path)
    several = len(folders) > 1
    news, impressions, behaviours_all = [], [], []
    for folder in folders:
        behaviours = read_delimited(folder / "behaviors.tsv", "events", log, names=BEHAVIOURS)
        news.append(read_delimited(folder / "news.tsv", "items", log, names=NEWS))
        impressions.append(_impressions(behaviours, f"{folder.name}:" if several else "", log))
        behaviours_all.append(behaviours)
    shown = pd.concat(impressions, ignore_index=True)
    parts = [shown]
    if history:
        parts.append(_history(pd.concat(behaviours_all, ignore_index=True), shown))
    events = pd.concat(parts, ignore_index=True).astype({"ts": "int64", "label": "int64"})
    events = events.astype({"ts": str, "label": str})  # validation parses every field from text
    items = pd.concat(news, ignore_index=True)
    duplicated = items["news_id"].duplicated(keep="first")  # the same article in two splits: one item
    items = items[~duplicated].rename(
        columns={"news_id": "item_id", "subcategory": "keywords", "abstract": "attributes"}
    )
    items = items[["item_id", "title", "category", "keywords", "attributes", "_file", "_row"]]
    items = items.replace({"": None})
    return RawDataset(
        items=items.reset_index(drop=True),
        events=events,
        items_file=",".join(str(f / "news.tsv") for f in folders),
        events_file=",".join(str(f / "behaviors.tsv") for f in folders),
        notes=[
            "MIND: one event per shown item (label = clicked, request_id = the impression); "
            + ("history clicks one second before the first request listing them" if history else "history not read")
        ],
        counters={
            "requests": int(shown["request_id"].nunique()),
            "news_in_two_splits": int(duplicated.sum()),
        },
        log=log,
    )
