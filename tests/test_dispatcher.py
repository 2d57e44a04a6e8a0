"""The dispatcher against loopback fakes: signatures, threading, and every failure class."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from clarion.channels import build_channels
from clarion.channels.base import Outgoing, close_all
from clarion.delivery import outbox
from clarion.delivery.dispatcher import Dispatcher
from clarion.model import Notice
from clarion.sources.cap import parse_cap
from clarion.store import Store
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.http import Response
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.webhook import WebhookReceiver
from tests.helpers import (
    NOW,
    config,
    deliveries,
    delivery_events,
    demo_cap,
    ingest_bytes,
    rows,
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def mastodon() -> Iterator[FakeMastodon]:
    with FakeMastodon() as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(WEBHOOK_SECRET) as r:
        yield r


_opened: list[dict] = []


@pytest.fixture(autouse=True)
def _close_channels() -> Iterator[None]:
    yield
    from clarion.channels.base import close_all

    while _opened:
        close_all(_opened.pop())


def _setup(
    store: Store,
    mastodon: FakeMastodon,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    on_cancel: str = "reply",
    extra: str = "",
):
    monkeypatch.setenv("MASTODON_TOKEN", mastodon.token)
    monkeypatch.setenv("HOOK_SECRET", WEBHOOK_SECRET)
    cfg = config(f"""
[channels.masto]
kind = "mastodon"
instance = "{mastodon.url}"
token = {{ env = "MASTODON_TOKEN" }}
on_cancel = "{on_cancel}"
{extra}
[channels.hook]
kind = "webhook"
url = "{receiver.url}"
secret = {{ env = "HOOK_SECRET" }}
[[routes]]
channels = ["masto", "hook"]
""")
    chans = build_channels(cfg)
    _opened.append(chans)
    clock = Clock(NOW)
    return cfg, chans, Dispatcher(store, chans, clock=clock, worker="test-worker"), clock


def test_alert_update_cancel_thread_on_mastodon(
    store: Store, mastodon: FakeMastodon, receiver: WebhookReceiver, monkeypatch
) -> None:
    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
    for i in range(3):
        ingest_bytes(store, cfg, chans, demo_cap(i))
        assert disp.run_until_idle() == 2
    posts = sorted(mastodon.statuses.values(), key=lambda s: int(s["id"]))
    assert len(posts) == 3
    alert, update, cancel = posts
    assert alert["in_reply_to_id"] is None
    assert update["in_reply_to_id"] == alert["id"]
    assert cancel["in_reply_to_id"] == update["id"]
    assert update["text"].startswith("UPDATE: Flash Flood Watch extended")
    assert cancel["text"].startswith("CANCELLED: Flash Flood Watch cancelled")
    assert alert["language"] is None or alert["language"] == "en"
    receipts = {d.receipt_id for d in rows(store, deliveries, deliveries.c.channel == "masto")}
    assert receipts == {p["id"] for p in posts}
    assert all(
        d.receipt_url.startswith("https://fake.social/@clarion/")
        for d in rows(store, deliveries, deliveries.c.channel == "masto")
    )
    # The webhook got the three events, each verified, each with its delivery id.
    assert [b["type"] for b in receiver.bodies()] == [
        "notice.created",
        "notice.updated",
        "notice.cancelled",
    ]
    hook_ids = {d.id for d in rows(store, deliveries, deliveries.c.channel == "hook")}
    assert {r["id"] for r in receiver.received} == hook_ids
    assert receiver.rejected == []


def test_a_notice_is_read_only_for_the_channels_that_use_it(
    store: Store, mastodon: FakeMastodon, receiver: WebhookReceiver, monkeypatch
) -> None:
    """A webhook posts the payload rendered at ingest; reading the stored notice back was a
    tenth of its delivery's time. Mastodon reads it (images, a cancel's edit) once, when it
    asks; an update worded as a new alert reads it as one."""
    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
    read: list[str] = []
    real = outbox.Claimed.notice

    def counted(self: outbox.Claimed) -> Notice:
        read.append(self.channel)
        return real(self)

    monkeypatch.setattr(outbox.Claimed, "notice", counted)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    assert disp.run_until_idle() == 2
    assert read == ["masto"] and len(receiver.bodies()) == 1


def test_a_webhook_posts_its_stored_payload_without_decoding_it(
    store: Store, mastodon: FakeMastodon, receiver: WebhookReceiver, monkeypatch
) -> None:
    """Decoding a webhook's ~7 KB payload and encoding it again was a tenth of its delivery's
    time: the dispatcher hands over the stored JSON text, the webhook writes its two fields
    after the payload's members. What arrives is the stored payload and those fields."""
    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
    decoded: list[str] = []
    real = outbox.Claimed.payload.func  # type: ignore[attr-defined]

    def counted(self: outbox.Claimed) -> dict:  # type: ignore[type-arg]
        decoded.append(self.channel)
        return real(self)

    monkeypatch.setattr(outbox.Claimed, "payload", property(counted))
    handed: list[str] = []
    real_out = Outgoing.payload.func  # type: ignore[attr-defined]

    def counted_out(self: Outgoing) -> dict:  # type: ignore[type-arg]
        handed.append(self.id)
        return real_out(self)

    monkeypatch.setattr(Outgoing, "payload", property(counted_out))
    for i in range(3):  # an alert, its update, its cancel
        ingest_bytes(store, cfg, chans, demo_cap(i))
        assert disp.run_until_idle() == 2
    stored = {d.id: d.payload for d in rows(store, deliveries, deliveries.c.channel == "hook")}
    assert "hook" not in decoded and not set(handed) & set(stored)
    masto = {d.id for d in rows(store, deliveries, deliveries.c.channel == "masto")}
    assert set(handed) & masto  # (the counting works: Mastodon reads its payload)
    got = receiver.bodies()
    assert len(got) == 3 and receiver.rejected == []
    for body, meta in zip(got, receiver.received, strict=True):
        assert {k: v for k, v in body.items() if k not in ("timestamp", "in_reply_to")} == (
            stored[meta["id"]]
        )
        assert body["timestamp"].endswith("Z")
    assert [b["in_reply_to"] for b in got] == [None, *(m["id"] for m in receiver.received[:2])]


@pytest.mark.parametrize(
    "stored",
    [
        '{"type": "notice.created", "data": {"headline": "Flood \\u00e9"}}',
        '{"type":"notice.created","data":{"headline":"x"}}',
        "  {}  ",
        '{"type": "x", "timestamp": "old", "data": {"note": "timestamp"}}',
    ],
)
def test_a_webhook_body_is_its_payload_and_its_fields(stored: str) -> None:
    from clarion.channels.webhook import with_fields

    fields = {"timestamp": "2026-12-06T07:00:00Z", "in_reply_to": None}
    out = Outgoing("d", lambda: None, stored, None, None, 1)  # type: ignore[arg-type,return-value]
    assert json.loads(with_fields(out, fields)) == {**json.loads(stored), **fields}
    given = Outgoing("d", lambda: None, json.loads(stored), None, None, 1)  # type: ignore[arg-type,return-value]
    assert json.loads(with_fields(given, fields)) == {**json.loads(stored), **fields}


def test_a_claimed_payload_is_decoded_only_when_read() -> None:
    c = outbox.Claimed(
        "d", 1, 1, "hook", 1, "alert", '{"type": "x", "data": {}}', 1, "{}", None, False
    )
    assert c.as_new is None and "payload" not in c.__dict__
    assert c.payload == {"type": "x", "data": {}} and "payload" in c.__dict__
    again = outbox.Claimed(
        "d", 1, 1, "hook", 1, "update", '{"text": "t", "as_new": true}', 1, "{}", None, False
    )
    assert again.as_new is True


def test_outgoing_reads_its_notice_once_and_only_when_asked() -> None:
    notice = parse_cap(demo_cap(0))[0]
    calls: list[int] = []

    def load() -> Notice:
        calls.append(1)
        return notice

    lazy = Outgoing("d", load, {}, None, None, 1)
    assert calls == []
    assert lazy.notice is notice and lazy.notice is notice and calls == [1]
    assert Outgoing("d", notice, {}, None, None, 1).notice is notice


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("reply_and_delete", lambda m, first: first in m.deleted),
        ("reply_and_edit", lambda m, first: m.statuses[first]["text"].startswith("CANCELLED")),
    ],
)
def test_cancel_can_delete_or_edit_the_original(
    store, mastodon, receiver, monkeypatch, mode, check
) -> None:
    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch, on_cancel=mode)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    first = next(iter(mastodon.statuses))
    ingest_bytes(store, cfg, chans, demo_cap(2))
    disp.run_until_idle()
    assert check(mastodon, first)


def test_cancel_of_something_never_posted_posts_nothing(
    store, mastodon, receiver, monkeypatch
) -> None:
    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    ingest_bytes(store, cfg, chans, demo_cap(2))  # the cancel supersedes the unsent alert
    disp.run_until_idle()
    assert mastodon.statuses == {}
    states = {(d.version, d.channel): d.state for d in rows(store, deliveries)}
    assert states[(1, "masto")] == "superseded" and states[(2, "masto")] == "cancelled"


def test_instance_limit_is_read_and_respected(store, receiver, monkeypatch) -> None:
    with FakeMastodon(max_characters=160) as small:
        cfg, chans, disp, _ = _setup(store, small, receiver, monkeypatch)
        ingest_bytes(store, cfg, chans, demo_cap(0))
        disp.run_until_idle()
        [post] = small.statuses.values()
        from tests.fakes.mastodon import mastodon_length

        assert mastodon_length(post["text"]) <= 160
        assert ("GET", "/api/v2/instance/") in small.requests


def test_server_errors_retry_with_backoff(store, mastodon, receiver, monkeypatch) -> None:
    cfg, chans, disp, clock = _setup(store, mastodon, receiver, monkeypatch)
    mastodon.script = [
        Response(200, {"configuration": {"statuses": {"max_characters": 500}}}),
        Response(500, {"error": "boom"}),
        Response(200, raw=b"<html>proxy error</html>", content_type="text/html"),
    ]
    receiver.script = [Response(503, raw=b"busy", content_type="text/plain")]
    ingest_bytes(store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    ds = {d.channel: d for d in rows(store, deliveries)}
    assert ds["masto"].state == "retry_wait" and "server error" in ds["masto"].last_error
    assert ds["hook"].state == "retry_wait" and "503" in ds["hook"].last_error
    wait = (ds["masto"].next_attempt_at - clock.now).total_seconds()
    assert 2.5 <= wait <= 5.0  # first retry: 5 s with equal jitter
    clock.advance(6)
    disp.run_until_idle()
    ds = {d.channel: d for d in rows(store, deliveries)}
    assert ds["masto"].state == "retry_wait" and "garbage" in ds["masto"].last_error
    assert ds["hook"].state == "sent"
    clock.advance(11)
    disp.run_until_idle()
    assert rows(store, deliveries, deliveries.c.channel == "masto")[0].state == "sent"
    assert len(mastodon.statuses) == 1


def test_rate_limit_honours_retry_after(store, mastodon, receiver, monkeypatch) -> None:
    cfg, chans, disp, clock = _setup(store, mastodon, receiver, monkeypatch)
    receiver.script = [Response(429, {"error": "slow down"}, headers={"Retry-After": "120"})]
    ingest_bytes(store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    [hook] = rows(store, deliveries, deliveries.c.channel == "hook")
    assert hook.state == "retry_wait" and hook.error_kind == "rate_limited"
    assert (hook.next_attempt_at - clock.now).total_seconds() >= 120
    assert hook.attempts == 0  # being told to wait is not a failed attempt
    clock.advance(60)
    assert disp.run_until_idle() == 0
    clock.advance(61)
    disp.run_until_idle()
    assert rows(store, deliveries, deliveries.c.channel == "hook")[0].state == "sent"


def test_revoked_token_holds_the_channel(store, mastodon, receiver, monkeypatch) -> None:
    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
    mastodon.token = "rotated-by-admin"
    ingest_bytes(store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    [d] = rows(store, deliveries, deliveries.c.channel == "masto")
    assert d.state == "pending" and d.error_kind == "auth"  # waits; does not fail away
    from clarion.store.schema import channels

    [ch] = rows(store, channels, channels.c.name == "masto")
    assert ch.state == "needs_reauth" and "access token" in ch.state_reason
    assert disp.run_until_idle() == 0  # held: not retried against a dead token
    mastodon.token = "good-token"
    outbox.set_channel_state(store, "masto", "active", None, NOW)
    disp.run_until_idle()
    assert rows(store, deliveries, deliveries.c.channel == "masto")[0].state == "sent"


def test_permanent_errors_fail_at_once(store, mastodon, receiver, monkeypatch) -> None:
    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
    receiver.script = [Response(400, {"error": "bad payload"})]
    mastodon.script = [
        Response(200, {"configuration": {"statuses": {"max_characters": 500}}}),
        Response(422, {"error": "Validation failed: Text can't be blank"}),
    ]
    ingest_bytes(store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    ds = {d.channel: d for d in rows(store, deliveries)}
    assert ds["hook"].state == "failed" and "400" in ds["hook"].last_error
    assert ds["masto"].state == "failed" and "can't be blank" in ds["masto"].last_error


def test_gives_up_after_max_attempts(store, mastodon, receiver, monkeypatch) -> None:
    cfg, chans, _, clock = _setup(store, mastodon, receiver, monkeypatch)
    disp = Dispatcher(store, {"hook": chans["hook"]}, clock=clock, max_attempts=3)
    receiver.script = [Response(500)] * 3
    ingest_bytes(store, cfg, chans, demo_cap(0))
    for _ in range(3):
        disp.run_until_idle()
        clock.advance(3600)
    [hook] = rows(store, deliveries, deliveries.c.channel == "hook")
    assert hook.state == "failed" and "gave up after 3 attempts" in hook.last_error
    trail = [
        e.to_state
        for e in rows(
            store,
            delivery_events,
            delivery_events.c.delivery_id == hook.id,
            order=delivery_events.c.id,
        )
    ]
    assert trail == [
        "pending",
        "sending",
        "retry_wait",
        "sending",
        "retry_wait",
        "sending",
        "failed",
    ]


def test_resend_after_crash_does_not_double_post(store, mastodon, receiver, monkeypatch) -> None:
    """A worker sends, then dies before recording: the next worker's resend is deduplicated."""
    cfg, chans, disp, clock = _setup(store, mastodon, receiver, monkeypatch)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    claimed = outbox.claim(store, "doomed", clock.now, 60)
    from clarion.channels.base import Outgoing

    for c in claimed:  # the doomed worker sends each one, then dies before recording
        notice = c.notice()
        chans[c.channel].send(Outgoing(c.id, notice, c.payload, None, None, c.attempts))
    assert len(mastodon.statuses) == 1 and len(receiver.received) == 1
    clock.advance(61)
    disp.run_until_idle()
    assert len(mastodon.statuses) == 1  # Idempotency-Key returned the status already made
    assert all(d.state == "sent" for d in rows(store, deliveries))
    assert len(receiver.received) == 2
    assert receiver.received[0]["id"] == receiver.received[1]["id"]  # same webhook-id: droppable


def test_mastodon_can_edit_on_update(store, mastodon, receiver, monkeypatch) -> None:
    cfg, chans, disp, _ = _setup(
        store, mastodon, receiver, monkeypatch, extra="edit_on_update = true"
    )
    ingest_bytes(store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    ingest_bytes(store, cfg, chans, demo_cap(1))
    disp.run_until_idle()
    [post] = mastodon.statuses.values()
    assert post["text"].startswith("UPDATE: Flash Flood Watch extended")
    assert mastodon.edits and mastodon.edits[0][0] == post["id"]


def test_mastodon_attaches_images_with_alt_text(store, mastodon, receiver, monkeypatch) -> None:
    from tests.conftest import fixture_bytes
    from tests.fakes.http import FakeServer, Response
    from tests.test_images import JPEG as jpeg  # a real JPEG: images are decoded first

    images = FakeServer(
        lambda req: (
            Response(200, raw=jpeg, content_type="image/jpeg")
            if req.path.endswith("energy.jpg")
            else Response(404, raw=b"gone", content_type="text/plain")
        )
    )
    with images:
        cap = fixture_bytes("cap/wcatwc-warning.cap")
        cap = cap.replace(
            b"http://newwcatwc.arh.noaa.gov/tsuPortal/events/PAAQ/2011/09/02/lqw6d6/"
            b"2/WEPA41/2011/09/02/lqw6d6/energylqw6d6-02.jpg",
            f"{images.url}/energy.jpg".encode(),
        )
        cap = cap.replace(
            b"http://newwcatwc.arh.noaa.gov/tsuPortal/events/PAAQ/2011/09/02/lqw6d6/"
            b"2/WEPA41/2011/09/02/lqw6d6/02/ttvulqw6d6-02.jpg",
            f"{images.url}/missing.jpg".encode(),
        )
        cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
        ingest_bytes(store, cfg, chans, cap, include_expired=True)
        disp.run_until_idle()
    [status] = mastodon.statuses.values()
    [media] = mastodon.media.values()  # the missing image is left out, not the alert
    assert status["media_ids"] == [media["id"]]
    assert media["description"] == "Energy Map" and media["bytes"] == jpeg


def test_idle_workers_are_woken_by_notify_on_postgresql(store: Store) -> None:
    """PostgreSQL: queuing deliveries NOTIFYs the listeners when the transaction commits.
    SQLite: the wait is a plain sleep that reports no wake-up."""
    from clarion.pipeline import OUTBOX_CHANNEL
    from tests.helpers import channels_for, config, demo_cap, ingest_bytes

    cfg = config()
    listener = store.listener(OUTBOX_CHANNEL)
    try:
        assert listener.wait(0.01) is False  # listening now; nothing queued yet
        ingest_bytes(store, cfg, channels_for(cfg), demo_cap(0))
        woke = listener.wait(0.05 if store.is_sqlite else 10)  # PG returns at the NOTIFY
        assert woke is (not store.is_sqlite)
        assert listener.wait(0.01) is False  # one notification, consumed
    finally:
        listener.close()


def _two_hooks(slow_url: str, fast_url: str) -> str:
    return f"""
[clarion]
drop_expired = false
[channels.slow]
kind = "webhook"
url = "{slow_url}"
secret = {{ env = "HOOK_SECRET" }}
timeout = "60s"
rate_limit = "off"
[channels.fast]
kind = "webhook"
url = "{fast_url}"
secret = {{ env = "HOOK_SECRET" }}
rate_limit = "off"
[[routes]]
channels = ["slow", "fast"]
"""


def test_a_hung_platform_delays_only_its_own_channel(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lanes: one platform holds every request open; the other channel's deliveries all go
    out meanwhile (they used to wait out each of the hung one's timeouts)."""
    import threading
    import time

    from tests.helpers import ingest_bytes

    monkeypatch.setenv("HOOK_SECRET", WEBHOOK_SECRET)
    release = threading.Event()
    with WebhookReceiver(WEBHOOK_SECRET) as slow, WebhookReceiver(WEBHOOK_SECRET) as fast:
        slow.on_receive = lambda _id: release.wait(60)  # the platform hangs
        cfg = config(_two_hooks(slow.url, fast.url))
        chans = build_channels(cfg)
        for i in range(3):
            ingest_bytes(sqlite_store, cfg, chans, demo_cap(0).replace(
                b"MT</identifier>", f"MT-{i}</identifier>".encode()))  # fmt: skip
        stop = threading.Event()
        disp = Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False)
        worker = threading.Thread(target=disp.run_forever, args=(stop, 0.1), daemon=True)
        worker.start()
        try:
            deadline = time.monotonic() + 30  # a hang detector, not a latency threshold
            while len(fast.received) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(fast.received) == 3  # all of them, while the slow one still hangs
            states = {(d.channel, d.state) for d in rows(sqlite_store, deliveries)}
            assert ("slow", "sending") in states and ("fast", "sent") in states
        finally:
            release.set()
            stop.set()
            worker.join(30)
            close_all(chans)


def test_a_429_pauses_the_rest_of_the_batch_without_a_bucket(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel with no configured rate limit (Matrix by default) answered 429 to each of a
    batch claimed together, 0.5 s apart: after the first 429, the others wait."""
    from tests.helpers import ingest_bytes

    monkeypatch.setenv("HOOK_SECRET", WEBHOOK_SECRET)
    with WebhookReceiver(WEBHOOK_SECRET) as hook:
        hook.script = [Response(429, {"error": "slow down"}, headers={"Retry-After": "30"})] * 5
        cfg = config(_two_hooks(hook.url, hook.url).replace('channels = ["slow", "fast"]',
                                                            'channels = ["slow"]'))  # fmt: skip
        chans = build_channels(cfg)
        for i in range(5):
            ingest_bytes(sqlite_store, cfg, chans, demo_cap(0).replace(
                b"MT</identifier>", f"MT-{i}</identifier>".encode()))  # fmt: skip
        # One at a time, as Matrix sends (several in flight would all be out before the 429).
        Dispatcher(
            sqlite_store, chans, clock=lambda: NOW, drop_expired=False, in_flight={"slow": 1}
        ).run_once()
        close_all(chans)
        assert len(hook.script) == 4  # one request reached the platform, not five
        waiting = [d for d in rows(sqlite_store, deliveries) if d.state == "retry_wait"]
        assert len(waiting) == 5 and all(d.attempts <= 1 for d in waiting)


def _one_webhook(url: str) -> Any:
    """A config with one webhook channel to `url` (secret from $HOOK_SECRET), no rate limit,
    keeping old alerts."""
    return config(f"""
[clarion]
drop_expired = false
[channels.hook]
kind = "webhook"
url = "{url}"
secret = {{ env = "HOOK_SECRET" }}
rate_limit = "off"
[[routes]]
channels = ["hook"]
""")


def test_a_channel_sends_several_stories_at_once_but_a_storys_versions_in_turn(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded in-flight per channel: a webhook receiver gets deliveries of different stories
    at once (here while the first is still held open), and an update of a story whose earlier
    version is still being sent is not claimed until that one is done."""
    import threading
    import time

    monkeypatch.setenv("HOOK_SECRET", WEBHOOK_SECRET)
    first = demo_cap(0)
    ident = b"NOAA-NWS-ALERTS-MT20100830100700TFXFlashFloodWatchTFX20100830180000MT"  # story A
    others = [first.replace(ident, ident + f"-{i}".encode()) for i in (1, 2)]  # stories B, C
    held_open = threading.Event()
    release = threading.Event()
    arrived: list[str] = []

    def on_receive(_id: str) -> None:
        body = receiver.bodies()[-1]
        arrived.append(body["data"]["identifier"])
        if body["data"]["identifier"] == ident.decode():
            held_open.set()
            release.wait(60)  # story A's alert is held open by the platform

    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.on_receive = on_receive
        cfg = _one_webhook(receiver.url)
        chans = build_channels(cfg)
        for body in (first, *others):
            ingest_bytes(sqlite_store, cfg, chans, body)
        disp = Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False)
        assert disp.in_flight["hook"] == 8  # a webhook's default
        batch = threading.Thread(target=disp.run_once, daemon=True)
        batch.start()
        try:
            deadline = time.monotonic() + 30  # a hang detector, not a latency threshold
            while (len(arrived) < 3 or not held_open.is_set()) and time.monotonic() < deadline:
                time.sleep(0.02)
            # B and C arrived while A was held open: three in flight on one channel.
            assert sorted(arrived) == sorted(
                [ident.decode(), *(ident.decode() + f"-{i}" for i in (1, 2))]
            )
            ingest_bytes(sqlite_store, cfg, chans, demo_cap(1))  # A's update, A still sending
            [update] = [d for d in rows(sqlite_store, deliveries) if d.version == 2]
            assert update.state == "pending"
            claimed = outbox.claim(sqlite_store, "another-worker", NOW, 60, 10)
            assert claimed == []  # not while its earlier version is in flight
        finally:
            release.set()
            batch.join(30)
        assert disp.run_until_idle() == 1
        assert arrived[-1] != ident.decode() and len(arrived) == 4  # the update, after A
        assert [d.state for d in rows(sqlite_store, deliveries)] == ["sent"] * 4
        close_all(chans)


@pytest.mark.parametrize(("platform_takes", "third_batch"), [(0.001, "alone"), (0.05, "at once")])
def test_a_channel_is_timed_on_sends_made_alone_and_fast_platforms_go_one_at_a_time(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, platform_takes: float, third_batch: str
) -> None:
    """Sends made at once slow each other down (the receiver and this process share the
    cores), so only a send made alone times the platform: the first batch goes at once
    (unmeasured), the second sends one delivery alone first, and from then on a platform
    that answers within SLOW_SEND gets one send after the other, a slow one several at once.
    (The platform's time is a fake clock that each request advances: no timing here.)"""
    import threading
    import types

    from clarion.delivery import dispatcher as dispatcher_module

    clock = [1000.0]
    fake_time = types.SimpleNamespace(monotonic=lambda: clock[0])
    monkeypatch.setattr(dispatcher_module, "time", fake_time)
    monkeypatch.setenv("HOOK_SECRET", WEBHOOK_SECRET)
    ident = b"NOAA-NWS-ALERTS-MT20100830100700TFXFlashFloodWatchTFX20100830180000MT"
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        cfg = _one_webhook(receiver.url)
        chans = build_channels(cfg)
        for i in range(48):  # three claims of 16 (twice the webhook's 8 in flight)
            ingest_bytes(sqlite_store, cfg, chans, demo_cap(0).replace(ident, ident + b"-%d" % i))
        hook = chans["hook"]
        real_send = hook.send
        lock = threading.Lock()
        batch: list[str] = []

        def send(out: Any) -> Any:
            alone = threading.current_thread() is threading.main_thread()
            with lock:
                batch.append("alone" if alone else "at once")
                clock[0] += platform_takes  # what the platform took, as the dispatcher sees it
            return real_send(out)

        monkeypatch.setattr(hook, "send", send)
        disp = Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False)
        seen = []
        for _ in range(3):
            batch.clear()
            assert disp.run_once() == 16
            seen.append(list(batch))
        close_all(chans)
        assert len(receiver.bodies()) == 48
    assert seen[0] == ["at once"] * 16  # not yet measured
    assert seen[1] == ["alone"] + ["at once"] * 15  # one timed alone, the rest at once
    assert seen[2] == [third_batch] * 16


def test_a_made_post_whose_receipt_the_database_refuses_for_a_while_is_not_made_again(
    store: Store, mastodon: FakeMastodon, receiver: WebhookReceiver, monkeypatch
) -> None:
    """The database goes away just after a post is made (a restart, a failover): its receipt
    could not be recorded, the delivery was queued again and the post made twice on every
    platform without an idempotency key (Mastodon takes one; a Telegram chat or a Discord
    channel would show it twice). The receipt is tried again until the database answers."""
    from sqlalchemy.exc import OperationalError

    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
    disp.record_first_pause = 0.01
    real = outbox.mark_sent
    refused: list[str] = []

    def away_twice(*a, **k):  # type: ignore[no-untyped-def]
        if len(refused) < 4:  # each of the two deliveries is refused twice
            refused.append(a[1].id)
            raise OperationalError("UPDATE deliveries …", {}, Exception("server closed"))
        return real(*a, **k)

    monkeypatch.setattr(outbox, "mark_sent", away_twice)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    assert disp.run_until_idle() == 2
    assert len(refused) == 4
    assert len(mastodon.statuses) == 1 and len(receiver.received) == 1  # each made once
    assert {d.state for d in rows(store, deliveries)} == {"sent"}
    moves = [(e.from_state, e.to_state) for e in rows(store, delivery_events)]
    assert ("sending", "retry_wait") not in moves


def test_a_receipt_refused_past_patience_is_left_to_its_lease_not_queued_again(
    store: Store, mastodon: FakeMastodon, receiver: WebhookReceiver, monkeypatch, caplog
) -> None:
    """Past `record_patience` the receipt is given up, and the delivery left `sending` (it was
    queued again, and made twice where the platform takes no key): its lease runs out and it
    is taken over as after a crash (the conformance suite follows it to the end on every
    platform). The log says where the post is."""
    from sqlalchemy.exc import OperationalError

    cfg, chans, disp, _ = _setup(store, mastodon, receiver, monkeypatch)
    disp.record_first_pause, disp.record_patience = 0.01, 0.0

    def away(*a, **k):  # type: ignore[no-untyped-def]
        raise OperationalError("UPDATE deliveries …", {}, Exception("server closed"))

    monkeypatch.setattr(outbox, "mark_sent", away)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    assert len(mastodon.statuses) == 1 and len(receiver.received) == 1
    assert {d.state for d in rows(store, deliveries)} == {"sending"}
    [status] = mastodon.statuses.values()
    assert any(
        "did not take its receipt" in r.getMessage() and str(status["url"]) in r.getMessage()
        for r in caplog.records
    )
