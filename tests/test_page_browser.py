"""The public page in a real browser: headless Chromium (Debian's package, driven by Playwright)
against Clarion served by uvicorn on loopback. The timeline, a notice page with its map,
keyboard navigation, the filter form, and dark mode. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from clarion.web.app import create_app
from tests.browser import chromium, require_chromium, serve, shot
from tests.conftest import fixture_bytes
from tests.helpers import NOW, channels_for, config, demo_cap, ingest_bytes

require_chromium()

pytestmark = pytest.mark.browser

CONFIG = """
[clarion]
publisher_name = "Lewis and Clark County Alerts"
atproto_did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
follow = [
  { label = "Mastodon", url = "https://mastodon.example/@lccalerts" },
  { label = "Bluesky", url = "https://bsky.app/profile/alerts.lccounty.example" },
]
[sources.nws]
kind = "cap"
url = "https://alerts.example/cap.atom"
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
"""


@pytest.fixture
def site(sqlite_store: Store) -> Iterator[str]:
    cfg = config(CONFIG)
    chans = channels_for(cfg)
    for i in range(3):
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(i))
        Dispatcher(sqlite_store, chans, clock=lambda: NOW).run_until_idle()
    hurricane = fixture_bytes("cap/nws_multiple_polygons.cap")
    ingest_bytes(sqlite_store, cfg, chans, hurricane, include_expired=True)
    with serve(create_app(sqlite_store, cfg, chans)) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_timeline_and_notice_page(site: str, browser: Any) -> None:
    page = browser.new_page()
    page.goto(site + "/")
    assert page.title() == "Notices · Lewis and Clark County Alerts"
    headlines = page.locator("article.notice h3").all_inner_texts()
    assert len(headlines) == 2 and any("Hurricane Warning" in h for h in headlines)
    assert page.locator("article .tag", has_text="cancelled").count() == 1
    follow = page.locator("section.follow a[rel='me']")
    assert follow.all_inner_texts() == ["Mastodon", "Bluesky"]
    shot(page, "timeline")

    page.get_by_role("link", name="Hurricane Warning", exact=False).first.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith("Hurricane Warning")
    areamap = page.get_by_role("img", name="Map of the area: Acadia", exact=False)
    assert areamap.count() >= 1 and areamap.first.locator("polygon").count() >= 1
    box = areamap.first.bounding_box()
    assert box is not None and box["width"] > 100  # drawn, not collapsed
    assert page.get_by_role("link", name="This version as CAP").count() >= 1
    shot(page, "notice")


def test_keyboard_alone_reaches_a_notice_and_the_filters(site: str, browser: Any) -> None:
    page = browser.new_page()
    page.goto(site + "/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to the notices"  # the first stop, visible when focused
    assert page.locator("a.skip").bounding_box()["x"] >= 0
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # The filter form comes first in the main content: choose a severity and submit.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "severity"
    page.keyboard.press("ArrowDown")  # minor
    page.keyboard.press("ArrowDown")  # moderate
    page.keyboard.press("ArrowDown")  # severe
    page.keyboard.press("ArrowDown")  # extreme
    for _ in range(10):  # on through the other fields to the button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName") == "BUTTON":
            break
    page.keyboard.press("Enter")
    page.wait_for_url("**severity=extreme**")
    headlines = page.locator("article.notice h3").all_inner_texts()
    assert len(headlines) == 1 and "Hurricane Warning" in headlines[0]  # the watch is severe
    assert page.locator("select[name=severity]").input_value() == "extreme"
    # Tab on to the first notice's link and open it with Enter.
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('article') !== null"):
            break
    else:
        pytest.fail("no notice link reachable by keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url("**/notices/*")
    assert page.locator("section.notice").count() >= 1
    outline = page.evaluate(
        "(() => { const a = document.querySelector('header a');"
        " a.focus(); return getComputedStyle(a).outlineStyle; })()"
    )
    assert outline != "none"  # focus is visible


def test_dark_mode_follows_the_reader(site: str, browser: Any) -> None:
    light = browser.new_page(color_scheme="light")
    dark = browser.new_page(color_scheme="dark")
    for p in (light, dark):
        p.goto(site + "/notices/1")
    bg = "getComputedStyle(document.body).backgroundColor"
    assert light.evaluate(bg) == "rgb(255, 255, 255)"
    assert dark.evaluate(bg) == "rgb(18, 18, 18)"
    shot(dark, "notice-dark")
    mobile = browser.new_page(viewport={"width": 360, "height": 740})
    mobile.goto(site + "/")
    width = mobile.evaluate("document.documentElement.scrollWidth")
    assert width <= 360  # nothing forces a sideways scroll on a small phone
    shot(mobile, "timeline-mobile")


def test_the_api_reference_works_offline(site: str, browser: Any) -> None:
    """/api/docs renders every operation of the OpenAPI document, in Chromium, asking nothing
    of any other host (it used to load Swagger UI from a CDN: a blank page offline)."""
    import httpx

    elsewhere: list[str] = []
    page = browser.new_page()
    page.on(
        "request",
        lambda r: None if r.url.startswith(site) else elsewhere.append(r.url),
    )
    page.goto(site + "/api/docs")
    doc = httpx.get(site + "/api/openapi.json").json()
    operations = [(m.upper(), p) for p, ms in doc["paths"].items() for m in ms]
    shown = page.locator("section.notice h2").all_inner_texts()
    assert shown == [f"{m} {p}" for m, p in operations]
    assert page.get_by_role("link", name="/api/openapi.json").count() == 1
    assert elsewhere == []
    shot(page, "api-reference")
