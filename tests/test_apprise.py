"""Apprise, through its JSON notification service, to a receiver on loopback."""

from __future__ import annotations

import json

import pytest

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.config import ConfigError
from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from tests.fakes.http import FakeServer, Request, Response
from tests.helpers import NOW, config, deliveries, demo_cap, ingest_bytes, rows

CONFIG = """
[clarion]
drop_expired = false
[channels.tail]
kind = "apprise"
urls = { env = "APPRISE_URLS" }
[[routes]]
channels = ["tail"]
"""


def test_apprise_json_service(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[dict[str, object]] = []
    answers = [500]

    def handle(req: Request) -> Response:
        if answers:
            return Response(answers.pop(0), {"error": "busy"})
        got.append(json.loads(req.body))
        return Response(200, {})

    with FakeServer(handle) as server:
        monkeypatch.setenv("APPRISE_URLS", f"json://127.0.0.1:{server.port}/notify")
        cfg = config(CONFIG)
        chans = build_channels(cfg)
        clock = [NOW]
        disp = Dispatcher(sqlite_store, chans, clock=lambda: clock[0])
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
        disp.run_until_idle()
        [d] = rows(sqlite_store, deliveries)
        assert d.state == "retry_wait" and d.last_error.startswith("Apprise:")
        clock[0] = d.next_attempt_at
        disp.run_until_idle()
        close_all(chans)
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "sent"
    [msg] = got
    assert str(msg["title"]).startswith("Flash Flood Watch issued")
    assert "FLASH FLOOD WATCH" in str(msg["message"]) and msg["type"] == "failure"


def test_unknown_apprise_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPRISE_URLS", "nonsense://nowhere")
    with pytest.raises(ConfigError, match=r"channels\.tail\.urls: URL 1 is not an Apprise URL"):
        build_channels(config(CONFIG))


@pytest.mark.parametrize(
    ("status", "state", "kind"),
    [
        (401, "pending", "auth"),  # held for an operator: the channel needs new credentials
        (404, "pending", "auth"),  # the endpoint is gone
        (429, "retry_wait", "rate_limited"),
        (400, "failed", "permanent"),
        (503, "retry_wait", "retryable"),
        (None, "retry_wait", "retryable"),  # no answer in time
    ],
)
def test_apprise_failures_are_classified_by_the_status_its_service_logged(
    status: int | None,
    state: str,
    kind: str,
    sqlite_store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    release = threading.Event()

    def handle(req: Request) -> Response:
        if status is None:
            release.wait(5)  # longer than the URL's read timeout (rto)
            return Response(504, {})
        return Response(status, {"error": "no"})

    with FakeServer(handle) as server:
        monkeypatch.setenv("APPRISE_URLS", f"json://127.0.0.1:{server.port}/notify?rto=0.5&cto=0.5")
        cfg = config(CONFIG)
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
        Dispatcher(sqlite_store, chans, clock=lambda: NOW).run_until_idle()
        release.set()
        close_all(chans)
    [d] = rows(sqlite_store, deliveries)
    assert (d.state, d.error_kind) == (state, kind)
