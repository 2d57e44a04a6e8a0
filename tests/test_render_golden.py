"""Golden renders: real notices from the fixtures, as every platform would get them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clarion import registry
from clarion.channels.base import RenderContext
from clarion.cli import app
from clarion.registry import render_for
from clarion.render.counting import COUNTERS
from clarion.sources import parsers
from tests.conftest import FIXTURES, fixture_bytes
from tests.golden import check_golden

NOTICES = {
    "nws-watch": ("cap", "cap/weather.cap", 0),
    "canada-bilingual-update": ("cap", "cap/canada.cap", 0),
    "hurricane-update": ("cap", "cap/nws_multiple_polygons.cap", 0),
    "cancel-without-info": ("cap", "cap/no_info_tag.cap", 0),
    "wordpress-post": ("feed", "feeds/wordpress-org-news.rss", 0),
    "bart-delay": ("gtfsrt", "gtfsrt/bart-alerts.pb", 0),
    "github-incident": ("statuspage", "statuspage/githubstatus-summary-2022-11-25.json", 6),
}
CTX = RenderContext(languages=("en",), permalink="https://clarion.example/notices/1")


def _notice(name: str):  # type: ignore[no-untyped-def]
    kind, path, index = NOTICES[name]
    return parsers()[kind](fixture_bytes(path), "")[index]


@pytest.mark.parametrize("platform", registry.previewable())
def test_golden_renders(platform: str) -> None:
    renders = {}
    for name in NOTICES:
        payload = render_for(platform, _notice(name), CTX)
        if platform == "webhook":  # the whole notice: golden elsewhere; keep what varies here
            payload = {"type": payload["type"], "permalink": payload["data"]["permalink"]}
        renders[name] = payload
        counting = {"x": "x-weighted", "mastodon": "mastodon"}.get(platform, "graphemes")
        if "text" in payload and platform not in ("telegram", "email"):
            assert COUNTERS[counting](payload["text"]) <= payload["limit"]
    check_golden(f"renders/{platform}", renders)


def test_render_command() -> None:
    r = CliRunner().invoke(app, ["render", "--platform", "x", str(FIXTURES / "cap/weather.cap")])
    assert r.exit_code == 0, r.output
    assert '"cost": 0.2' in r.stdout and '"limit": 280' in r.stdout
    bad = CliRunner().invoke(app, ["render", "-p", "myspace", str(FIXTURES / "cap/weather.cap")])
    assert bad.exit_code == 2 and "unknown platform 'myspace'" in bad.stderr
    r = CliRunner().invoke(
        app, ["render", "-p", "x", "--thread-parts", "3", str(FIXTURES / "cap/weather.cap")]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["thread"]) == 2 and out["text"].count("(1/3)") == 1
    assert out["cost"] == pytest.approx(0.20 + 2 * 0.015)  # X bills every part; one has the URL
    no = CliRunner().invoke(
        app, ["render", "-p", "slack", "--thread-parts", "3", str(FIXTURES / "cap/weather.cap")]
    )
    assert no.exit_code == 2 and "posts no threads" in no.stderr
