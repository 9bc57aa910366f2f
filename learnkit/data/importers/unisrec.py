"""UniSRec / RecBole pre-split sequences: `<name>.text`, `.item2index`, `.train/.valid/.test.inter`.

The full sequence of a user is the test row's history plus its target; its last item is the test
target, the one before the validation target (leave-one-out), and that given split is kept in the
`split` column. There are no timestamps: `ts` is the position in the user's sequence (ordinal time).
Histories in these files are capped at 50 items, so items older than that are not recoverable.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from learnkit.core.errors import DataError
from learnkit.data.importers import RawDataset
from learnkit.data.readers import read_delimited
from learnkit.data.schema import RejectLog


def split_text(text: str) -> tuple[str, str | None, str | None]:
    """'title. category path. brand. ' -> (title, category, brand); split from the right so that
    a title containing '. ' stays whole."""
    body = text.strip()
    if body.endswith("."):
        body = body[:-1]
    parts = body.rsplit(". ", 2)
    if len(parts) != 3:
        return text.strip(), None, None
    title, category, brand = (p.strip() for p in parts)
    return title, category or None, brand or None


def read_unisrec(path: Path, name: str | None = None) -> RawDataset:
    if name is None:
        found = sorted(p.name[: -len(".text")] for p in path.glob("*.text"))
        if len(found) != 1:
            raise DataError(f"{path}: expected one '<name>.text' file, found {found}")
        name = found[0]
    log = RejectLog()
    text = read_delimited(path / f"{name}.text", "items", log, strip_types=True)
    index = read_delimited(path / f"{name}.item2index", "items", log, names=["item_id", "index"])
    test = read_delimited(path / f"{name}.test.inter", "events", log, strip_types=True)
    valid = read_delimited(path / f"{name}.valid.inter", "events", log, strip_types=True)

    pieces = [split_text(t) for t in text["text"]]
    items = pd.DataFrame(
        {
            "item_id": text["item_id"],
            "title": [p[0] for p in pieces],
            "category": [p[1] for p in pieces],
            "brand": [p[2] for p in pieces],
            "_file": text["_file"],
            "_row": text["_row"],
        }
    )
    asin_of = dict(zip(index["index"], index["item_id"], strict=True))

    rows = []
    mismatched_valid = 0
    valid_by_user = {
        u: (h, t) for u, h, t in zip(valid["user_id"], valid["item_id_list"], valid["item_id"], strict=True)
    }
    for user, history, target, file, row in zip(
        test["user_id"], test["item_id_list"], test["item_id"], test["_file"], test["_row"], strict=True
    ):
        sequence = history.split() + [target]
        expected_valid = valid_by_user.get(user)
        if expected_valid is None or expected_valid[1] != sequence[-2]:
            mismatched_valid += 1
        for position, index_value in enumerate(sequence):
            split = "test" if position == len(sequence) - 1 else ("valid" if position == len(sequence) - 2 else "train")
            rows.append(
                {
                    "user_id": user,
                    "item_id": asin_of.get(index_value, f"<index {index_value}>"),
                    "ts": position,
                    "event": "review",
                    "label": 1,
                    "split": split,
                    "_file": file,
                    "_row": row,
                }
            )
    notes = [
        "no timestamps: ts is the position in the user's sequence",
        "histories are capped at 50 items by the source files",
    ]
    if mismatched_valid:
        notes.append(
            f"{mismatched_valid} user(s) whose validation target is not the second-to-last item of the test sequence"
        )
    return RawDataset(
        items=items,
        events=pd.DataFrame(rows),
        items_file=str(path / f"{name}.text"),
        events_file=str(path / f"{name}.test.inter"),
        notes=notes,
        counters={"valid_target_mismatch": mismatched_valid},
        ordinal_time=True,
        log=log,
    )
