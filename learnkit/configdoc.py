"""`docs/config.md`, generated from the config dataclasses and their fields' help (`configload.option`):

    python -m learnkit.configdoc > docs/config.md

A test fails when the committed page differs from what this prints.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints

from learnkit.config import Config
from learnkit.core.configload import PlainName, bound_text

HEADER = """# Config reference

Generated from the config dataclasses by `python -m learnkit.configdoc > docs/config.md`; do not edit by hand.
Configs are YAML, validated into these dataclasses: an unknown key, a missing required key or a wrong type
stops the load with the dotted key named, and so do a key given twice and a number that is not finite (`.nan`,
`.inf`). A `name` (the run's, a method's, an encoder's) becomes a folder name: letters, digits, '.', '_' and
'-', not hidden, no '..'. `learn-kit run CONFIG --set KEY=VALUE` overrides any key (the value
read as YAML). Each library owns its section: `data` (`learnkit/data/importers/config.py`), `ceg`, `i2i`, `pch`
(`learn_embed/config.py`), `test_period` (`learnkit/data/period.py`), `export` (`export/config.py`), `ranking`
(`ranking/config.py`), `ab` (`eval/config.py`); `learnkit/config.py` composes them. `<name>` stands for a key
you choose (an encoder's or a method's name).
"""


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass a field holds (directly or as `X | None`), else None."""
    if dataclasses.is_dataclass(tp):
        return tp  # type: ignore[return-value]
    if get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]  # type: ignore[return-value]
    return None


def _type_text(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_text(a) for a in get_args(tp))
    if origin is not None:
        return re.sub(r"typing\.|<class '|'>", "", repr(tp)).replace(f"{PlainName.__module__}.PlainName", "name")
    if tp is PlainName:
        return "name"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _default_text(field: dataclasses.Field) -> str:
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        return "" if dataclasses.is_dataclass(value) else f"`{value!r}`"
    if field.default is dataclasses.MISSING:
        return "required"
    return "`null`" if field.default is None else f"`{field.default!r}`"


def rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) of every leaf field under `cls`, depth first."""
    out = []
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "source":  # set by the loader, not a key
            continue
        key, tp = f"{prefix}{field.name}", hints[field.name]
        help_text = field.metadata.get("help", "")
        nested = _dataclass_of(tp)
        if nested is not None:
            out.append((key, "section", _default_text(field) or "", help_text))
            out += rows(nested, f"{key}.")
            continue
        if get_origin(tp) is dict and dataclasses.is_dataclass(get_args(tp)[1]):
            out.append((key, "mapping of name to section", _default_text(field), help_text))
            out += rows(get_args(tp)[1], f"{key}.<name>.")
            continue
        bound = bound_text(field)
        out.append((key, _type_text(tp) + (f", {bound}" if bound else ""), _default_text(field), help_text))
    return out


def render() -> str:
    table = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    top = ["", "## Top level", "", *table]
    sections: list[str] = []
    for key, tp, default, help_text in rows(Config):
        if "." not in key and tp == "section":
            sections += ["", f"## `{key}`", "", help_text[:1].upper() + help_text[1:] + ".", "", *table]
            continue
        line = f"| `{key}` | {tp} | {default} | {help_text.replace('|', chr(92) + '|')} |"
        (top if "." not in key else sections).append(line)
    return "\n".join([HEADER.rstrip(), *top, *sections]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
