"""docs/config.md is generated from the config dataclasses: it is never stale, every field has its help, and
every key the shipped configs use is documented there."""

from pathlib import Path

import pytest
import yaml

from learnkit.config import Config
from learnkit.configdoc import render, rows

ROOT = Path(__file__).resolve().parents[2]
FREE_FORM = ("data.options.", "pch.methods.<name>.model.", "pch.methods.<name>.train.")  # checked on load


def test_the_committed_reference_is_what_the_dataclasses_generate():
    assert (ROOT / "docs" / "config.md").read_text() == render(), (
        "docs/config.md is stale: run `python -m learnkit.configdoc > docs/config.md`"
    )


def test_every_field_carries_its_help():
    missing = [key for key, _, _, help_text in rows(Config) if not help_text.strip()]
    assert not missing


def _keys(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if prefix in ("ceg.encoders.", "pch.methods.", "ranking.candidates."):
            name = f"{prefix}<name>"
        out.append(name)
        if isinstance(value, dict):
            out += _keys(value, f"{name}.")
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_key_of_a_shipped_config_is_documented(path):
    documented = {key for key, *_ in rows(Config)}
    used = [k for k in _keys(yaml.safe_load(path.read_text())) if not k.startswith(FREE_FORM) and k[-1] != ">"]
    assert len(used) > 10
    assert [k for k in used if k not in documented] == []
