"""Small builders shared by tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from clarion.channels import build_channels
from clarion.channels.base import Channel
from clarion.config import Config, parse_config
from clarion.pipeline import IngestResult, ingest
from clarion.sources.cap import parse_cap
from clarion.store import Store
from clarion.store.schema import deliveries, delivery_events, notices, threads
from tests.conftest import fixture_bytes

NOW = datetime(2010, 8, 30, 11, 0, tzinfo=UTC)  # while the demo watch was in force

PREVIEW_ONLY = """
[clarion]
drop_expired = true
[channels.preview]
kind = "preview"
[channels.second]
kind = "preview"
[[routes]]
channels = ["preview", "second"]
"""


def config(text: str = PREVIEW_ONLY, **env: str) -> Config:
    """A config from TOML; the environment is `env` only, plus the loopback allowance the
    conftest sets for the SSRF guard (all fakes are on 127.0.0.1)."""
    allowed = os.environ.get("CLARION_ALLOW_NETWORKS")
    base = {"CLARION_ALLOW_NETWORKS": allowed} if allowed else {}
    return parse_config(text, environ={**base, **env})


def telegram_config(api_base: str) -> Config:
    """One Telegram channel `tg` (token from $T_TOKEN) at a fake Bot API, taking everything."""
    return config(f"""
[clarion]
drop_expired = false
[channels.tg]
kind = "telegram"
token = {{ env = "T_TOKEN" }}
chat_id = "@alerts"
api_base = "{api_base}"
[[routes]]
channels = ["tg"]
""")


def demo_cap(n: int) -> bytes:
    from clarion.demo import DATA, STEPS

    return (DATA / STEPS[n][0]).read_bytes()


def ingest_bytes(
    store: Store,
    cfg: Config,
    channels: Mapping[str, Channel],
    body: bytes,
    source: str = "nws",
    now: datetime = NOW,
    **kw: Any,
) -> IngestResult:
    return ingest(store, cfg, channels, parse_cap(body), source=source, now=now, **kw)


def rows(store: Store, table: Any, *where: Any, order: Any = None) -> list[Any]:
    q = select(table).where(*where)
    if order is not None:
        q = q.order_by(order)
    with store.read() as conn:
        return list(conn.execute(q).all())


def count(store: Store, table: Any, *where: Any) -> int:
    return len(rows(store, table, *where))


def where_it_runs(monkeypatch: Any, owner: Any, name: str) -> list[bool]:
    """Wrap `owner.name` to record, for each call, whether it ran on the event loop's thread
    (True) or off it (False)."""
    import asyncio

    calls: list[bool] = []
    real = getattr(owner, name)

    def spy(*a: Any, **k: Any) -> Any:
        try:
            asyncio.get_running_loop()
            calls.append(True)
        except RuntimeError:
            calls.append(False)
        return real(*a, **k)

    monkeypatch.setattr(owner, name, spy)
    return calls


def desk_login(client: Any, username: str, password: str, **form: str) -> Any:
    """Log in as a browser does: the form first (its token, in a cookie and a field), then the
    POST. Returns the POST's response (not followed)."""
    import re

    page = client.get("/desk/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, "the login form carries a token"
    data = {"username": username, "password": password, "csrf": token.group(1), **form}
    return client.post("/desk/login", data=data, follow_redirects=False)


def channels_for(cfg: Config) -> dict[str, Channel]:
    return build_channels(cfg)


__all__ = [
    "NOW",
    "config",
    "count",
    "deliveries",
    "delivery_events",
    "demo_cap",
    "desk_login",
    "fixture_bytes",
    "ingest_bytes",
    "notices",
    "rows",
    "threads",
    "where_it_runs",
]
