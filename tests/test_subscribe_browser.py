"""The subscribe form in headless Chromium (Debian's): without script, by e-mail, the
confirmation link followed and Confirm pressed; with script, the service worker registers, the
browser's location fills the point, and the push subscription reaches the server, which then
pushes an alert to it. Chromium's own push service (Google's) cannot be reached offline, so
`PushManager.subscribe` answers with a subscription of the loopback push service instead; that
service decrypts what Clarion sends with the subscription's private key, as the browser would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from clarion.channels import build_channels
from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from clarion.store.schema import subscriptions
from clarion.subscriptions.webpush import new_private_key
from clarion.web.app import create_app
from tests.browser import chromium, require_chromium, serve, shot
from tests.conftest import FIXTURES
from tests.fakes.mailbox import smtp_server
from tests.fakes.push_service import PushService
from tests.helpers import config, demo_cap, ingest_bytes, rows
from tests.test_subscribe_web import ALERT_AT

require_chromium()


@pytest.fixture
def site(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = smtp_server()
    box = server.__enter__()
    port = box.port
    monkeypatch.setenv("VAPID_KEY", new_private_key())
    cfg = config(f"""
[clarion]
public_url = "https://alerts.example.org"
[channels.mail]
kind = "email"
host = "127.0.0.1"
port = {port}
security = "none"
sender = "alerts@example.org"
subscribers = true
[channels.push]
kind = "webpush"
vapid_private_key = {{ env = "VAPID_KEY" }}
subject = "mailto:ops@example.org"
[[routes]]
channels = ["mail", "push"]
[subscriptions]
areas = "{FIXTURES / "areas" / "montana-zones.geojson"}"
""")
    chans = build_channels(cfg)
    try:
        with serve(create_app(sqlite_store, cfg)) as url, PushService() as push:
            yield {
                "url": url,
                "mail": box,
                "push": push,
                "cfg": cfg,
                "chans": chans,
                "store": sqlite_store,
            }
    finally:
        server.__exit__(None, None, None)
        for c in chans.values():
            c.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_without_script_a_person_subscribes_by_email_and_confirms(site: Any, browser: Any) -> None:
    ctx = browser.new_context(java_script_enabled=False)
    page = ctx.new_page()
    page.goto(site["url"] + "/subscribe")
    assert not page.locator("#push").is_visible()  # browser notifications need the script
    page.get_by_label("Places, lines or services, by name").fill("Lewis and Clark")
    page.get_by_label("Your e-mail address").fill("reader@example.net")
    page.get_by_role("button", name="Subscribe by e-mail").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="Check your mail").is_visible()
    [mail] = site["mail"].messages
    confirm = re.search(r"/subscriptions/confirm/[\w-]+", mail.get_content()).group(0)
    page.goto(site["url"] + confirm)
    assert rows(site["store"], subscriptions)[0].state == "pending"  # opening is not confirming
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="Subscribed").is_visible()
    assert rows(site["store"], subscriptions)[0].state == "active"
    shot(page, "subscribe-confirmed")
    ctx.close()


def test_with_script_the_browser_subscribes_and_is_pushed_an_alert(site: Any, browser: Any) -> None:
    push: PushService = site["push"]
    device = push.subscribe()
    ctx = browser.new_context(
        permissions=["notifications", "geolocation"],
        geolocation={"latitude": 46.5891, "longitude": -112.0391},
    )
    # Stands in for Google's push service, which cannot be reached offline (see the docstring).
    ctx.add_init_script(
        "PushManager.prototype.subscribe = async function (options) {"
        "  window.__asked = { userVisibleOnly: options.userVisibleOnly,"
        "    key: options.applicationServerKey.byteLength };"
        f"  const s = {json.dumps(device.as_json())};"
        "  return { toJSON: () => s };"
        "};"
    )
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(site["url"] + "/subscribe")
    assert page.locator("#push").is_visible()
    page.get_by_label("Area codes").fill("MTZ014")
    # A click on the map of the publisher's areas chooses the point: the middle of the
    # MTZ014 rectangle (46.2–47.3 N, 113.0–111.6 W) is about 46.75 N, 112.3 W.
    page.locator("svg.pick polygon").first.click()
    lat = float(page.locator("input[name=lat]").input_value())
    lon = float(page.locator("input[name=lon]").input_value())
    assert abs(lat - 46.75) < 0.05 and abs(lon + 112.3) < 0.05, (lat, lon)
    page.get_by_role("button", name="Use my location").click()
    # (not `wait_for_function`: it evaluates a string, which the page's CSP rightly refuses)
    expect(page.locator("input[name=lat]")).to_have_value("46.5891")
    page.get_by_role("button", name="Get notifications in this browser").click()
    expect(page.locator("#push-result")).to_contain_text("/subscriptions/", timeout=15_000)
    result = page.locator("#push-result").text_content() or ""
    assert "Subscribed" in result
    assert page.evaluate("window.__asked") == {"userVisibleOnly": True, "key": 65}
    worker = page.evaluate(
        "navigator.serviceWorker.getRegistration().then(r => r && r.active && r.active.scriptURL)"
    )
    assert worker == site["url"] + "/sw.js"
    shot(page, "subscribe-push")
    [sub] = rows(site["store"], subscriptions)
    assert sub.kind == "webpush" and sub.address == device.endpoint
    assert sub.interests["areas"] == ["MTZ014"] and sub.interests["point"] == [46.5891, -112.0391]
    assert problems == []
    ctx.close()

    # The alert reaches that browser, encrypted for the keys the page sent.
    ingest_bytes(site["store"], site["cfg"], site["chans"], demo_cap(0), now=ALERT_AT)
    Dispatcher(site["store"], site["chans"], clock=lambda: ALERT_AT).run_until_idle()
    assert [m["payload"]["title"][:17] for m in device.got] == ["Flash Flood Watch"]
