"""Secrets never reach a stored error or a log line, even when a platform echoes them."""

from __future__ import annotations

import logging

import pytest

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.delivery.dispatcher import Dispatcher
from clarion.redact import RedactingFilter, redact, register
from clarion.store import Store
from tests.fakes.chat import FakeTelegram
from tests.fakes.http import Response
from tests.helpers import NOW, deliveries, demo_cap, ingest_bytes, rows, telegram_config


def test_a_token_echoed_by_the_platform_is_masked_in_the_delivery_and_the_log(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RedactingFilter())
    monkeypatch.setenv("T_TOKEN", FakeTelegram.TOKEN)
    with FakeTelegram() as fake:
        cfg = telegram_config(fake.url)
        chans = build_channels(cfg)
        echo = f"Bad Request: bot{FakeTelegram.TOKEN} cannot post to this chat"
        fake.script.append(Response(400, {"ok": False, "error_code": 400, "description": echo}))
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
        Dispatcher(sqlite_store, chans, clock=lambda: NOW).run_until_idle()
        close_all(chans)
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "failed" and "cannot post to this chat" in d.last_error
    assert FakeTelegram.TOKEN not in d.last_error and "***" in d.last_error
    assert "cannot post to this chat" in caplog.text
    assert FakeTelegram.TOKEN not in caplog.text


def test_urls_are_masked_by_their_secret_parts() -> None:
    register("https://discord.com/api/webhooks/123456789/Zx9SecretWebhookTokenValue")
    text = "POST https://discord.com/api/webhooks/123456789/Zx9SecretWebhookTokenValue?wait=true"
    assert "Zx9SecretWebhookTokenValue" not in redact(text)
    assert redact("a short word: token") == "a short word: token"  # nothing registered matches
    logger = logging.getLogger("clarion.test.redact")
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 1, "failed: %s", ("Zx9SecretWebhookTokenValue",), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "failed: ***"
