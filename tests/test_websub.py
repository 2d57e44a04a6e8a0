"""WebSub end to end: discovery, subscription, verification of intent, signed distribution,
lease renewal, and falling back to polling when the hub fails, against a loopback hub."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from clarion.channels import build_channels
from clarion.polling import poll_source
from clarion.sources import build_sources
from clarion.sources.websub import discover, signature_ok
from clarion.store import Store
from clarion.store.schema import sources as sources_table
from clarion.store.schema import websub
from clarion.web.app import create_app
from tests.fakes.http import FakeServer, Response
from tests.fakes.websub_hub import FakeHub
from tests.helpers import NOW, config, count, notices, rows


def atom(hub: str, topic: str, entries: list[tuple[str, str]]) -> bytes:
    items = "".join(
        f"<entry><id>{i}</id><title>{t}</title><updated>2026-11-27T10:{int(i[1:]):02d}:00Z</updated>"
        f"<link href='https://blog.example/{i}'/><summary>{t} in detail.</summary></entry>"
        for i, t in entries
    )
    return (
        f"<feed xmlns='http://www.w3.org/2005/Atom'><id>urn:blog</id><title>Blog</title>"
        f"<updated>2026-11-27T10:00:00Z</updated><link rel='hub' href='{hub}'/>"
        f"<link rel='self' href='{topic}'/>{items}</feed>"
    ).encode()


def wait_for(condition: Callable[[], Any], seconds: float = 10) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)  # polling a condition, bounded by the deadline
    raise AssertionError("condition not met in time")


def test_discovery_and_signatures() -> None:
    body = atom("https://hub.example/", "https://blog.example/feed", [])
    found = discover(body, "application/atom+xml", None, "https://blog.example/x")
    assert found is not None and (found.hub, found.topic) == (
        "https://hub.example/",
        "https://blog.example/feed",
    )
    via_header = discover(
        b"<rss version='2.0'><channel/></rss>",
        "application/rss+xml",
        '<https://h.example/>; rel="hub", <https://t.example/f>; rel="self"',
        "https://t.example/f",
    )
    assert via_header is not None and via_header.hub == "https://h.example/"
    assert (
        discover(
            b'{"version": "https://jsonfeed.org/version/1.1", "items": [], '
            b'"feed_url": "https://j.example/f.json", "hubs": [{"type": "WebSub", '
            b'"url": "https://hub.j.example"}]}',
            "application/feed+json",
            None,
            "x",
        ).hub
        == "https://hub.j.example"
    )
    assert discover(b"<feed xmlns='http://www.w3.org/2005/Atom'/>", "", None, "x") is None
    import hashlib
    import hmac

    sig = "sha256=" + hmac.new(b"s3", b"body", hashlib.sha256).hexdigest()
    assert signature_ok("s3", b"body", sig)
    assert not signature_ok("s3", b"b0dy", sig)
    assert not signature_ok("s3", b"body", None)
    assert not signature_ok("s3", b"body", "md5=abc")


@pytest.fixture
def setting(store: Store) -> Iterator[dict[str, Any]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub = FakeHub()
    feed: dict[str, bytes] = {}
    origin = FakeServer(
        lambda req: Response(200, raw=feed["body"], content_type="application/atom+xml")
    )
    with hub, origin:
        topic = f"{origin.url}/feed.atom"
        cfg = config(f"""
[clarion]
public_url = "http://127.0.0.1:{port}"
[sources.blog]
kind = "feed"
url = "{topic}"
initial_items = 5
max_age = 0
interval = "5m"
websub_lease = "2h"
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
""")
        chans = build_channels(cfg)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(store, cfg, chans), host="127.0.0.1", port=port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started)
        feed["body"] = atom(hub.url, topic, [("p1", "First post")])
        try:
            yield {
                "store": store,
                "cfg": cfg,
                "chans": chans,
                "hub": hub,
                "topic": topic,
                "feed": feed,
                "source": build_sources(cfg)["blog"],
            }
        finally:
            server.should_exit = True
            thread.join()


def _poll(s: dict[str, Any], now=NOW) -> Any:
    with httpx.Client() as http:
        return poll_source(s["store"], s["cfg"], s["chans"], s["source"], http, now=now)


def _sub(store: Store) -> Any:
    return rows(store, websub)[0] if rows(store, websub) else None


def test_subscribe_verify_and_receive(setting: dict[str, Any]) -> None:
    store, hub, topic = setting["store"], setting["hub"], setting["topic"]
    assert _poll(setting) is not None
    [req] = hub.subscribe_requests
    assert req["hub.topic"] == topic
    assert "/websub/blog/" in req["hub.callback"] and len(req["hub.secret"]) >= 32
    sub = wait_for(lambda: (r := _sub(store)) and r.state == "active" and r)
    wait_for(lambda: hub.verified)  # the hub records it once it has read our answer
    assert sub.lease_seconds == 7200 and hub.failed_verifications == []
    # The hub pushes a new post: it is ingested at once, without a poll.
    new = atom(hub.url, topic, [("p2", "Second post"), ("p1", "First post")])
    assert hub.publish(topic, new) == [202]
    assert {n.identifier for n in rows(store, notices)} == {"p1", "p2"}
    # Content with a bad signature is acknowledged but ignored.
    forged = atom(hub.url, topic, [("p3", "Forged post")])
    assert hub.publish(topic, forged, tamper=True) == [202]
    assert count(store, notices) == 2
    # While subscribed, polling slows to the safety-net interval.
    _poll(setting)
    [src] = rows(store, sources_table)
    assert (src.next_poll_at - NOW) >= timedelta(minutes=50)


def test_what_the_hub_pushes_continues_only_the_feeds_own_stories(
    setting: dict[str, Any],
) -> None:
    """Another source told a story under the same item id: the hub's content for this feed
    neither edits nor ends it; it is the feed's own story."""
    from clarion.pipeline import ingest
    from clarion.sources.feed import parse_feed
    from clarion.store.schema import threads

    store, hub, topic = setting["store"], setting["hub"], setting["topic"]
    theirs = parse_feed(atom(hub.url, topic, [("p7", "Their own story")]))
    ingest(store, setting["cfg"], setting["chans"], theirs, source="other", now=NOW)
    assert _poll(setting) is not None
    wait_for(lambda: (r := _sub(store)) and r.state == "active")
    wait_for(lambda: hub.verified)
    pushed = atom(hub.url, topic, [("p7", "Edited by someone else"), ("p1", "First post")])
    assert hub.publish(topic, pushed) == [202]
    by_source = {t.source: t for t in rows(store, threads)}
    assert by_source["other"].headline == "Their own story"
    assert by_source["other"].latest_version == 1
    mine = {n.identifier for n in rows(store, notices) if n.source == "blog"}
    assert mine == {"p1", "p7"}


def test_verification_for_an_unknown_topic_is_refused(setting: dict[str, Any]) -> None:
    _poll(setting)
    wait_for(lambda: (r := _sub(setting["store"])) and r.state == "active")
    cb = setting["hub"].subscribe_requests[0]["hub.callback"]
    r = httpx.get(
        cb,
        params={
            "hub.mode": "subscribe",
            "hub.topic": "https://evil.example/",
            "hub.challenge": "x",
            "hub.lease_seconds": "60",
        },
    )
    assert r.status_code == 404 and r.text != "x"


def test_a_verification_without_the_callbacks_token_changes_nothing(
    setting: dict[str, Any],
) -> None:
    """Anyone knows the topic (it is public): a forged verification at the callback's address
    without its token, or with a wrong one, must not mark a subscription active (that slows
    the source's polling to the safety net's pace). A huge lease is capped, never a 500."""
    store, hub, topic = setting["store"], setting["hub"], setting["topic"]
    _poll(setting)
    cb = hub.subscribe_requests[0]["hub.callback"]
    base, _token = cb.rsplit("/", 1)
    params = {"hub.mode": "subscribe", "hub.topic": topic, "hub.challenge": "forged",
              "hub.lease_seconds": "99999999999"}  # fmt: skip
    for url in (base, f"{base}/{'0' * 32}"):
        r = httpx.get(url, params=params)
        assert r.status_code in (404, 405) and r.text != "forged"
    r = httpx.get(cb, params=params)  # the hub itself, with a lease far too long
    assert r.status_code == 200 and r.text == "forged"
    sub = _sub(store)
    assert sub.state == "active" and sub.lease_seconds == 366 * 86400
    r = httpx.get(cb, params={**params, "hub.lease_seconds": "9" * 40})
    assert r.status_code == 400


def test_renewal_before_the_lease_runs_out(setting: dict[str, Any]) -> None:
    store, hub = setting["store"], setting["hub"]
    _poll(setting)
    first = wait_for(lambda: (r := _sub(store)) and r.state == "active" and r)
    # The margin is a tenth of the lease (12 of 120 minutes): 5 minutes left is inside it.
    _poll(setting, now=first.lease_expires_at - timedelta(minutes=5))
    assert len(hub.subscribe_requests) == 2
    assert hub.subscribe_requests[1]["hub.secret"] == hub.subscribe_requests[0]["hub.secret"]
    assert _sub(store).state == "active"  # the lease in force stays in force meanwhile


def test_failing_hub_falls_back_to_polling(setting: dict[str, Any]) -> None:
    store, hub = setting["store"], setting["hub"]
    hub.fail_with = 500
    assert _poll(setting) is not None  # the poll itself succeeds
    sub = _sub(store)
    assert sub.state == "failed" and "answered HTTP 500" in sub.last_error
    [src] = rows(store, sources_table)
    assert (src.next_poll_at - NOW) <= timedelta(minutes=6)  # the source's own 5 minutes
    setting["feed"]["body"] = atom(
        hub.url, setting["topic"], [("p9", "Polled post"), ("p1", "First post")]
    )
    _poll(setting, now=NOW + timedelta(minutes=6))
    assert "p9" in {n.identifier for n in rows(store, notices)}


def test_a_pushed_post_that_cannot_be_stored_is_rejected_alone_and_stays_new(
    setting: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the hub pushes is stored as a poll is: one post that cannot be stored (a bug it
    meets in rendering) is rejected alone, the others are stored, and that post is not
    recorded as seen, so the next push (or poll) stores it once the bug is gone."""
    from clarion.store.schema import rejected_items

    store, hub, topic = setting["store"], setting["hub"], setting["topic"]
    assert _poll(setting) is not None
    wait_for(lambda: (r := _sub(store)) and r.state == "active")
    wait_for(lambda: hub.verified)
    preview = setting["chans"]["preview"]
    real = preview.render

    def render(notice, ctx):  # type: ignore[no-untyped-def]
        if notice.identifier == "p3":
            raise ValueError("a bug")
        return real(notice, ctx)

    monkeypatch.setattr(preview, "render", render)
    pushed = atom(hub.url, topic, [("p3", "Third post"), ("p2", "Second post"), ("p1", "First")])
    assert hub.publish(topic, pushed) == [202]
    assert {n.identifier for n in rows(store, notices)} == {"p1", "p2"}
    [why] = rows(store, rejected_items)
    assert (why.item, why.reason) == ("p3", "unstorable")
    monkeypatch.setattr(preview, "render", real)
    assert hub.publish(topic, pushed) == [202]
    assert {n.identifier for n in rows(store, notices)} == {"p1", "p2", "p3"}
