"""A platform is one module and one registry line: a toy connector declared in a test module
alone (tests/toy_connector.py) is taken by the config file, checked, built, rendered, routed,
sent by the worker, listed by the CLI and in the docs' table, exactly like Clarion's own.
And reading the registry, so validating a config, loads no platform SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clarion import registry
from clarion.channels import build_channels, channel_limits
from clarion.channels.base import RenderContext
from clarion.config import ConfigError, check_secrets, parse_config
from clarion.registry import render_for
from clarion.sources import build_sources, parsers
from tests import toy_connector
from tests.conftest import FIXTURES, fixture_bytes

ROOT = Path(__file__).parent.parent
SDKS = (
    "atproto",
    "atproto_client",
    "mastodon",
    "tweepy",
    "apprise",
    "aiosmtplib",
    "standardwebhooks",
    "requests",
)
TOY_TOML = """
[sources.toys]
kind = "toysrc"
url = "https://toys.example/cap.xml"

[channels.t]
kind = "toy"
url = "https://toy.example/api"
token = { env = "TOY_TOKEN" }
shout = true

[[routes]]
channels = ["t"]
"""


def test_reading_the_registry_and_a_config_loads_no_platform_sdk() -> None:
    code = (
        "import sys, json\n"
        "from clarion import registry\n"
        "from clarion.config import EXAMPLE_CONFIG, parse_config\n"
        "registry.channels(); registry.sources()\n"
        "parse_config(EXAMPLE_CONFIG, environ={})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = set(json.loads(out.stdout))
    assert "clarion" in loaded
    assert loaded.isdisjoint(SDKS), sorted(loaded & set(SDKS))


def test_every_kind_is_its_own_module_and_declares_itself() -> None:
    for kind, c in registry.channels().items():
        assert c.kind == kind
        assert c.config.__module__ == f"clarion.channels.{kind}"
        assert c.config.model_fields["kind"].annotation.__args__ == (kind,)  # type: ignore[union-attr]
    for kind, s in registry.sources().items():
        assert s.kind == kind
        assert s.config.__module__ == f"clarion.sources.{kind}"


def test_a_toy_connector_is_taken_by_the_config_and_checked_like_any_other() -> None:
    with pytest.raises(ConfigError) as before:
        parse_config(TOY_TOML, environ={})
    assert any("'toy' is not a known kind" in p for p in before.value.problems)

    with toy_connector.register():
        cfg = parse_config(TOY_TOML, environ={})
        assert isinstance(cfg.channels["t"], toy_connector.ToyChannelConfig)
        assert isinstance(cfg.sources["toys"], toy_connector.ToySourceConfig)
        assert check_secrets(cfg) == ["channels.t.token: environment variable TOY_TOKEN is not set"]
        with pytest.raises(ConfigError) as bad:
            parse_config(TOY_TOML.replace("shout = true", "colour = 'red'"), environ={})
        assert bad.value.problems == ["channels.t.colour: unknown key"]
        with pytest.raises(ConfigError) as missing:
            parse_config(TOY_TOML.replace('url = "https://toy.example/api"\n', ""), environ={})
        assert missing.value.problems == ["channels.t.url: required, but missing"]

    with pytest.raises(ConfigError):  # gone with its registration
        parse_config(TOY_TOML, environ={})


def test_a_toy_connector_is_built_rendered_and_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TOKEN", "s3cret")
    notice = parsers()["cap"](fixture_bytes("cap/weather.cap"), "")[0]
    ctx = RenderContext(languages=("en",), permalink="https://clarion.example/notices/1")
    with toy_connector.register():
        cfg = parse_config(TOY_TOML, environ={"TOY_TOKEN": "s3cret"})
        built = build_channels(cfg, stored={"t": {"token": "from-the-desk"}})
        assert isinstance(built["t"], toy_connector.ToyChannel)
        assert built["t"].token == "from-the-desk"  # a stored credential wins, as for all
        assert channel_limits(cfg) == {}
        sources = build_sources(cfg)
        assert isinstance(sources["toys"], toy_connector.ToySource)

        assert "toy" in registry.previewable()
        assert "toy" not in registry.threadable()  # it has no `thread_parts` to split by
        shown = render_for("toy", notice, ctx)
        assert shown["count"] <= 120 and "https://clarion.example/notices/1" in shown["text"]
        assert "| `toy` | 120 | graphemes | yes |" in registry.markdown_tables()
        assert "| `toysrc` | yes | A toy input kind" in registry.markdown_tables()

        from clarion.cli import app

        runner = CliRunner()
        out = runner.invoke(app, ["platforms"])
        assert out.exit_code == 0 and "`toy`" in out.output
        out = runner.invoke(app, ["render", "--platform", "toy", str(FIXTURES / "cap/weather.cap")])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output.splitlines()[0])["platform"] == "toy"
        out = runner.invoke(app, ["parse", "--kind", "toysrc", str(FIXTURES / "cap/weather.cap")])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output.splitlines()[0])["identifier"] == notice.identifier
    assert "toy" not in registry.previewable()


def test_a_toy_connector_goes_through_replay_and_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole road: `clarion check`, `replay` (store, route, render, queue) and `worker
    --once` (the dispatcher sends through the toy's `send`)."""
    from clarion.cli import app

    toml = tmp_path / "clarion.toml"
    db = tmp_path / "c.db"
    # The fixture expired long ago: the worker would rightly drop it, so allow that here.
    toml.write_text(
        f'[clarion]\ndatabase_url = "sqlite:///{db}"\ndrop_expired = false\n' + TOY_TOML
    )
    monkeypatch.setenv("TOY_TOKEN", "s3cret")
    toy_connector.SENT.clear()
    runner = CliRunner()
    with toy_connector.register():
        out = runner.invoke(app, ["check", "--config", str(toml)])
        assert out.exit_code == 0, out.output
        out = runner.invoke(
            app,
            [
                "replay",
                "--config",
                str(toml),
                "--kind",
                "toysrc",
                "--include-expired",
                str(FIXTURES / "cap/weather.cap"),
            ],
        )
        assert out.exit_code == 0, out.output
        assert "1 deliveries queued" in out.output
        out = runner.invoke(app, ["worker", "--once", "--config", str(toml)])
        assert out.exit_code == 0, out.output
    assert len(toy_connector.SENT) == 1
    sent = toy_connector.SENT[0]
    assert sent["channel"] == "t" and sent["token"] == "s3cret"
    assert sent["text"] == sent["text"].upper()  # the toy's own config key took effect


def test_a_plugin_registered_before_the_cli_is_in_its_help() -> None:
    """Help texts list the kinds registered when the CLI is loaded (as a plugin would be)."""
    code = (
        "from tests import toy_connector\n"
        "with toy_connector.register():\n"
        "    from clarion.cli import app\n"
        "    app(['render', '--help'], prog_name='clarion', standalone_mode=False)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", "TERM": "dumb"},
        check=True,
    )
    assert "toy" in out.stdout and "threads" in out.stdout


def test_the_docs_table_is_the_registry() -> None:
    doc = (ROOT / "docs/configuration.md").read_text()
    begin, end = "<!-- registry:begin -->\n", "<!-- registry:end -->"
    table = doc[doc.index(begin) + len(begin) : doc.index(end)]
    assert table == registry.markdown_tables(), "run `clarion platforms` and paste its table"
