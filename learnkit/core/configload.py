"""Turn YAML mappings into typed dataclasses; every error names the offending key.

Unknown keys are rejected (a typo must not silently fall back to a default), missing required keys are
named, and values are checked against the dataclass annotations (int, float, str, bool, Literal,
Optional, list, dict and nested dataclasses).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from learnkit.core.errors import ConfigError
from learnkit.core.fsutil import is_plain_name

T = TypeVar("T")


class PlainName(str):
    """A config value that becomes a file or folder name (a method, an encoder, a run): one path component
    of letters, digits, '.', '_' and '-', never '..' nor hidden, so that it cannot leave its folder. As a
    dataclass annotation it is checked on load; the value stays a plain `str`."""


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML would keep the later one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (first on line {seen[key] + 1}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML text with duplicate keys refused (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def option(
    default: Any = MISSING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    least: float | None = None,
    above: float | None = None,
) -> Any:
    """A config field with its help text: `docs/config.md` is generated from these (`learnkit.configdoc`).
    `least` (inclusive) and `above` (exclusive) bound a number: the loader refuses a value outside, naming
    the key, so that no nonsense width, count or seed reaches a library."""
    metadata: dict[str, Any] = {"help": help, "least": least, "above": above}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if default is MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def bound_text(field: dataclasses.Field) -> str:
    """The field's bound as `>= 1` or `> 0`, or ''."""
    least, above = field.metadata.get("least"), field.metadata.get("above")
    return f">= {least:g}" if least is not None else (f"> {above:g}" if above is not None else "")


def _check_bound(field: dataclasses.Field, value: Any, where: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    least, above = field.metadata.get("least"), field.metadata.get("above")
    if (least is not None and value < least) or (above is not None and value <= above):
        raise ConfigError(f"{where}: {value!r} is out of bounds: it must be {bound_text(field)}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def from_mapping(cls: type[T], data: Any, key: str = "", source: str = "config") -> T:
    """Build dataclass `cls` from `data`; `key` is the dotted path used in error messages."""
    where = f"{source}: key '{key}'" if key else source
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        sub = f"{key}.{unknown[0]}" if key else unknown[0]
        raise ConfigError(f"{source}: unknown key '{sub}' (allowed: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], sub, source)
            _check_bound(field, kwargs[name], f"{source}: key '{sub}'")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{sub}'")
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return obj


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    where = f"{source}: key '{key}'"
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (list, list):
        (item_tp,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(item_tp, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin in (dict, dict):
        key_tp, val_tp = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return {_coerce(key_tp, k, key, source): _coerce(val_tp, v, f"{key}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, key, source)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # .nan passes every bound check (nan > x is False), .inf most of them
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is PlainName:
        if not is_plain_name(value):
            raise ConfigError(
                f"{where}: {value!r} is not a plain name (letters, digits, '.', '_', '-'; not hidden, no '..'): "
                "it names a file or folder of the run"
            )
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")  # a bug in a config dataclass


def to_mapping(obj: Any) -> Any:
    """Dataclass back to plain YAML/JSON-able data (used to fingerprint stage configs)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            key
            for k in sorted(set(old) | set(new), key=str)
            for key in differing_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        ]
    return [] if old == new else [prefix.rstrip(".") or "(value)"]
