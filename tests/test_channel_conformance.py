"""One conformance suite that every channel passes, against a loopback fake of its platform
that follows the platform's documented API, with the real client (Mastodon.py, httpx) talking
to it: post, update as a threaded reply (where the platform threads), cancel, 429 with
Retry-After, 500, timeout, revoked credentials, and no duplicate after a crash where the
platform offers a way to prevent one (elsewhere: flagged, never silently repeated).

E-mail (a real aiosmtpd server: test_email.py) and Apprise (test_apprise.py) go through the
same cases in their own files, as SMTP and Apprise have no Retry-After to honour: a threaded
update, temporary and permanent refusals, a timeout, revoked credentials, a crash mid-send."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from clarion.channels import build_channels
from clarion.channels.base import Outgoing, close_all
from clarion.delivery import outbox
from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from clarion.store.schema import channels as channels_table
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.bluesky import FakePds
from tests.fakes.chat import FakeDiscord, FakeMatrix, FakeSlack, FakeTelegram, FakeThreads
from tests.fakes.faultproxy import RESET_BEFORE_REQUEST, RESET_MID_RESPONSE, FaultProxy
from tests.fakes.http import Response
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.webhook import WebhookReceiver
from tests.fakes.x import FakeX
from tests.helpers import NOW, config, deliveries, demo_cap, ingest_bytes, rows


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    kind: str
    fake: Any
    channel_toml: str
    env: dict[str, str]
    threads: bool  # an update is a reply under the previous post
    idempotent: bool  # a resend after a crash cannot duplicate

    def posts(self) -> list[dict[str, Any]]:
        if isinstance(self.fake, FakeMastodon):
            return [
                {"id": s["id"], "text": s["text"], "reply_to": s["in_reply_to_id"]}
                for s in sorted(self.fake.statuses.values(), key=lambda s: int(s["id"]))
            ]
        if isinstance(self.fake, WebhookReceiver):
            return [
                {
                    "id": r["id"],
                    "text": r["body"]["data"]["infos"][0]["headline"]
                    if r["body"]["data"]["infos"]
                    else "",
                    "type": r["body"]["type"],
                    "reply_to": r["body"]["in_reply_to"],
                }
                for r in {r["id"]: r for r in self.fake.received}.values()  # receivers dedupe ids
            ]
        return list(self.fake.posts.values())

    def revoke(self) -> None:
        if isinstance(self.fake, FakeMastodon):
            self.fake.token = "rotated"
        elif isinstance(self.fake, WebhookReceiver):
            from standardwebhooks.webhooks import Webhook

            self.fake.verifier = Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
        else:
            self.fake.revoke()

    def script(self, response: Any) -> None:
        self.fake.script.append(response)

    def rate_limited(self, seconds: int) -> Any:
        if isinstance(self.fake, FakeMastodon):
            return FakeMastodon.rate_limited(seconds)
        if isinstance(self.fake, WebhookReceiver):
            return Response(429, {"error": "slow down"}, headers={"Retry-After": str(seconds)})
        return self.fake.rate_limited(seconds)


def _harness(kind: str) -> Harness:
    if kind == "telegram":
        f = FakeTelegram()
        return Harness(
            kind,
            f,
            f"""kind = "telegram"
token = {{ env = "T_TOKEN" }}
chat_id = "@clarion_alerts"
api_base = "{f.url}"
""",
            {"T_TOKEN": FakeTelegram.TOKEN},
            threads=True,
            idempotent=False,
        )
    if kind == "discord":
        f = FakeDiscord()
        return Harness(
            kind,
            f,
            """kind = "discord"
webhook_url = { env = "D_URL" }
""",
            {"D_URL": f.url + FakeDiscord.PATH},
            threads=False,
            idempotent=True,
        )
    if kind == "slack":
        f = FakeSlack()
        return Harness(
            kind,
            f,
            """kind = "slack"
webhook_url = { env = "S_URL" }
""",
            {"S_URL": f.url + FakeSlack.PATH},
            threads=False,
            idempotent=False,
        )
    if kind == "matrix":
        f = FakeMatrix()
        return Harness(
            kind,
            f,
            f"""kind = "matrix"
homeserver = "{f.url}"
room_id = "!alerts:example.org"
token = {{ env = "M_TOKEN" }}
""",
            {"M_TOKEN": FakeMatrix.TOKEN},
            threads=True,
            idempotent=True,
        )
    if kind == "threads":
        f = FakeThreads()
        return Harness(
            kind,
            f,
            f"""kind = "threads"
user_id = "{FakeThreads.USER}"
token = {{ env = "TH_TOKEN" }}
api_base = "{f.url}/v1.0"
""",
            {"TH_TOKEN": FakeThreads.TOKEN},
            threads=True,
            idempotent=False,
        )
    if kind == "x":
        f = FakeX()
        return Harness(
            kind,
            f,
            """kind = "x"
consumer_key = { env = "X_CK" }
consumer_secret = { env = "X_CS" }
access_token = { env = "X_AT" }
access_token_secret = { env = "X_ATS" }
""",
            {"X_CK": FakeX.CONSUMER_KEY, "X_CS": "cs", "X_AT": "at", "X_ATS": "ats"},
            threads=True,
            idempotent=False,
        )
    if kind == "bluesky":
        f = FakePds()
        return Harness(
            kind,
            f,
            f"""kind = "bluesky"
handle = "{FakePds.HANDLE}"
app_password = {{ env = "B_PASS" }}
service = "{f.url}"
card_thumbnail = false
""",
            {"B_PASS": FakePds.PASSWORD},
            threads=True,
            idempotent=True,
        )
    if kind == "mastodon":
        f = FakeMastodon()
        return Harness(
            kind,
            f,
            f"""kind = "mastodon"
instance = "{f.url}"
token = {{ env = "MA_TOKEN" }}
""",
            {"MA_TOKEN": f.token},
            threads=True,
            idempotent=True,
        )
    f = WebhookReceiver(WEBHOOK_SECRET)
    return Harness(
        kind,
        f,
        f"""kind = "webhook"
url = "{f.url}"
secret = {{ env = "W_SECRET" }}
""",
        {"W_SECRET": WEBHOOK_SECRET},
        threads=False,
        idempotent=True,
    )


KINDS = ["telegram", "discord", "slack", "matrix", "bluesky", "x", "threads", "mastodon", "webhook"]


@pytest.fixture(params=KINDS)
def h(
    request: pytest.FixtureRequest, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Harness, Any, Any, Dispatcher, Clock]]:
    harness = _harness(request.param)
    for k, v in harness.env.items():
        monkeypatch.setenv(k, v)
    with harness.fake:
        cfg = config(f"""
[clarion]
drop_expired = false
[channels.ch]
{harness.channel_toml}timeout = "0.5s"
[[routes]]
channels = ["ch"]
""")
        chans = build_channels(cfg)
        if isinstance(harness.fake, FakeX):  # tweepy's host is fixed: give it a transport
            chans["ch"].client.session = harness.fake.session()  # type: ignore[attr-defined]
        clock = Clock()
        disp = Dispatcher(sqlite_store, chans, clock=clock, worker="w")
        disp.limiters.clear()  # the platforms' own rate limits are not under test here
        yield harness, cfg, chans, disp, clock
        close_all(chans)


def _state(store: Store, version: int) -> Any:
    [d] = [d for d in rows(store, deliveries) if d.version == version]
    return d


def test_post_update_cancel(h, sqlite_store: Store) -> None:
    harness, cfg, chans, disp, _ = h
    for i in range(3):
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(i))
        assert disp.run_until_idle() == 1
    posts = harness.posts()
    ds = sorted(rows(sqlite_store, deliveries), key=lambda d: d.version)
    assert [d.state for d in ds] == ["sent"] * 3
    assert len(posts) == 3
    assert "Flash Flood Watch" in posts[0]["text"]
    if harness.kind != "webhook":
        assert "UPDATE" in posts[1]["text"] and "CANCELLED" in posts[2]["text"]
    if harness.kind != "slack":  # Slack's incoming webhooks return no id to record
        assert [d.receipt_id for d in ds] == [p["id"] for p in posts]
    if harness.threads:
        assert posts[1]["reply_to"] == posts[0]["id"] and posts[2]["reply_to"] == posts[1]["id"]


def _first_then(h: Any, store: Store, failure: Response | None) -> Any:
    harness, cfg, chans, disp, _ = h
    ingest_bytes(store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    if failure is not None:
        harness.script(failure)
    ingest_bytes(store, cfg, chans, demo_cap(1))
    disp.run_until_idle()
    return _state(store, 2)


def test_429_honours_retry_after(h, sqlite_store: Store) -> None:
    harness, *_, clock = h
    d = _first_then(h, sqlite_store, harness.rate_limited(120))
    assert d.state == "retry_wait" and d.error_kind == "rate_limited"
    assert d.next_attempt_at - clock.now >= timedelta(seconds=119)


def test_500_is_retried(h, sqlite_store: Store) -> None:
    harness, _, _, disp, clock = h
    d = _first_then(h, sqlite_store, Response(500, {"error": "internal"}))
    assert d.state == "retry_wait" and d.error_kind == "retryable"
    clock.now = d.next_attempt_at
    disp.run_until_idle()
    assert _state(sqlite_store, 2).state == "sent" and len(harness.posts()) == 2


def test_timeout_is_retried(h, sqlite_store: Store) -> None:
    harness, cfg, chans, disp, _ = h
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    harness.fake.hang.set()
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(1))
    disp.run_until_idle()
    d = _state(sqlite_store, 2)
    if harness.idempotent:
        assert d.state == "retry_wait" and d.error_kind == "retryable"
    else:  # the request went out; only the answer is missing: it may be posted
        assert d.state == "failed" and d.error_kind == "ambiguous"


def test_revoked_credentials_hold_the_channel(h, sqlite_store: Store) -> None:
    harness, cfg, chans, disp, _ = h
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    harness.revoke()
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(1))
    disp.run_until_idle()
    d = _state(sqlite_store, 2)
    assert d.state == "pending" and d.error_kind == "auth"
    [ch] = rows(sqlite_store, channels_table)
    assert ch.state == "needs_reauth" and ch.state_reason


def test_crash_mid_send(h, sqlite_store: Store) -> None:
    """The worker sends, then dies before recording; another worker takes the row over."""
    harness, cfg, chans, disp, clock = h
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    [c] = outbox.claim(sqlite_store, "doomed", clock.now, 60)
    notice = c.notice()
    chans["ch"].send(Outgoing(c.id, notice, c.payload, None, None, c.attempts))
    assert len(harness.posts()) == 1
    clock.now += timedelta(seconds=61)
    disp.run_until_idle()
    d = _state(sqlite_store, 1)
    if harness.idempotent:
        assert d.state == "sent" and len(harness.posts()) == 1  # deduplicated by the platform
    else:
        assert d.state == "failed" and d.error_kind == "ambiguous"  # flagged, not repeated
        assert len(harness.posts()) == 1


def test_a_receipt_the_database_never_takes_is_not_posted_again(
    h, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post is made, and the database stays away longer than `record_patience` (a long
    outage right after the send): its receipt cannot be recorded. It was queued again
    (`retry_wait`) and posted a second time on a platform that takes no idempotency key. Now
    the row is left `sending` for its lease to run out, so that it is taken over as after a
    crash: resent with its key where the platform deduplicates, flagged for a person where
    it cannot, never posted twice."""
    from sqlalchemy.exc import OperationalError

    harness, cfg, chans, disp, clock = h
    disp.record_first_pause, disp.record_patience = 0.001, 0.0
    real = outbox.mark_sent

    def away(*a: Any, **k: Any) -> Any:
        raise OperationalError("UPDATE deliveries …", {}, Exception("server closed"))

    monkeypatch.setattr(outbox, "mark_sent", away)
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    assert len(harness.posts()) == 1
    d = _state(sqlite_store, 1)
    assert d.state == "sending" and d.lease_owner == disp.worker  # not queued again
    monkeypatch.setattr(outbox, "mark_sent", real)  # the database is back
    disp.run_until_idle()  # within the lease: nothing is taken, nothing is sent
    assert len(harness.posts()) == 1 and _state(sqlite_store, 1).state == "sending"
    clock.now += timedelta(seconds=61)
    disp.run_until_idle()
    d = _state(sqlite_store, 1)
    assert len(harness.posts()) == 1
    if harness.idempotent:
        assert d.state == "sent"  # resent with its key: the platform gave back the same post
    else:
        assert d.state == "failed" and d.error_kind == "ambiguous"


def test_channels_test_command(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from clarion.cli import app

    monkeypatch.setenv("T_TOKEN", FakeTelegram.TOKEN)
    with FakeTelegram() as fake:
        path = tmp_path / "clarion.toml"
        path.write_text(f"""
[clarion]
database_url = "sqlite:///{tmp_path / "c.db"}"
[channels.tg]
kind = "telegram"
token = {{ env = "T_TOKEN" }}
chat_id = "@clarion_alerts"
api_base = "{fake.url}"
""")
        runner = CliRunner()
        r = runner.invoke(app, ["channels", "test", "tg", "--config", str(path)])
        assert r.exit_code == 0 and "[TEST]" in r.stdout and fake.posts == {}
        r = runner.invoke(app, ["channels", "test", "tg", "--send", "--config", str(path)])
        assert r.exit_code == 0, r.output
        assert "Posted to tg: https://t.me/clarion_alerts/1000" in r.stderr
        assert next(iter(fake.posts.values()))["text"].startswith("<b>[TEST] Test message")
        fake.revoke()
        r = runner.invoke(app, ["channels", "test", "tg", "--send", "--config", str(path)])
        assert r.exit_code == 1 and "tg: auth:" in r.stderr


# --- long notices as numbered threads (thread_parts) -------------------------------------

THREADERS = ["mastodon", "bluesky", "x", "threads"]


def _is_post(kind: str, req: Any) -> bool:
    if kind == "mastodon":
        return req.method == "POST" and req.path.rstrip("/") == "/api/v1/statuses"
    if kind == "bluesky":
        return req.path.endswith("com.atproto.repo.createRecord")
    if kind == "x":
        return req.method == "POST" and req.path == "/2/tweets"
    return req.method == "POST" and req.path.endswith("/threads")  # a Threads container


@pytest.fixture(params=THREADERS)
def th(
    request: pytest.FixtureRequest, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Harness, Any, Any, Dispatcher, Clock]]:
    harness = _harness(request.param)
    for k, v in harness.env.items():
        monkeypatch.setenv(k, v)
    no_images = "images = false\n" if request.param in ("mastodon", "bluesky") else ""
    with harness.fake:
        cfg = config(f"""
[clarion]
drop_expired = false
[channels.ch]
{harness.channel_toml}{no_images}timeout = "0.5s"
thread_parts = 3
[[routes]]
channels = ["ch"]
""")
        chans = build_channels(cfg)
        if isinstance(harness.fake, FakeX):
            chans["ch"].client.session = harness.fake.session()  # type: ignore[attr-defined]
        clock = Clock()
        disp = Dispatcher(sqlite_store, chans, clock=clock, worker="w")
        disp.limiters.clear()
        yield harness, cfg, chans, disp, clock
        close_all(chans)


def test_a_long_notice_goes_out_as_a_numbered_thread_and_a_failed_part_is_not_repeated(
    th, sqlite_store: Store
) -> None:
    harness, cfg, chans, disp, clock = th
    seen = {"posts": 0}

    def second_post_fails(req: Any) -> Response | None:
        if not _is_post(harness.kind, req):
            return None
        seen["posts"] += 1
        return Response(500, {"error": "internal"}) if seen["posts"] == 2 else None

    harness.fake.intercept = second_post_fails
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    [d] = rows(sqlite_store, deliveries)
    texts = [d.payload["text"], *(p["text"] for p in d.payload["thread"])]
    assert len(texts) == 3
    assert "Flash Flood Watch" in texts[0] and "/notices/" in texts[0]  # headline and link first
    for i, text in enumerate(texts, 1):
        assert f"({i}/3)" in text

    disp.run_until_idle()
    d = _state(sqlite_store, 1)
    assert d.state == "retry_wait" and len(harness.posts()) == 1
    assert d.receipt_id is None and len(d.receipt["parts"]) == 1  # the part already out
    clock.now = d.next_attempt_at
    disp.run_until_idle()
    d = _state(sqlite_store, 1)
    posts = harness.posts()
    assert d.state == "sent"
    assert [p["text"] for p in posts] == texts  # each part once, in order: none repeated
    assert posts[1]["reply_to"] == posts[0]["id"] and posts[2]["reply_to"] == posts[1]["id"]
    assert d.receipt_id == posts[2]["id"]  # later updates reply under the last part
    assert d.receipt["first"]["post_id"] == posts[0]["id"]
    if harness.kind == "bluesky":  # every reply names the thread's first post as its root
        for p in posts[1:]:
            assert p["value"]["reply"]["root"]["uri"] == posts[0]["id"]

    ingest_bytes(sqlite_store, cfg, chans, demo_cap(1))
    disp.run_until_idle()
    posts = harness.posts()
    update = next(p for p in posts if "UPDATE" in p["text"])
    assert update["reply_to"] == d.receipt_id
    if harness.kind == "bluesky":
        assert update["value"]["reply"]["root"]["uri"] == posts[0]["id"]


def test_a_crash_after_a_whole_thread_went_out(th, sqlite_store: Store) -> None:
    """Every part sent, the worker killed before recording: platforms that deduplicate (per
    part: Mastodon's Idempotency-Key, Bluesky's record keys) answer with the same posts; the
    others are flagged, never posted twice."""
    harness, cfg, chans, disp, clock = th
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    [c] = outbox.claim(sqlite_store, "doomed", clock.now, 60)
    notice = c.notice()
    chans["ch"].send(Outgoing(c.id, notice, c.payload, None, None, c.attempts))
    assert len(harness.posts()) == 3
    clock.now += timedelta(seconds=61)
    disp.run_until_idle()
    d = _state(sqlite_store, 1)
    assert len(harness.posts()) == 3
    if harness.idempotent:
        assert d.state == "sent" and d.receipt_id == harness.posts()[2]["id"]
    else:
        assert d.state == "failed" and d.error_kind == "ambiguous"


def test_bluesky_mentions_become_facets_when_the_handle_resolves(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B_PASS", FakePds.PASSWORD)
    with FakePds() as pds:
        pds.handles["nws.example.org"] = "did:plc:nwsexample"
        cfg = config(f"""
[clarion]
drop_expired = false
[channels.sky]
kind = "bluesky"
handle = "{FakePds.HANDLE}"
app_password = {{ env = "B_PASS" }}
service = "{pds.url}"
card_thumbnail = false
template = "{{{{ event }}}} from @NWS.example.org, not @nobody.example.net {{{{ link }}}}"
[[routes]]
channels = ["sky"]
""")
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
        Dispatcher(sqlite_store, chans, clock=lambda: NOW).run_until_idle()
        close_all(chans)
    [post] = pds.posts.values()
    text = post["value"]["text"].encode()
    mentions = [
        (text[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"][0]["did"])
        for f in post["value"]["facets"]
        if f["features"][0]["$type"] == "app.bsky.richtext.facet#mention"
    ]
    assert mentions == [("@NWS.example.org", "did:plc:nwsexample")]  # the other stays text


# --- Transport faults: a proxy between the channel and the platform cuts the connection --------

# The request that makes the post, as its request line shows it (the proxy matches on it).
POSTING = {
    "telegram": "/sendMessage",
    "discord": "POST " + FakeDiscord.PATH,
    "slack": "POST " + FakeSlack.PATH,
    "matrix": "/send/m.room.message/",
    "bluesky": "com.atproto.repo.createRecord",
    "threads": "/threads_publish",
    "mastodon": "POST /api/v1/statuses",
    "webhook": "POST ",
}


@pytest.fixture(params=sorted(POSTING))  # X's host is fixed in tweepy: no proxy in between
def hp(
    request: pytest.FixtureRequest, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Harness, FaultProxy, Any, Any, Dispatcher, Clock]]:
    harness = _harness(request.param)
    with harness.fake, FaultProxy(harness.fake.url) as proxy:
        for k, v in harness.env.items():
            monkeypatch.setenv(k, v.replace(proxy.upstream_base, proxy.url))
        toml = harness.channel_toml.replace(proxy.upstream_base, proxy.url)
        cfg = config(f"""
[clarion]
drop_expired = false
[channels.ch]
{toml}timeout = "0.5s"
[[routes]]
channels = ["ch"]
""")
        chans = build_channels(cfg)
        clock = Clock()
        disp = Dispatcher(sqlite_store, chans, clock=clock, worker="w")
        disp.limiters.clear()
        yield harness, proxy, cfg, chans, disp, clock
        close_all(chans)


def test_a_connection_reset_mid_answer_never_posts_twice(hp, sqlite_store: Store) -> None:
    """The platform makes the post, then the connection is reset before its answer arrives.
    With an idempotency key the resend is deduplicated; without one the delivery is flagged
    for a person, and never sent again by itself."""
    harness, proxy, cfg, chans, disp, clock = hp
    proxy.faults.append((POSTING[harness.kind], RESET_MID_RESPONSE))
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    assert [mode for _, mode in proxy.seen].count(RESET_MID_RESPONSE) == 1
    assert len(harness.posts()) == 1  # the platform did make it
    d = _state(sqlite_store, 1)
    if harness.idempotent:
        assert d.state == "retry_wait" and d.error_kind == "retryable"
        clock.now = d.next_attempt_at
        disp.run_until_idle()
        d = _state(sqlite_store, 1)
        assert d.state == "sent" and len(harness.posts()) == 1  # the resend was deduplicated
        if harness.kind != "slack":
            assert d.receipt_id == harness.posts()[0]["id"]
    else:
        assert d.state == "failed" and d.error_kind == "ambiguous"
        assert "may have been posted" in (d.last_error or "")
        clock.now += timedelta(hours=1)
        disp.run_until_idle()
        assert len(harness.posts()) == 1  # flagged, not repeated


def test_a_connection_refused_before_the_request_is_retried(hp, sqlite_store: Store) -> None:
    """Reset before anything reached the platform: retried (or, where the platform cannot
    deduplicate and the client cannot tell, flagged), and in the end posted exactly once."""
    harness, proxy, cfg, chans, disp, clock = hp
    proxy.faults.append((POSTING[harness.kind], RESET_BEFORE_REQUEST))
    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
    disp.run_until_idle()
    assert [mode for _, mode in proxy.seen].count(RESET_BEFORE_REQUEST) == 1
    assert harness.posts() == []
    d = _state(sqlite_store, 1)
    if harness.idempotent:
        clock.now = d.next_attempt_at
        disp.run_until_idle()
        assert _state(sqlite_store, 1).state == "sent" and len(harness.posts()) == 1
    else:
        # The request was written before the reset: from the client's side it may have
        # arrived. An operator looks, sees nothing, and retries from the desk or the API.
        assert d.state == "failed" and d.error_kind == "ambiguous"
        assert outbox.operator_retry(sqlite_store, d.id, clock.now, "ops") is None
        disp.run_until_idle()
        assert _state(sqlite_store, 1).state == "sent" and len(harness.posts()) == 1


def test_requests_failures_say_whether_the_post_may_exist() -> None:
    """X goes through tweepy and requests: only a failure to connect means "not sent"."""
    import requests
    import urllib3

    from clarion.channels.http import requests_maybe_sent

    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    pool = urllib3.exceptions.MaxRetryError(None, "/2/tweets", refused)  # type: ignore[arg-type]
    assert not requests_maybe_sent(requests.exceptions.ConnectionError(pool))
    assert not requests_maybe_sent(requests.exceptions.ConnectTimeout())
    aborted = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
    assert requests_maybe_sent(requests.exceptions.ConnectionError(aborted))
    assert requests_maybe_sent(requests.exceptions.ReadTimeout())
