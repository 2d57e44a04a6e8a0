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


def _blocks(doc: str, after: str, lang: str) -> list[str]:
    import re

    part = doc[doc.index(after) :]
    return re.findall(rf"```{lang}\n(.*?)```", part, re.S)


def test_the_architecture_page_adds_a_platform(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """docs/architecture.md's "How to add a platform", followed as written: its module and its
    TOML, registered as its step 2 says, send a real notice to a loopback ntfy."""
    import importlib.util
    import json
    import sys

    from typer.testing import CliRunner

    from clarion import registry
    from tests.conftest import FIXTURES
    from tests.fakes.http import FakeServer, Request, Response

    doc = (ROOT / "docs/architecture.md").read_text()
    module_text = _blocks(doc, "## How to add a platform", "python")[0]
    toml_text = _blocks(doc, "## How to add a platform", "toml")[0]
    path = tmp_path / "ntfy_from_the_docs.py"
    path.write_text(module_text)
    spec = importlib.util.spec_from_file_location("ntfy_from_the_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # as an import would
    spec.loader.exec_module(module)

    received: list[Request] = []

    def ntfy(req: Request) -> Response:  # ntfy's publish API: POST /<topic>
        received.append(req)
        if req.headers.get("authorization") != "Bearer tk_doc":
            return Response(401, {"code": 40101, "error": "unauthorized"})
        return Response(200, {"id": "hwQ2YpKdmg", "event": "message", "topic": req.path[1:]})

    with FakeServer(ntfy) as server, registry.registered(channel=module.CONNECTOR):
        db = tmp_path / "c.db"
        toml = tmp_path / "clarion.toml"
        toml.write_text(
            f'[clarion]\ndatabase_url = "sqlite:///{db}"\ndrop_expired = false\n'
            + toml_text.replace("https://ntfy.example.org", server.url)
        )
        monkeypatch.setenv("NTFY_TOKEN", "tk_doc")
        runner = CliRunner()
        cap = str(FIXTURES / "cap/weather.cap")
        for args in (
            ["check"],
            ["replay", "--include-expired", cap],
            ["worker", "--once"],
        ):
            out = runner.invoke(app, [*args, "--config", str(toml)])
            assert out.exit_code == 0, out.output
        shown = runner.invoke(app, ["render", "--platform", "ntfy", cap])
        assert shown.exit_code == 0, shown.output
    assert len(received) == 1
    req = received[0]
    assert req.path == "/county-alerts"
    assert req.headers["title"] and req.headers["priority"] in "12345"
    # What was sent is what `clarion render` shows, but for the link (the config's own address).
    sent, shown_text = req.body.decode(), json.loads(shown.output)["text"]
    assert sent.rsplit("\n", 1)[0] == shown_text.rsplit("\n", 1)[0]
    assert shown_text.endswith("https://clarion.example/notices/1")
    assert "/notices/" in sent.rsplit("\n", 1)[1]
