"""Every GET answers HEAD (RFC 9110), on every route the app has: the same status and headers
as the GET, and no body. The routes are read from the app itself, so a new one is covered."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from clarion.channels import build_channels
from clarion.store import Store
from clarion.web.app import create_app
from tests.conftest import WEBHOOK_SECRET
from tests.helpers import NOW, config, demo_cap, ingest_bytes

CONFIG = """
[clarion]
public_url = "https://alerts.example.org"
[sources.nws]
kind = "cap"
url = "https://alerts.example.org/cap.atom"
[sources.ops]
kind = "push"
secret = { env = "PUSH_SECRET" }
[channels.preview]
kind = "preview"
[channels.fedi]
kind = "activitypub"
username = "alerts"
[[routes]]
channels = ["preview", "fedi"]
"""
SAMPLES = {
    "thread_id": "1",
    "version": "1",
    "name": "nws",
    "sender": "w-nws.webmaster@noaa.gov",
    "username": "alerts",
    "thread": "1",
    "source": "ops",
    "token": "0",
    "draft_id": "1",
    "delivery_id": "x",
    "secret": "not-a-confirmation-secret",
    "key": "not-an-unsubscribe-key",
}
STREAMS = {"/api/v1/stream", "/desk/events"}  # never end by themselves: headers only, at once


def _routes(routes: list[Any]) -> list[tuple[str, set[str]]]:
    """(path, methods) of every route, through the routers FastAPI includes lazily (which
    carry their own full paths: Clarion includes them without a prefix)."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out += _routes(inner.routes)
        elif getattr(route, "methods", None):
            out.append((route.path, set(route.methods)))
    return out


def test_every_get_route_answers_head(store: Store, monkeypatch: object) -> None:
    import os

    os.environ["PUSH_SECRET"] = WEBHOOK_SECRET
    cfg = config(CONFIG)
    chans = build_channels(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0), now=NOW)
    app = create_app(store, cfg, chans)
    paths = sorted(
        {
            re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: SAMPLES[m.group(1)], path)
            for path, methods in _routes(app.routes)
            if "GET" in methods
        }
    )
    assert len(paths) > 30
    with TestClient(app, base_url="https://alerts.example.org") as client:
        for path in paths:
            head = client.head(path, follow_redirects=False)
            assert head.content == b"", path
            if path in STREAMS:
                assert head.status_code in (200, 401, 303), path
                continue
            get = client.get(path, follow_redirects=False)
            assert head.status_code == get.status_code, path
            for name in ("content-type", "content-length", "etag", "location"):
                assert head.headers.get(name) == get.headers.get(name), (path, name)
