"""Clarion as a WebSub publisher: every feed advertises `clarion.websub_hub`, and on every new
notice the hub is told which feeds changed (`hub.mode=publish`, `hub.url=…`, W3C WebSub §7), so
subscribers get the notice in seconds instead of at their next poll.

The ping is made after the notice is committed, in a background thread, with a few retries; it
never delays ingestion. It is best effort by design: the feeds themselves stay the record, and
a subscriber that missed a ping sees the entry at its next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import httpx

from clarion.config import Config

log = logging.getLogger(__name__)
ATTEMPTS = 3


def topics(config: Config, sources: Iterable[str]) -> list[str]:
    base = (
        config.clarion.public_url or f"http://{config.clarion.host}:{config.clarion.port}"
    ).rstrip("/")
    out = [f"{base}/feeds/all.atom", f"{base}/feeds/all.rss", f"{base}/feeds/all.json"]
    out.append(f"{base}/feeds/cap.atom")
    for s in sorted(sources):
        out += [f"{base}/feeds/source/{s}.{fmt}" for fmt in ("atom", "rss", "json")]
    return out


def publish(hub: str, urls: list[str], *, timeout: float = 10.0, backoff: float = 2.0) -> bool:
    """Tell the hub these topics changed; True once it accepted (2xx)."""
    data = {"hub.mode": "publish", "hub.url": urls}  # hub.url repeated, once per topic
    for attempt in range(1, ATTEMPTS + 1):
        try:
            resp = httpx.post(hub, data=data, timeout=timeout)
            if resp.status_code < 300:
                return True
            problem = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        log.warning("WebSub hub %s: publish attempt %d failed: %s", hub, attempt, problem)
        if attempt < ATTEMPTS:
            time.sleep(backoff * attempt)
    return False


def announce(config: Config, sources: Iterable[str]) -> threading.Thread:
    hub = config.clarion.websub_hub
    assert hub
    t = threading.Thread(
        target=publish, args=(hub, topics(config, sources)), name="websub-publish", daemon=True
    )
    t.start()
    return t
