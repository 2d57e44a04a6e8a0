"""`clarion sources` and `clarion sources test NAME` against loopback sources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clarion.cli import app
from tests.fakes.http import FakeServer, Request, Response
from tests.helpers import demo_cap

runner = CliRunner()


@pytest.fixture
def origin() -> Iterator[dict[str, tuple[int, bytes]]]:
    files: dict[str, tuple[int, bytes]] = {}

    def handle(req: Request) -> Response:
        status, body = files.get(req.path, (404, b"<html>Not Found</html>"))
        return Response(status, raw=body, content_type="application/cap+xml")

    server = FakeServer(handle)
    with server:
        files["__url__"] = (0, server.url.encode())
        yield files


def _config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "clarion.toml"
    cfg.write_text(f"""
[clarion]
database_url = "sqlite:///{tmp_path / "c.db"}"
drop_expired = false
[sources.watch]
kind = "cap"
url = "{url}/watch.cap"
[sources.broken]
kind = "cap"
url = "{url}/missing.cap"
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
""")
    return cfg


def test_sources_test_prints_without_storing(origin, tmp_path: Path) -> None:
    url = origin["__url__"][1].decode()
    origin["/watch.cap"] = (200, demo_cap(0))
    cfg = _config(tmp_path, url)
    r = runner.invoke(app, ["sources", "test", "watch", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    [line] = r.stdout.splitlines()
    assert json.loads(line)["infos"][0]["event"] == "Flash Flood Watch"
    assert "1 notice(s) would be ingested from watch" in r.stderr
    r = runner.invoke(app, ["sources", "--config", str(cfg)])
    assert "watch (cap): never polled" in r.stdout  # nothing was stored by the test
    r = runner.invoke(app, ["sources", "test", "broken", "--config", str(cfg)])
    assert r.exit_code == 1 and "answered HTTP 404" in r.stderr
    r = runner.invoke(app, ["sources", "test", "nope", "--config", str(cfg)])
    assert r.exit_code == 2 and "no enabled source named 'nope'" in r.stderr


def test_sources_lists_health_and_latency(origin, tmp_path: Path) -> None:
    import httpx

    from clarion.channels import build_channels
    from clarion.config import load_config
    from clarion.polling import poll_source
    from clarion.sources import build_sources
    from clarion.store import open_store

    url = origin["__url__"][1].decode()
    origin["/watch.cap"] = (200, demo_cap(0))
    cfg_path = _config(tmp_path, url)
    cfg = load_config(str(cfg_path))
    store = open_store(cfg.clarion.database_url)
    srcs, chans = build_sources(cfg), build_channels(cfg)
    with httpx.Client() as http:
        assert poll_source(store, cfg, chans, srcs["watch"], http) is not None
        assert poll_source(store, cfg, chans, srcs["broken"], http) is None
    r = runner.invoke(app, ["sources", "--config", str(cfg_path)])
    assert r.exit_code == 0, r.output
    watch = next(line for line in r.stdout.splitlines() if line.startswith("watch"))
    assert "watch (cap): ok;" in watch and "1 items seen, 1 notices" in watch
    # The 2010 watch was ingested in 2026: its latency is years, and says so.
    assert "latency p50" in watch and "h," in watch
    assert "broken (cap): failing" in r.stdout
    assert "failing 1x: source broken: " in r.stdout and "answered HTTP 404" in r.stdout


@pytest.mark.parametrize("host", ["0177.0.0.1", "1.2.3.256", "[::1"])
def test_an_address_the_client_cannot_read_is_a_clear_refusal(tmp_path: Path, host: str) -> None:
    """Security item 13: `https://0177.0.0.1/…` made `clarion sources test` end in a
    traceback (httpx's InvalidURL is no HTTPError). The configuration refuses it by name, and
    a fetch that meets one (a redirect's, a CAP index's entry) is that source's error."""
    import httpx

    from clarion.sources.base import FetchState, SourceError, conditional_get

    cfg = _config(tmp_path, f"https://{host}")
    r = runner.invoke(app, ["sources", "test", "watch", "--config", str(cfg)])
    assert r.exit_code != 0
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "is not an address that can be fetched" in r.output + (r.stderr or "")
    assert "Traceback" not in r.output
    with httpx.Client() as http, pytest.raises(SourceError, match="not an address that can"):
        conditional_get(
            http, f"https://{host}/x", FetchState(), what="source t", accept="*/*", max_bytes=2048
        )
