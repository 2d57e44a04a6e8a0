"""Docs stay true: every config key and every command is documented (as Datasette does)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from clarion import config as c
from clarion.cli import app

ROOT = Path(__file__).parent.parent
CONFIG_DOC = (ROOT / "docs/configuration.md").read_text()
CLI_DOC = (ROOT / "docs/cli.md").read_text()


def _kinds(union: object) -> list[type[BaseModel]]:
    """The models of every kind in an Annotated[A | B | …, discriminator] union."""
    return list(typing.get_args(typing.get_args(union)[0]))


# Every source and channel kind, found from the config's own unions: a new kind cannot be
# added without documenting its keys.
MODELS: list[type[BaseModel]] = [
    c.Settings,
    c.ApiSettings,
    c.DeskSettings,
    c.RouteRule,
    c.SecretRef,
    *_kinds(c.SourceConfig),
    *_kinds(c.ChannelConfig),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_config_key_is_documented(model: type[BaseModel]) -> None:
    missing = [k for k in model.model_fields if f"`{k}`" not in CONFIG_DOC and k not in CONFIG_DOC]
    assert missing == []


def test_every_command_is_documented() -> None:
    import typer.main

    group = typer.main.get_group(app)
    names = []
    for name, cmd in group.commands.items():
        sub = getattr(cmd, "commands", None)
        names.append(f"clarion {name}")
        names += [f"clarion {name} {s}" for s in sub or []]
    missing = [n for n in names if f"`{n}" not in CLI_DOC]
    assert missing == []


def test_every_test_named_in_the_security_page_exists() -> None:
    """docs/security.md names, for each attack, the test that shows it: those tests exist."""
    import re

    doc = (ROOT / "docs/security.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(\w+)`", doc)
    assert len(named) >= 20
    for path, name in named:
        text = (ROOT / "tests" / path).read_text()
        assert f"def {name}(" in text, f"{path}::{name} is named in docs/security.md"
    for path in set(re.findall(r"`(test_\w+\.py)`", doc)):
        assert (ROOT / "tests" / path).exists(), path
