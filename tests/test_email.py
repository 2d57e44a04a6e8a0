"""E-mail against a real SMTP server on loopback (aiosmtpd), read back and parsed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from clarion.channels import build_channels
from clarion.channels.base import Outgoing, close_all
from clarion.delivery import outbox
from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from clarion.store.schema import channels as channels_table
from tests.helpers import NOW, config, deliveries, demo_cap, ingest_bytes, rows

USER, PASSWORD = "clarion", "smtp-secret"


class Mailbox:
    """An aiosmtpd handler: keeps every message; `script` answers the next DATA commands."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []
        self.script: list[str] = []
        self.password = PASSWORD
        self.delay = 0.0  # seconds to sit on the next DATA before answering

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.script:
            return self.script.pop(0)
        # Queued for delivery the moment it arrived, as a real server does...
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        if self.delay:  # ...then, perhaps, slow to say so
            delay, self.delay = self.delay, 0.0
            await asyncio.sleep(delay)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = auth_data.login == USER.encode() and auth_data.password == self.password.encode()
        if ok:
            return AuthResult(success=True)
        # The reply spelled out: aiosmtpd 1.4.6 otherwise leaves a failed LOGIN unanswered.
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
        )


@pytest.fixture
def smtp(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox()
    controller = Controller(
        box, hostname="127.0.0.1", port=port, authenticator=box.authenticate, auth_require_tls=False
    )
    controller.start()
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    cfg = config(f"""
[clarion]
drop_expired = false
[channels.mail]
kind = "email"
host = "127.0.0.1"
port = {port}
security = "none"
username = "{USER}"
password = {{ env = "SMTP_PASSWORD" }}
sender = "alerts@county.example.gov"
recipients = ["residents@lists.example.org"]
unsubscribe = "mailto:leave@lists.example.org"
timeout = "2s"
[[routes]]
channels = ["mail"]
""")
    chans = build_channels(cfg)
    try:
        yield box, cfg, chans, Dispatcher(sqlite_store, chans, worker="w", clock=lambda: NOW)
    finally:
        close_all(chans)
        controller.stop()


def test_alert_update_cancel_thread_by_headers(smtp, sqlite_store: Store) -> None:
    box, cfg, chans, disp = smtp
    for i in range(3):
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(i))
        disp.run_until_idle()
    alert, update, cancel = box.messages
    assert alert["Subject"].startswith("Flash Flood Watch issued")
    assert update["Subject"].startswith("UPDATE: ") and cancel["Subject"].startswith("CANCELLED: ")
    assert alert["From"] == "alerts@county.example.gov"
    assert alert["List-Unsubscribe"] == "<mailto:leave@lists.example.org>"
    assert update["In-Reply-To"] == alert["Message-ID"]
    assert cancel["In-Reply-To"] == update["Message-ID"]
    assert cancel["References"].split() == [alert["Message-ID"], update["Message-ID"]]
    assert alert.get_content_type() == "multipart/alternative"
    plain = alert.get_body(("plain",)).get_content()
    html = alert.get_body(("html",)).get_content()
    assert "FLASH FLOOD WATCH MEANS" in plain and "<p>" in html
    ds = sorted(rows(sqlite_store, deliveries), key=lambda d: d.version)
    assert [d.receipt_id for d in ds] == [m["Message-ID"] for m in box.messages]
    assert box.envelopes[0].rcpt_tos == ["residents@lists.example.org"]


def test_temporary_and_permanent_smtp_errors(smtp, sqlite_store: Store) -> None:
    box, cfg, chans, disp = smtp
    box.script = ["451 4.3.0 Mail server temporarily rejected message"]
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "retry_wait" and "451" in d.last_error
    box.script = ["554 5.7.1 Message rejected as spam"]
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(1))
    disp.run_until_idle()
    d2 = next(d for d in rows(sqlite_store, deliveries) if d.version == 2)
    assert d2.state == "failed" and "554" in d2.last_error


def test_wrong_password_holds_the_channel(smtp, sqlite_store: Store) -> None:
    box, cfg, chans, disp = smtp
    box.password = "changed-by-the-mail-admin"
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "pending" and d.error_kind == "auth" and box.messages == []
    [ch] = rows(sqlite_store, channels_table)
    assert ch.state == "needs_reauth"


def test_crash_mid_send_is_flagged_not_mailed_twice(smtp, sqlite_store: Store) -> None:
    box, cfg, chans, _ = smtp
    clock = [NOW]
    disp = Dispatcher(sqlite_store, chans, worker="w2", clock=lambda: clock[0])
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    [c] = outbox.claim(sqlite_store, "doomed", NOW, 60)
    notice = c.notice()
    chans["mail"].send(Outgoing(c.id, notice, c.payload, None, None, c.attempts))
    clock[0] = NOW + timedelta(seconds=61)
    disp.run_until_idle()
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "failed" and d.error_kind == "ambiguous" and len(box.messages) == 1


def test_a_server_silent_after_data_is_flagged_not_mailed_twice(smtp, sqlite_store: Store) -> None:
    """The server takes the message but answers DATA after our timeout: the mail went out,
    we cannot know it, and mail has no way to drop a repeat. Flagged, never resent."""
    box, cfg, chans, disp = smtp
    box.delay = 3.0  # the channel's timeout is 2 s
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "failed" and d.error_kind == "ambiguous"
    disp.run_until_idle()
    assert len(box.messages) == 1  # it did arrive, once


def test_a_server_that_is_down_is_retried(smtp, sqlite_store: Store) -> None:
    _, cfg, chans, disp = smtp
    chans["mail"].port = _closed_port()  # type: ignore[attr-defined]
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "retry_wait" and d.error_kind == "retryable"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens


def test_a_busy_server_421_is_retried_not_failed(smtp, sqlite_store: Store) -> None:
    """SMTP's "slow down": 421 (and 450/451/452) mean later, never give up."""
    box, cfg, chans, disp = smtp
    box.script = ["421 4.7.0 Try again later, closing connection"]
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "retry_wait" and "421" in d.last_error
