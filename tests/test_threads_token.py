"""Threads tokens last 60 days: Clarion refreshes them by itself and keeps the fresh one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.channels.threads import ThreadsChannel
from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from tests.fakes.chat import FakeThreads
from tests.helpers import NOW, config, deliveries, demo_cap, ingest_bytes, rows


def _config(fake: FakeThreads, token: str) -> str:
    return f"""
[clarion]
drop_expired = false
[channels.th]
kind = "threads"
user_id = "{FakeThreads.USER}"
token = {token}
api_base = "{fake.url}/v1.0"
[[routes]]
channels = ["th"]
"""


def _send(store: Store, cfg_text: str, n: int, **env: str) -> None:
    cfg = config(cfg_text, **env)
    chans = build_channels(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(n))
    Dispatcher(store, chans, clock=lambda: NOW).run_until_idle()
    close_all(chans)


def test_the_token_is_refreshed_and_saved_to_its_file(tmp_path: Path, sqlite_store: Store) -> None:
    secret = tmp_path / "threads.token"
    secret.write_text(FakeThreads.TOKEN + "\n")
    with FakeThreads() as fake:
        text = _config(fake, f'{{ file = "{secret}" }}')
        _send(sqlite_store, text, 0)
        assert fake.refreshes == 1
        assert secret.read_text().strip() == f"{FakeThreads.TOKEN}-r1"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        fake.tokens = {f"{FakeThreads.TOKEN}-r1"}  # the old token has now expired
        _send(sqlite_store, text, 1)  # a restart: the saved token is read back
    assert [d.state for d in rows(sqlite_store, deliveries)] == ["sent", "sent"]
    assert len(fake.posts) == 2


def test_a_token_from_the_environment_is_refreshed_in_memory_and_that_is_said(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TH_TOKEN", FakeThreads.TOKEN)
    with FakeThreads() as fake:
        _send(
            sqlite_store,
            _config(fake, '{ env = "TH_TOKEN" }'),
            0,
        )
    assert fake.refreshes == 1 and len(fake.posts) == 1
    assert "cannot be saved" in caplog.text


def test_a_refresh_that_fails_never_holds_a_post_back() -> None:
    now = [1_000_000.0]
    with FakeThreads() as fake:
        fake.too_young = True
        ch = ThreadsChannel(
            "th",
            FakeThreads.USER,
            FakeThreads.TOKEN,
            api_base=f"{fake.url}/v1.0",
            clock=lambda: now[0],
            token_refresh=86400,
        )
        assert ch.refresh_token() is False
        ch._maybe_refresh()  # tried a moment ago: not again yet
        assert fake.refreshes == 0
        fake.too_young = False
        now[0] += 86400
        ch._maybe_refresh()
        assert fake.refreshes == 1 and ch.token_expires_at == pytest.approx(now[0] + 5183944)
        ch.close()


def test_refresh_can_be_turned_off(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TH_TOKEN", FakeThreads.TOKEN)
    with FakeThreads() as fake:
        _send(
            sqlite_store,
            _config(fake, '{ env = "TH_TOKEN" }').replace(
                'api_base = "', 'token_refresh = 0\napi_base = "'
            ),
            0,
        )
    assert fake.refreshes == 0 and len(fake.posts) == 1
