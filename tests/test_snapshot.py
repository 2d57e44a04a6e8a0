"""The public surface is served from memory and kept current: a second request for a feed, a
page or a CAP document makes no database round trip (GET, HEAD and conditional GET alike); a
notice stored by another process (another Store on the same database: on SQLite the stamp file,
on PostgreSQL the NOTIFY) is on the very next answer; a delivery's new state reaches the
notice page; and while PostgreSQL's notifications may be missed, nothing is served from memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store, open_store
from clarion.web.app import create_app
from tests.helpers import NOW, channels_for, config, demo_cap, ingest_bytes

CONFIG = """
[clarion]
public_url = "https://alerts.example.org"
drop_expired = false
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
"""
PUBLIC = ["/", "/feeds/all.atom", "/feeds/all.json?severity=minor", "/notices/1", "/notices/1.cap"]


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """Every SQL statement the store's engine runs meanwhile."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(sql)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def _wait_for(store: Store, before: tuple[Any, ...], kind: str = "notices") -> None:
    """PostgreSQL: until this process has heard the NOTIFY (a hang detector, not a timing)."""
    deadline = time.monotonic() + 10
    while store.changes.version((kind,)) == before and time.monotonic() < deadline:
        time.sleep(0.01)


def _listening(store: Store) -> None:
    """PostgreSQL: until this process's LISTEN is in place (nothing is cached before)."""
    store.changes.version(("notices",))
    deadline = time.monotonic() + 10
    while not store.changes.reliable and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.changes.reliable


def test_a_repeated_request_is_answered_from_memory(store: Store) -> None:
    cfg = config(CONFIG)
    ingest_bytes(store, cfg, channels_for(cfg), demo_cap(0), now=NOW)
    with TestClient(create_app(store, cfg)) as client:
        _listening(store)
        first = {p: client.get(p) for p in PUBLIC}
        assert all(r.status_code == 200 for r in first.values()), {
            p: r.status_code for p, r in first.items()
        }
        with statements(store) as seen:
            for path, r in first.items():
                again = client.get(path)
                assert again.content == r.content and again.headers["etag"] == r.headers["etag"]
                head = client.head(path)
                assert head.status_code == 200 and head.content == b""
                assert head.headers["content-length"] == str(len(r.content))
                cond = client.get(path, headers={"If-None-Match": r.headers["etag"]})
                assert cond.status_code == 304 and cond.headers["etag"] == r.headers["etag"]
                # Security headers too, as the first answer had them.
                assert (
                    again.headers["content-security-policy"] == r.headers["content-security-policy"]
                )
        assert seen == []  # no database round trip at all
        # The same query in another order is the same answer.
        with statements(store) as seen:
            client.get("/feeds/all.json?severity=minor&")
        assert seen == []


def test_a_notice_stored_by_another_process_is_on_the_next_answer(db_url: str) -> None:
    cfg = config(CONFIG)
    web, worker = open_store(db_url), open_store(db_url)  # two processes' stores
    try:
        chans = channels_for(cfg)
        ingest_bytes(worker, cfg, chans, demo_cap(0), now=NOW)
        with TestClient(create_app(web, cfg)) as client:
            _listening(web)
            before = client.get("/feeds/all.atom").text
            page = client.get("/").text
            assert "UPDATE" not in page
            version = web.changes.version(("notices",))
            ingest_bytes(worker, cfg, chans, demo_cap(1), now=NOW)  # the update, elsewhere
            if not web.is_sqlite:
                _wait_for(web, version)
            after = client.get("/feeds/all.atom").text
            assert after.count("<entry>") == before.count("<entry>") + 1
            assert len(client.get("/feeds/all.json").json()["items"]) == 2
            assert client.get("/").text != page
    finally:
        web.close()
        worker.close()


def test_a_delivery_sent_elsewhere_reaches_the_notice_page(db_url: str) -> None:
    cfg = config(CONFIG)
    web, worker = open_store(db_url), open_store(db_url)
    try:
        chans = channels_for(cfg)
        ingest_bytes(worker, cfg, chans, demo_cap(0), now=NOW)
        with TestClient(create_app(web, cfg)) as client:
            _listening(web)
            waiting = client.get("/notices/1").text
            version = web.changes.version(("posts",))
            Dispatcher(worker, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
            if not web.is_sqlite:
                _wait_for(web, version, "posts")
            sent = client.get("/notices/1").text
            assert sent != waiting
    finally:
        web.close()
        worker.close()


def test_nothing_is_kept_while_changes_may_be_missed(sqlite_store: Store) -> None:
    cfg = config(CONFIG)
    ingest_bytes(sqlite_store, cfg, channels_for(cfg), demo_cap(0), now=NOW)
    with TestClient(create_app(sqlite_store, cfg)) as client:
        client.get("/feeds/all.atom")
        sqlite_store.changes.reliable = False  # as while PostgreSQL's LISTEN is down
        with statements(sqlite_store) as seen:
            assert client.get("/feeds/all.atom").status_code == 200
        assert seen != []


def test_the_snapshot_is_bounded_in_bytes() -> None:
    """Every filter spelling is an entry (strangers choose them): the bytes held are capped,
    the least recently used going first, and no single answer takes more than an eighth."""
    from clarion.web.snapshot import Entry, Snapshot

    snap = Snapshot(size=1000, max_bytes=8000)

    def entry(n: int) -> Entry:
        return Entry(200, [], b"x" * n, b'"e"', None, (), 0.0)

    for i in range(20):
        snap.put(("h", "/feeds/all.atom", f"area=z{i}"), entry(900))
    assert snap.bytes <= 8000 and len(snap.entries) == 8
    assert snap.get(("h", "/feeds/all.atom", "area=z19")) is not None
    assert snap.get(("h", "/feeds/all.atom", "area=z0")) is None  # the oldest went first
    snap.put(("h", "/", ""), entry(1001))  # over an eighth: answered, not kept
    assert snap.get(("h", "/", "")) is None
    snap.put(("h", "/feeds/all.atom", "area=z19"), entry(100))  # replaced, counted once
    assert snap.bytes == 7 * 900 + 100
