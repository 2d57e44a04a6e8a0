"""Ingest: store + route + render + enqueue in one transaction; threads, versions, dedupe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clarion.channels.base import RenderContext, Rendered
from clarion.model import MsgType, Notice
from clarion.pipeline import ingest
from clarion.sources.cap import parse_cap
from clarion.sources.feed import parse_feed
from clarion.store import Store, open_store
from clarion.store.schema import notice_refs, notice_terms
from tests.helpers import (
    NOW,
    channels_for,
    config,
    count,
    deliveries,
    delivery_events,
    demo_cap,
    fixture_bytes,
    ingest_bytes,
    notices,
    rows,
    threads,
)


def test_ingest_stores_routes_renders_and_enqueues(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    r = ingest_bytes(store, cfg, chans, demo_cap(0))
    assert len(r.stored) == 1 and r.deliveries == 2
    [n] = rows(store, notices)
    assert n.version == 1 and n.msg_type == "alert" and n.source == "nws"
    assert n.original == demo_cap(0)
    ds = rows(store, deliveries, order=deliveries.c.channel)
    assert [d.channel for d in ds] == ["preview", "second"]
    assert all(d.state == "pending" for d in ds)
    preview = ds[0].payload["platforms"]
    assert preview["x"]["count"] <= 280 and preview["mastodon"]["count"] <= 500
    assert preview["mastodon"]["text"].startswith("Flash Flood Watch issued")
    assert count(store, delivery_events) == 2  # the audit trail starts at "queued"


def test_reingesting_unchanged_notice_does_nothing(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    again = ingest_bytes(store, cfg, chans, demo_cap(0))
    assert again.stored == [] and again.unchanged == 1 and again.deliveries == 0
    assert count(store, notices) == 1 and count(store, deliveries) == 2


def test_alert_update_cancel_share_a_thread(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    for i in range(3):
        ingest_bytes(store, cfg, chans, demo_cap(i))
    ns = rows(store, notices, order=notices.c.version)
    assert [(n.version, n.msg_type) for n in ns] == [(1, "alert"), (2, "update"), (3, "cancel")]
    assert len({n.thread_id for n in ns}) == 1
    [t] = rows(store, threads)
    assert t.state == "cancelled" and t.latest_version == 3
    assert t.headline.startswith("Flash Flood Watch extended")  # a cancel keeps the last headline


def test_reference_chain_is_followed_through_the_store(store: Store) -> None:
    """An update that names only the previous update (not the first alert) joins the thread."""
    cfg = config()
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    ingest_bytes(store, cfg, chans, demo_cap(1))
    [update] = parse_cap(demo_cap(1))
    second = (
        demo_cap(1)
        .replace(b"-UPD</identifier>", b"-UPD2</identifier>")
        .replace(
            b"<references>w-nws.webmaster@noaa.gov,NOAA-NWS-ALERTS-MT20100830100700TFX",
            b"<references>w-nws.webmaster@noaa.gov,"
            + update.identifier.encode()
            + b",2010-08-30T10:00:00-06:00</references><!--",
        )
        .replace(b"2010-08-30T04:07:00-06:00</references>", b"-->", 1)
    )
    [n2] = parse_cap(second)
    assert [r.identifier for r in n2.references] == [update.identifier]
    assert n2.thread_key != parse_cap(demo_cap(0))[0].thread_key  # the parser alone cannot know
    ingest(
        store,
        cfg,
        chans,
        [
            n2.model_copy(
                update={"infos": [n2.infos[0].model_copy(update={"headline": "third version"})]}
            )
        ],
        source="nws",
        now=NOW,
    )
    assert len({n.thread_id for n in rows(store, notices)}) == 1
    assert [n.version for n in rows(store, notices, order=notices.c.version)] == [1, 2, 3]


def test_newer_version_supersedes_unsent_older(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    r = ingest_bytes(store, cfg, chans, demo_cap(1))
    assert r.superseded == 2
    states = {(d.version, d.channel): d.state for d in rows(store, deliveries)}
    assert states == {
        (1, "preview"): "superseded",
        (1, "second"): "superseded",
        (2, "preview"): "pending",
        (2, "second"): "pending",
    }
    ev = rows(store, delivery_events, delivery_events.c.to_state == "superseded")
    assert len(ev) == 2 and all("superseded by v2" in e.detail for e in ev)


def test_test_notices_need_an_opted_in_channel(store: Store) -> None:
    cfg = config(PREVIEW_ONLY_WITH_TESTS)
    chans = channels_for(cfg)
    body = demo_cap(0).replace(b"<status>Actual</status>", b"<status>Test</status>")
    r = ingest_bytes(store, cfg, chans, body)
    assert r.deliveries == 1
    assert [d.channel for d in rows(store, deliveries)] == ["drills"]
    text = rows(store, deliveries)[0].payload["platforms"]["mastodon"]["text"]
    assert text.startswith("[TEST] ")


PREVIEW_ONLY_WITH_TESTS = """
[channels.public]
kind = "preview"
[channels.drills]
kind = "preview"
statuses = ["test", "exercise"]
[[routes]]
channels = ["public", "drills"]
"""


def test_expired_alerts_are_stored_but_not_sent(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    later = datetime(2026, 11, 27, tzinfo=UTC)
    r = ingest_bytes(store, cfg, chans, demo_cap(0), now=later)
    assert len(r.stored) == 1 and r.deliveries == 0 and r.not_routed_stale == 1
    r2 = ingest_bytes(store, cfg, chans, demo_cap(1), now=later, include_expired=True)
    assert r2.deliveries == 2


def test_edited_feed_item_becomes_an_update(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    feed = fixture_bytes("feeds/wordpress-org-news.rss")
    first = parse_feed(feed)[:1]
    ingest(store, cfg, chans, first, source="blog", now=NOW)
    edited = feed.replace(
        b"Introducing Learn WordPress</title>", b"Introducing Learn WordPress (updated)</title>", 1
    )
    again = [n for n in parse_feed(edited) if n.identifier == first[0].identifier]
    r = ingest(store, cfg, chans, again, source="blog", now=NOW)
    assert len(r.stored) == 1
    ns = rows(store, notices, order=notices.c.version)
    assert [(n.version, n.msg_type) for n in ns] == [(1, "alert"), (2, "update")]
    assert ingest(store, cfg, chans, again, source="blog", now=NOW).unchanged == 1


class ExplodingChannel:
    kind = "preview"
    name = "boom"

    def __init__(self, after: int) -> None:
        self.left = after
        from clarion.channels.base import Profile

        self.profile = Profile(limit=None, counting=None)

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("renderer bug")
        return Rendered()

    def send(self, out: Any) -> Any:  # pragma: no cover
        raise AssertionError


def test_one_transaction_all_or_nothing(store: Store) -> None:
    cfg = config()
    chans = {"preview": ExplodingChannel(after=1)}
    alerts = parse_cap(demo_cap(0)) + parse_cap(fixture_bytes("cap/wcatwc-warning.cap"))
    with pytest.raises(RuntimeError, match="renderer bug"):
        ingest(store, cfg, chans, alerts, source="nws", now=NOW)
    assert count(store, notices) == 0 and count(store, threads) == 0
    assert count(store, deliveries) == 0 and count(store, delivery_events) == 0


def test_cap_identifier_is_frozen(store: Store) -> None:
    """The same CAP message re-fetched with cosmetic changes is still the same message."""
    cfg = config()
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    tweaked = demo_cap(0).replace(b"<note>Alert for", b"<note>ALERT for")
    assert ingest_bytes(store, cfg, chans, tweaked).unchanged == 1
    assert MsgType.ALERT.value == rows(store, notices)[0].msg_type


def test_late_alert_after_its_update_is_kept_but_not_posted(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(1))  # the update arrives first
    late = ingest_bytes(store, cfg, chans, demo_cap(0))
    assert len(late.stored) == 1 and late.deliveries == 0 and late.out_of_order == 1
    ns = rows(store, notices, order=notices.c.version)
    assert [(n.version, n.msg_type) for n in ns] == [(1, "update"), (2, "alert")]
    [t] = rows(store, threads)
    assert t.headline.startswith("Flash Flood Watch extended")


def test_one_poll_is_ingested_oldest_first(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    batch = parse_cap(demo_cap(2)) + parse_cap(demo_cap(0)) + parse_cap(demo_cap(1))
    r = ingest(store, cfg, chans, batch, source="nws", now=NOW)
    assert len(r.stored) == 3 and r.out_of_order == 0
    ns = rows(store, notices, order=notices.c.version)
    assert [n.msg_type for n in ns] == ["alert", "update", "cancel"]
    # A poll's outbox rows are written when it ends, yet each message superseded the one
    # before it, queued in the same poll, on every channel: only the cancel waits to go.
    ds = rows(store, deliveries)
    by_version: dict[int, set[str]] = {}
    for d in ds:
        by_version.setdefault(d.version, set()).add(d.state)
    assert by_version == {1: {"superseded"}, 2: {"superseded"}, 3: {"pending"}}
    assert r.superseded == len(ds) - len([d for d in ds if d.version == 3]) > 0


def _decided(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Everything an ingest decides, named by message identifier (row ids differ by store)."""
    ns = rows(store, notices)
    name = {n.id: n.identifier for n in ns}
    version = {n.id: (n.identifier, n.version) for n in ns}
    keys = {t.id: t.thread_key for t in rows(store, threads)}
    return {
        "notices": sorted(
            (
                n.identifier,
                keys[n.thread_id],
                n.version,
                n.msg_type,
                n.branch,
                sorted(name[a] for a in n.ancestors or []),
            )
            for n in ns
        ),
        "threads": sorted(
            (t.thread_key, t.state, t.latest_version, version.get(t.latest_notice_id), t.headline)
            for t in rows(store, threads)
        ),
        "deliveries": sorted(
            (name[d.notice_id], d.channel, d.version, d.msg_type, d.state)
            for d in rows(store, deliveries)
        ),
        "refs": sorted((name[r.notice_id], r.ref) for r in rows(store, notice_refs)),
        "terms": sorted((name[r.notice_id], r.term) for r in rows(store, notice_terms)),
    }


def test_a_poll_makes_the_stories_its_messages_make_one_at_a_time(
    store: Store, tmp_path: Path
) -> None:
    """A poll reads the stored messages and threads its stories need once, before its first
    message, and adds what it stores as it goes: it must decide exactly what the same messages
    decide ingested one poll each (on both databases: PostgreSQL looks them up its own way).
    Real captures (three NWS API pages), a real alert, update and cancel, the alert listed
    twice, an edited feed item, and a message that a message sent before it (listed first)
    already cites: it arrived late."""
    from datetime import timedelta

    from clarion.model import Reference
    from clarion.sources.nws import parse_nws
    from tests.conftest import fixture_bytes as fixture
    from tests.nws_dates import resolve

    poll = [
        n
        for page in ("testing_alerts_active", "load-testing-ioc_alerts_active", "e2e_alerts_active")
        for n in parse_nws(resolve(fixture(f"nws-api/{page}.json")))
    ]
    alert, update, cancel = (parse_cap(demo_cap(i))[0] for i in range(3))
    late = alert.model_copy(
        update={
            "identifier": "late-x",
            "thread_key": "late-x",
            "sent": alert.sent + timedelta(hours=1),
        }
    )
    cites_late = update.model_copy(
        update={
            "identifier": "cites-x",
            "thread_key": "cites-x",
            "sent": alert.sent + timedelta(minutes=30),
            "references": [Reference(sender=late.sender, identifier="late-x", sent="t")],
        }
    )
    [post] = parse_feed(fixture_bytes("feeds/wordpress-org-news.rss"))[:1]
    edited = post.model_copy(  # a feed item edited between two fetches the poll lists both of
        update={
            "infos": [post.infos[0].model_copy(update={"headline": "Learn WordPress, edited"})],
            "sent": post.sent + timedelta(minutes=5),
        }
    )
    poll += [cancel, update, alert, alert, late, cites_late, edited, post]
    cfg = config()
    chans = channels_for(cfg)
    at: dict[str, Any] = {"source": "nws", "now": NOW}

    # Two polls, the second continuing stories the first stored (the real alert's update and
    # cancel), in the order sent. Not sent when over (the default): most were over at NOW.
    by_sent = sorted(poll, key=lambda n: n.sent)
    whole = ingest(store, cfg, chans, [n for n in by_sent if n.sent <= alert.sent], **at)
    whole += ingest(store, cfg, chans, [n for n in by_sent if n.sent > alert.sent], **at)
    one_by_one = open_store(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        for n in sorted(poll, key=lambda n: n.sent):
            ingest(one_by_one, cfg, chans, [n], **at)
        assert _decided(store) == _decided(one_by_one)
    finally:
        one_by_one.close()
    # the alert listed twice, and the messages the three captures share
    cap = [(n.sender, n.identifier) for n in poll if n.kind != "feed"]
    assert whole.unchanged == len(cap) - len(set(cap)) > 1
    assert whole.out_of_order == 1
    decided = _decided(store)
    assert ("late-x", "nws/late-x", 1, "alert", "replaced", []) in decided["notices"]
    assert not [d for d in decided["deliveries"] if d[0] == "late-x"]
    [demo] = [t for t in decided["threads"] if t[3] == (cancel.identifier, 3)]
    assert demo[1:3] == ("cancelled", 3)  # opened, continued and closed in one poll
    [blog] = [t for t in decided["threads"] if t[3] and t[3][0] == post.identifier]
    assert blog[1:] == ("active", 2, (post.identifier, 2), "Learn WordPress, edited")


def test_edits_can_be_ignored(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    feed = fixture_bytes("feeds/wordpress-org-news.rss")
    first = parse_feed(feed)[:1]
    ingest(store, cfg, chans, first, source="blog", now=NOW, edits="ignore")
    edited = feed.replace(b"Introducing Learn WordPress</title>", b"Learn WordPress!</title>", 1)
    again = [n for n in parse_feed(edited) if n.identifier == first[0].identifier]
    r = ingest(store, cfg, chans, again, source="blog", now=NOW, edits="ignore")
    assert r.stored == [] and r.unchanged == 1
    assert count(store, notices) == 1


def test_the_same_item_id_from_two_sources_is_two_stories(store: Store) -> None:
    """A feed (polled, or pushed by its WebSub hub) continues only its own stories: another
    source listing an item with the same guid, edited, neither updates nor touches it."""
    cfg = config()
    chans = channels_for(cfg)
    feed = fixture_bytes("feeds/wordpress-org-news.rss")
    first = parse_feed(feed)[:1]
    ingest(store, cfg, chans, first, source="blog", now=NOW)
    copycat = feed.replace(b"Introducing Learn WordPress</title>", b"Gone, all gone</title>", 1)
    theirs = [n for n in parse_feed(copycat) if n.identifier == first[0].identifier]
    r = ingest(store, cfg, chans, theirs, source="mirror", now=NOW)
    assert len(r.stored) == 1
    by_source = {t.source: t for t in rows(store, threads)}
    assert by_source["blog"].id != by_source["mirror"].id
    assert by_source["blog"].headline == "Introducing Learn WordPress"
    assert [
        (n.source, n.version, n.msg_type) for n in rows(store, notices, order=notices.c.id)
    ] == [
        ("blog", 1, "alert"),
        ("mirror", 1, "alert"),
    ]


def test_a_test_message_never_changes_an_actual_story(store: Store) -> None:
    """A CAP Exercise that references an Actual alert is a story of its own."""
    cfg = config()
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    drill = demo_cap(2).replace(b"<status>Actual</status>", b"<status>Exercise</status>")
    ingest_bytes(store, cfg, chans, drill)
    ts = rows(store, threads, order=threads.c.id)
    assert [(t.status, t.state) for t in ts] == [("actual", "active"), ("exercise", "cancelled")]


def test_ingest_looks_stored_messages_up_by_index_not_by_reading_the_source(
    sqlite_store: Store,
) -> None:
    """Every lookup the ingest makes (the message itself, what it references, what references
    it) is an index search on its key. SQLite's planner without statistics preferred the
    (source, branch) index and read every notice of the source for each message ingested, and
    cannot search an index for a row-value IN list: ingest slowed as the table grew."""
    from sqlalchemy import event

    cfg = config()
    chans = channels_for(cfg)
    selects: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and not many:
            selects.append((statement, params))

    event.listen(sqlite_store.engine, "before_cursor_execute", record)
    try:
        for i in range(3):  # an alert, its update (references), its cancel (references)
            ingest_bytes(sqlite_store, cfg, chans, demo_cap(i))
    finally:
        event.remove(sqlite_store.engine, "before_cursor_execute", record)
    looked_up = [s for s in selects if "FROM notices" in s[0] or "FROM notice_refs" in s[0]]
    # the references were looked up (for the whole poll at once)
    assert any("notices.sender IN (" in s for s, _ in looked_up)
    assert any("notice_refs.ref IN (" in s for s, _ in looked_up)  # and what cites the message
    with sqlite_store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for statement, params in looked_up:
            plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
            for step in plan:
                assert not step.startswith(("SCAN notices", "SCAN notice_refs")), (statement, plan)
                assert "ix_notices_source_branch (source=?)" not in step, (statement, plan)


@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests.conftest import pg_schema_url

    yield from pg_schema_url()


@pytest.mark.postgres
def test_a_poll_wakes_the_workers_once_when_it_commits(pg_url: str) -> None:
    """One NOTIFY for the outbox per ingest transaction, however many notices it queues
    (it sent one per notice), and a listener hears it after the commit."""
    import psycopg
    from sqlalchemy import event

    from clarion.delivery.outbox import OUTBOX_CHANNEL
    from clarion.store import open_store

    store = open_store(pg_url)
    cfg = config()
    chans = channels_for(cfg)
    notifies: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith("NOTIFY"):
            notifies.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        batch = [n for i in range(3) for n in parse_cap(demo_cap(i))]
        r = ingest(store, cfg, chans, batch, source="nws", now=NOW)
        assert r.deliveries == 6 and notifies == [f"NOTIFY {OUTBOX_CHANNEL}"]
        heard = list(listener.notifies(timeout=5, stop_after=1))
        assert [n.channel for n in heard] == [OUTBOX_CHANNEL]
        # the next transaction wakes them again
        other = demo_cap(0).replace(b"</identifier>", b"-OTHER</identifier>", 1)
        assert ingest_bytes(store, cfg, chans, other).deliveries == 2
        assert len(notifies) == 2
    store.close()


@pytest.mark.postgres
def test_two_ingests_of_one_scope_take_turns(pg_url: str) -> None:
    """A poll reads its stories before its first message (`_Known`): another process storing
    a message of the same scope meanwhile would go unseen. So an ingest holds the scope's lock
    for its transaction; here another transaction holds it, and the ingest waits for it."""
    import threading

    import psycopg

    from clarion.pipeline import _scope_lock, story_scope
    from clarion.store import open_store

    store = open_store(pg_url)
    cfg = config()
    chans = channels_for(cfg)
    dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    done: list[Any] = []
    key = _scope_lock(story_scope(cfg, "nws"))
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [key])
        worker = threading.Thread(
            target=lambda: done.append(ingest_bytes(store, cfg, chans, demo_cap(0)))
        )
        worker.start()
        with psycopg.connect(dsn, autocommit=True) as watcher:
            waiting = 0
            for _ in range(3000):  # until the ingest is seen waiting for this lock
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
                    [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF],
                ).fetchone()[0]
                if waiting:
                    break
                worker.join(0.01)
        assert waiting == 1 and not done
        holder.commit()  # lets it go
        worker.join(10)
    assert len(done) == 1 and done[0].deliveries == 2
    store.close()


@pytest.mark.postgres
def test_postgresql_looks_a_polls_stories_up_by_index_without_statistics(pg_url: str) -> None:
    """A new install's first polls grow its tables faster than autovacuum analyses them. With
    the poll's keys as `IN` lists (and psycopg's prepared, generic plans), PostgreSQL read
    every stored thread, citation or notice of the source for each poll: 50–100 ms a poll at
    10,000 notices. Each key is looked up by index, whatever the planner knows."""
    from sqlalchemy import event

    from clarion.store import open_store

    store = open_store(pg_url)
    cfg = config()
    chans = channels_for(cfg)
    alert = demo_cap(0)
    ident = parse_cap(alert)[0].identifier.encode()
    copies = [alert.replace(ident, ident + f"-{i}".encode()) for i in range(400)]
    for i in range(0, 400, 100):
        ingest(
            store,
            cfg,
            chans,
            [n for c in copies[i : i + 100] for n in parse_cap(c)],
            **{"source": "nws", "now": NOW},
        )
    lookups: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if "unnest(" in statement:
            lookups.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        for _ in range(6):  # past psycopg's threshold for preparing a statement
            ingest_bytes(store, cfg, chans, demo_cap(1))
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert len({s for s, _ in lookups}) == 3  # the messages, what cites them, the threads
    with store.engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        for statement, params in lookups[-3:]:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", params))
            for table in ("notices", "notice_refs", "threads"):
                assert f"Seq Scan on {table}" not in plan, plan
            assert "ix_notices_source_branch" not in plan, plan
    store.close()
