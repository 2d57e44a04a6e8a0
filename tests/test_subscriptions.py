"""Direct subscriptions: what a subscriber may ask for, who a notice reaches, and Web Push end
to end against a loopback push service that decrypts each message with the browser's key and
checks the VAPID token, over an alert's whole life (alert, update, cancel)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from clarion.store.schema import subscription_reach, subscriptions
from clarion.subscriptions import registry
from clarion.subscriptions.interests import MAX_ITEMS, Interests
from clarion.subscriptions.webpush import check_subscription, new_private_key
from tests.fakes.http import Response
from tests.fakes.push_service import Browser, PushService
from tests.helpers import config, count, demo_cap, ingest_bytes, rows

ALERT_AT = datetime(2010, 8, 30, 11, 0, tzinfo=UTC)
UPDATE_AT = datetime(2010, 8, 30, 16, 30, tzinfo=UTC)
CANCEL_AT = datetime(2010, 8, 30, 20, 30, tzinfo=UTC)

# Around Helena, in Lewis and Clark county (the demo watch's area): (lat, lon) corners.
POLYGON = b"<polygon>46.0,-113.0 47.5,-113.0 47.5,-111.5 46.0,-111.5 46.0,-113.0</polygon>"
HELENA = (46.5891, -112.0391)
BOZEMAN = (45.6770, -111.0429)

PUSH_CONFIG = """
[clarion]
public_url = "https://alerts.example.org"
[channels.push]
kind = "webpush"
vapid_private_key = { env = "VAPID_KEY" }
subject = "mailto:ops@example.org"
concurrency = 4
[[routes]]
channels = ["push"]
"""


@pytest.fixture
def vapid_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = new_private_key()
    monkeypatch.setenv("VAPID_KEY", key)
    return key


def step(n: int) -> bytes:
    """The demo watch's alert, update and cancel, with a polygon drawn round their area."""
    return demo_cap(n).replace(b"<areaDesc>", POLYGON + b"<areaDesc>", 1)


@pytest.fixture
def built() -> Iterator[list[Any]]:
    """Channels built by a test, closed after it."""
    made: list[Any] = []
    yield made
    for chans in made:
        for c in chans.values():
            c.close()


@pytest.fixture
def push() -> Iterator[PushService]:
    with PushService() as service:
        yield service


def build(cfg: Any, built: list[Any]) -> dict[str, Any]:
    from clarion.channels import build_channels

    chans = build_channels(cfg)
    built.append(chans)
    return chans


def subscribe(store: Store, browser: Browser, **interests: Any) -> registry.Created:
    sub = browser.as_json()
    return registry.create(
        store,
        "webpush",
        sub["endpoint"],
        Interests(**interests),
        ALERT_AT,
        p256dh=sub["keys"]["p256dh"],
        auth=sub["keys"]["auth"],
    )


# --- what a subscriber may ask for -------------------------------------------------------------


def test_interests_are_bounded_and_strict() -> None:
    with pytest.raises(ValidationError, match="at most 50"):
        Interests(areas=[f"MTZ{i:03d}" for i in range(MAX_ITEMS + 1)])
    with pytest.raises(ValidationError, match="Extra inputs"):
        Interests.model_validate({"polygon": [[46.0, -113.0], [47.5, -113.0], [47.5, -111.5]]})
    with pytest.raises(ValidationError, match="on Earth"):
        Interests(point=(123.0, 0.0))
    with pytest.raises(ValidationError, match="on Earth"):
        Interests(point=(float("nan"), 0.0))
    with pytest.raises(ValidationError):
        Interests(min_severity="apocalyptic")  # type: ignore[arg-type]
    assert not Interests().follows_something()
    assert Interests(sources=["nws"]).follows_something()
    i = Interests(areas=["MTZ014"], places=["Lewis and Clark"], point=(46.58912345, -112.0391))
    assert i.point == (46.58912, -112.0391)  # a metre is all delivery needs
    # A transit stop is followed by the term GTFS-realtime alerts carry for it.
    from clarion.model import Entity, Notice
    from clarion.store.terms import terms_for

    stop = Interests(stops=["70011"]).terms()
    assert stop == [["entity:stop:70011"]]
    affected = Notice.model_construct(infos=[], entities=[Entity(kind="stop", id="70011")])
    assert stop[0][0] in terms_for(affected)
    assert sorted(map(sorted, i.terms())) == [
        ["area:mtz014"],
        ["place:and", "place:clark", "place:lewis"],
    ]


def test_a_push_subscription_must_be_a_public_https_endpoint_with_real_keys(
    push: PushService,
) -> None:
    b = push.subscribe()
    good = b.as_json()
    keys = good["keys"]
    check_subscription("https://fcm.googleapis.com/fcm/send/abc", keys["p256dh"], keys["auth"])
    for endpoint, why in [
        ("http://push.example.com/x", "https"),
        ("https://127.0.0.1/x", "public address"),
        ("https://169.254.169.254/latest/meta-data", "public address"),
        ("https://[::ffff:10.0.0.1]/x", "public address"),
        ("https://localhost/x", "public host"),
        ("https://user:pw@push.example.com/x", "host"),
        ("https://push.example.com/" + "a" * 3000, "longer"),
    ]:
        with pytest.raises(ValueError, match=why):
            check_subscription(endpoint, keys["p256dh"], keys["auth"])
    with pytest.raises(ValueError, match="p256dh"):
        check_subscription("https://push.example.com/x", keys["auth"], keys["auth"])
    with pytest.raises(ValueError, match="p256dh"):  # 65 bytes, but not a point on the curve
        check_subscription("https://push.example.com/x", "BA" + "A" * 85, keys["auth"])
    with pytest.raises(ValueError, match="auth"):
        check_subscription("https://push.example.com/x", keys["p256dh"], keys["p256dh"])
    # The operator's allowed networks (here loopback, for this fake) may be reached over http.
    import ipaddress

    check_subscription(
        good["endpoint"], keys["p256dh"], keys["auth"], [ipaddress.ip_network("127.0.0.0/8")]
    )


# --- Web Push, end to end ----------------------------------------------------------------------


def test_a_point_in_the_polygon_gets_the_alert_its_update_replaces_it_then_its_cancel(
    store: Store, push: PushService, vapid_key: str, built: list[Any]
) -> None:
    key = vapid_key
    cfg = config(PUSH_CONFIG)
    chans = build(cfg, built)
    inside = push.subscribe()
    outside = push.subscribe()
    by_code = push.subscribe()
    by_name = push.subscribe()
    too_mild = push.subscribe()
    revoked = push.subscribe()
    subscribe(store, inside, point=HELENA)
    subscribe(store, outside, point=BOZEMAN)
    subscribe(store, by_code, areas=["MTZ014"])
    subscribe(store, by_name, places=["lewis and clark"])
    subscribe(store, too_mild, point=HELENA, min_severity="extreme")
    subscribe(store, revoked, point=HELENA)
    push.unsubscribe(revoked)  # the push service will answer 410 Gone

    clock = [ALERT_AT]
    disp = Dispatcher(store, chans, clock=lambda: clock[0])
    for n, at in enumerate((ALERT_AT, UPDATE_AT, CANCEL_AT)):
        clock[0] = at
        r = ingest_bytes(store, cfg, chans, step(n), now=at)
        assert r.deliveries == 1, r
        disp.run_until_idle()

    for b in (inside, by_code, by_name):
        assert [m["payload"]["type"] for m in b.got] == ["alert", "update", "cancel"]
        topics = {m["topic"] for m in b.got}
        assert len(topics) == 1  # one story, one Topic: each version replaces the last
        assert {m["payload"]["tag"] for m in b.got} == topics
        first = b.got[0]["payload"]
        assert first["title"].startswith("Flash Flood Watch")
        assert first["url"].startswith("https://alerts.example.org/notices/")
        assert first["image"] == first["url"] + "/card.png"  # it has a polygon: its card
    # Severe: `Urgency: high`, wakes the device; the cancel (Minor) does not.
    assert [m["urgency"] for m in inside.got] == ["high", "high", "normal"]
    assert outside.got == [] and too_mild.got == []
    assert revoked.got == [] and push.rejected == []
    # Gone at the push service: removed, with everything about it.
    assert count(store, subscriptions) == 5
    assert all(r.address != revoked.endpoint for r in rows(store, subscriptions))
    # The VAPID key the push service saw is the configured one's public half.
    from clarion.subscriptions.webpush import Vapid

    assert inside.got[0]["vapid_key"] == Vapid(key, "mailto:x@y.z").public_key


def test_a_failed_push_is_retried_to_that_subscriber_only(
    sqlite_store: Store, push: PushService, vapid_key: str, built: list[Any]
) -> None:
    """Nobody gets one version twice: a retry of the delivery goes only to the subscribers not
    reached yet (the push service failed for one of three, then answered)."""
    store = sqlite_store
    cfg = config(PUSH_CONFIG)
    chans = build(cfg, built)
    a, b, c = push.subscribe(), push.subscribe(), push.subscribe()
    for browser in (a, b, c):
        subscribe(store, browser, areas=["MTZ014"])
    push.script[b.endpoint.removeprefix(push.server.url)] = [
        Response(503),
        Response(429, headers={"Retry-After": "1"}),
    ]
    clock = [ALERT_AT]
    disp = Dispatcher(store, chans, clock=lambda: clock[0])
    ingest_bytes(store, cfg, chans, step(0), now=ALERT_AT)
    disp.run_once()
    assert (len(a.got), len(b.got), len(c.got)) == (1, 0, 1)
    for minutes in (5, 10, 20):  # past each retry's backoff
        clock[0] = ALERT_AT.replace(minute=minutes)
        disp.run_until_idle()
    assert (len(a.got), len(b.got), len(c.got)) == (1, 1, 1)
    [d] = rows(store, __import__("clarion.store.schema", fromlist=["deliveries"]).deliveries)
    assert d.state == "sent"
    assert registry.reach_of(store, [d.id]) == {d.id: {"sent": 3}}


def test_an_update_reaches_exactly_those_the_story_reached_and_new_matches(
    sqlite_store: Store, push: PushService, vapid_key: str, built: list[Any]
) -> None:
    """A cancellation goes to the story's reach as it stands: a subscriber who joins after the
    alert, for that area, is not told a story they never heard of was cancelled."""
    store = sqlite_store
    cfg = config(PUSH_CONFIG)
    chans = build(cfg, built)
    early, late = push.subscribe(), push.subscribe()
    subscribe(store, early, areas=["MTZ014"])
    disp = Dispatcher(store, chans, clock=lambda: ALERT_AT)
    ingest_bytes(store, cfg, chans, step(0), now=ALERT_AT)
    disp.run_until_idle()
    subscribe(store, late, areas=["MTZ014"])
    ingest_bytes(store, cfg, chans, step(2), now=CANCEL_AT)  # the cancel, straight after
    Dispatcher(store, chans, clock=lambda: CANCEL_AT).run_until_idle()
    assert [m["payload"]["type"] for m in early.got] == ["alert", "cancel"]
    assert late.got == []
    assert count(store, subscription_reach) == 1


def test_nobody_subscribed_means_no_delivery(
    sqlite_store: Store, vapid_key: str, built: list[Any]
) -> None:
    cfg = config(PUSH_CONFIG)
    chans = build(cfg, built)
    r = ingest_bytes(sqlite_store, cfg, chans, step(0), now=ALERT_AT)
    assert r.deliveries == 0 and len(r.stored) == 1


def test_unsubscribing_deletes_the_subscriber_and_the_link_stops_working(
    sqlite_store: Store, push: PushService
) -> None:
    created = subscribe(sqlite_store, push.subscribe(), areas=["MTZ014"])
    assert registry.by_token(sqlite_store, created.token) is not None
    assert registry.set_paused(sqlite_store, created.token, True, ALERT_AT)
    assert registry.by_token(sqlite_store, created.token).state == "paused"
    assert registry.remove(sqlite_store, created.token)
    assert registry.by_token(sqlite_store, created.token) is None
    assert not registry.remove(sqlite_store, created.token)
    assert count(sqlite_store, subscriptions) == 0
    stored = json.dumps([dict(r._mapping) for r in rows(sqlite_store, subscriptions)])
    assert created.token not in stored


def test_an_address_never_confirmed_is_forgotten_after_a_day(sqlite_store: Store) -> None:
    from datetime import timedelta

    first = registry.create(
        sqlite_store, "email", "a@example.net", Interests(areas=["X"]), ALERT_AT
    )
    assert first.confirm is not None
    again = registry.create(
        sqlite_store, "email", "a@example.net", Interests(areas=["X"]), ALERT_AT
    )
    assert again.confirm is None  # one confirmation mail a day
    later = ALERT_AT + timedelta(days=1, minutes=1)
    third = registry.create(sqlite_store, "email", "b@example.net", Interests(areas=["X"]), later)
    assert [r.address for r in rows(sqlite_store, subscriptions)] == ["b@example.net"]
    assert third.confirm is not None
    assert registry.confirm(sqlite_store, first.confirm, later) is None


@pytest.fixture
def pg_store() -> Iterator[Store]:
    from clarion.store import open_store
    from tests.conftest import pg_schema_url

    for url in pg_schema_url():
        s = open_store(url)
        yield s
        s.close()


@pytest.mark.postgres
def test_several_workers_share_one_alerts_fan_out(
    pg_store: Store, push: PushService, vapid_key: str, built: list[Any]
) -> None:
    """A story reaching more subscribers than `part_size` is queued in parts; two workers
    send them at the same time (each one message at a time here, so two requests at once at
    the push service mean two workers), and every subscriber gets the alert exactly once."""
    import threading
    import time

    from clarion.store.schema import deliveries, delivery_events

    cfg = config(PUSH_CONFIG.replace("concurrency = 4", "concurrency = 1\npart_size = 2"))
    browsers = [push.subscribe() for _ in range(6)]
    for b in browsers:
        subscribe(pg_store, b, areas=["MTZ014"])
    r = ingest_bytes(pg_store, cfg, build(cfg, built), step(0), now=ALERT_AT)
    assert r.deliveries == 3  # 6 subscribers, 2 a part

    lock = threading.Condition()
    state = {"now": 0, "most": 0}
    plain = push.handle

    def two_at_once(req: Any) -> Any:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            lock.notify_all()
            lock.wait_for(lambda: state["most"] >= 2, timeout=10)  # the other worker's request
        try:
            return plain(req)
        finally:
            with lock:
                state["now"] -= 1

    push.server.handle = two_at_once  # type: ignore[method-assign]
    workers = [
        Dispatcher(pg_store, build(cfg, built), clock=lambda: ALERT_AT, worker=f"w{i}")
        for i in (1, 2)
    ]

    def done() -> bool:
        return {d.state for d in rows(pg_store, deliveries)} == {"sent"}

    def work(w: Dispatcher) -> None:
        # As `run_forever` does, without its idle wait: a claim that finds the parts locked
        # by the other worker's claim (for the milliseconds it lasts) comes back.
        deadline = time.monotonic() + 30
        while not done() and time.monotonic() < deadline:
            w.run_once()

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert state["most"] >= 2
    assert [len(b.got) for b in browsers] == [1] * 6 and push.rejected == []
    parts = rows(pg_store, deliveries)
    assert sorted(d.part for d in parts) == [0, 1, 2] and {d.state for d in parts} == {"sent"}
    senders = {e.worker for e in rows(pg_store, delivery_events) if e.to_state == "sending"}
    assert senders == {"w1", "w2"}
    reached = registry.reach_of(pg_store, [d.id for d in parts])
    assert sorted(r["sent"] for r in reached.values()) == [2, 2, 2]


def test_a_push_whose_answer_is_lost_is_sent_again_with_the_same_topic(
    sqlite_store: Store, push: PushService, vapid_key: str, built: list[Any]
) -> None:
    """Security item 2: the connection breaks after the request went out (the push service
    may have it). Recorded `unknown` and never resent, that subscriber might never get the
    alert. It is sent again at the delivery's retry with the same Topic: a copy still waiting
    at the push service is replaced by it, and one already shown is replaced on the screen
    (the service worker's tag), so the person sees the alert once either way."""
    from clarion.store.schema import deliveries

    cfg = config(PUSH_CONFIG)
    chans = build(cfg, built)
    lost, fine = push.subscribe(), push.subscribe()
    for b in (lost, fine):
        subscribe(sqlite_store, b, areas=["MTZ014"])
    path = lost.endpoint.removeprefix(push.server.url)
    push.script[path] = [None]  # type: ignore[list-item]  # read the request, then hang up
    ingest_bytes(sqlite_store, cfg, chans, step(0), now=ALERT_AT)
    clock = [ALERT_AT]
    disp = Dispatcher(sqlite_store, chans, clock=lambda: clock[0])
    disp.run_until_idle()
    assert len(fine.got) == 1 and lost.got == []
    clock[0] = ALERT_AT.replace(minute=10)  # past the retry's backoff
    disp.run_until_idle()
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "sent" and len(fine.got) == 1 and len(lost.got) == 1
    assert lost.got[0]["topic"] == fine.got[0]["topic"]  # the story's, both times
    assert registry.reach_of(sqlite_store, [d.id]) == {d.id: {"sent": 2}}
    assert push.script[path] == []


def test_at_most_so_many_at_once_to_one_push_service(
    sqlite_store: Store, push: PushService, vapid_key: str, built: list[Any]
) -> None:
    import threading

    cfg = config(PUSH_CONFIG.replace("concurrency = 4", "concurrency = 8\nper_push_service = 2"))
    browsers = [push.subscribe() for _ in range(12)]
    for b in browsers:
        subscribe(sqlite_store, b, areas=["MTZ014"])
    lock = threading.Condition()
    state = {"now": 0, "most": 0}
    plain = push.handle

    def counted(req: Any) -> Any:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            # Hold each request until a third could arrive (or a moment has passed): with
            # eight senders and no per-service limit, it would (checked: 3 at once without).
            lock.wait_for(lambda: state["now"] > 2, timeout=0.2)
        try:
            return plain(req)
        finally:
            with lock:
                state["now"] -= 1
                lock.notify_all()

    push.server.handle = counted  # type: ignore[method-assign]
    chans = build(cfg, built)
    ingest_bytes(sqlite_store, cfg, chans, step(0), now=ALERT_AT)
    Dispatcher(sqlite_store, chans, clock=lambda: ALERT_AT).run_until_idle()
    assert [len(b.got) for b in browsers] == [1] * 12
    assert state["most"] == 2


def test_one_subscriber_that_cannot_be_sent_to_is_refused_alone_and_nobody_gets_two(
    sqlite_store: Store, push: PushService, vapid_key: str, built: list[Any]
) -> None:
    """Security item 1: an IPv6 push endpoint made VAPID signing raise out of the sender, the
    whole part went unrecorded and every retry sent the alert again to everyone. Now an IPv6
    origin is signed (the fake checks `aud` = `http://[::1]:port`), and a subscriber whose
    stored keys cannot be encrypted for, or whose endpoint httpx will not send to, is that
    subscriber's `refused`, recorded; the others are recorded reached and never sent again."""
    from clarion.store.schema import deliveries

    store = sqlite_store
    cfg = config(PUSH_CONFIG)
    chans = build(cfg, built)
    with PushService(host="::1") as v6:
        fine, six = push.subscribe(), v6.subscribe()
        for b in (fine, six):
            subscribe(store, b, areas=["MTZ014"])
        broken_key = push.subscribe()  # a key that is no point on the curve, stored long ago
        odd_endpoint, private = push.subscribe(), push.subscribe()
        made = [subscribe(store, b, areas=["MTZ014"]) for b in (broken_key, odd_endpoint, private)]
        with store.write() as conn:
            conn.execute(
                subscriptions.update()
                .where(subscriptions.c.id == made[0].id)
                .values(p256dh="BA" + "A" * 85)
            )
            conn.execute(
                subscriptions.update()
                .where(subscriptions.c.id == made[1].id)
                .values(address="https://push.example.com:99999/x")
            )
            conn.execute(  # refused by the guard before any connection: final, not retried
                subscriptions.update()
                .where(subscriptions.c.id == made[2].id)
                .values(address="https://10.0.0.1/x")
            )
        ingest_bytes(store, cfg, chans, step(0), now=ALERT_AT)
        disp = Dispatcher(store, chans, clock=lambda: ALERT_AT)
        disp.run_until_idle()
        disp.run_until_idle()
        assert v6.rejected == [] and push.rejected == []
        assert (len(fine.got), len(six.got)) == (1, 1)
        assert broken_key.got == [] and odd_endpoint.got == []
        [d] = rows(store, deliveries)
        assert d.state == "sent"
        assert registry.reach_of(store, [d.id]) == {d.id: {"sent": 2, "refused": 3}}


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://2130706433/push",  # 127.0.0.1 as one integer
        "https://0x7f000001/push",  # …in hex
        "https://0x7f.1/push",
        "https://127.1/push",  # the short form
        "https://0177.0.0.1/push",  # octal
        "https://push.example.0x10/push",
        "https://localhost./push",
        "https://Localhost../push",
        "https://push.example.com:0/push",
        "https://push.example.com:65536/push",
        "https://push.example.com:http/push",
        "http://push.example.com/push",
        "ftp://push.example.com/push",
    ],
)
def test_endpoints_the_docs_refuse_are_refused_at_subscribe(
    push: PushService, endpoint: str
) -> None:
    keys = push.subscribe().as_json()["keys"]
    with pytest.raises(ValueError, match=r"^endpoint: "):
        check_subscription(endpoint, keys["p256dh"], keys["auth"])


def test_a_vapid_token_is_for_the_endpoints_origin() -> None:
    from clarion.subscriptions.webpush import audience_of

    assert audience_of("https://[2606:4700::1]/p/x") == "https://[2606:4700::1]"
    assert audience_of("https://[2606:4700::1]:8443/p") == "https://[2606:4700::1]:8443"
    assert audience_of("https://fcm.googleapis.com:443/fcm/send/a") == "https://fcm.googleapis.com"
    assert audience_of("http://127.0.0.1:8080/p") == "http://127.0.0.1:8080"
    with pytest.raises(ValueError):
        audience_of("https://push.example.com:99999/x")
