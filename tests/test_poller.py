"""Polling real sources over loopback: conditional GET, index documents fetched once, bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from clarion.polling import due_sources, poll_source
from clarion.sources import build_sources
from clarion.store import Store
from clarion.store.schema import sources as sources_table
from tests.fakes.http import FakeServer, Request, Response
from tests.helpers import (
    NOW,
    channels_for,
    config,
    count,
    deliveries,
    fixture_bytes,
    notices,
    rows,
)


class Publisher:
    """An HTTP publisher of files with ETags, like a CDN in front of an alert feed."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.hits: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.server = FakeServer(self.handle)

    def handle(self, req: Request) -> Response:
        with self.lock:
            self.hits.append((req.path, req.headers.get("if-none-match")))
            if req.path not in self.files:
                return Response(
                    404, raw=b"<html><body>Not Found</body></html>", content_type="text/html"
                )
            body, ctype = self.files[req.path]
        etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
        if req.headers.get("if-none-match") == etag:
            return Response(304, raw=b"", headers={"ETag": etag})
        return Response(200, raw=body, content_type=ctype, headers={"ETag": etag})


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    p = Publisher()
    with p.server:
        yield p


def _setup(publisher: Publisher, store: Store, extra: str = ""):
    cfg = config(f"""
[sources.nws]
kind = "cap"
url = "{publisher.server.url}/index.atom"
[sources.blog]
kind = "feed"
url = "{publisher.server.url}/news.rss"
initial_items = 2
{extra}
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
""")
    return cfg, channels_for(cfg), build_sources(cfg)


def _index(urls: list[str]) -> bytes:
    entries = "".join(
        f"<entry><id>{u}</id><updated>2010-08-30T04:07:00-06:00</updated><link href='{u}'/></entry>"
        for u in urls
    )
    return f"<feed xmlns='http://www.w3.org/2005/Atom'><id>x</id>{entries}</feed>".encode()


def test_index_poll_then_304(publisher: Publisher, store: Store) -> None:
    from clarion.demo import DATA

    base = publisher.server.url
    publisher.files["/index.atom"] = (
        _index([f"{base}/a.cap", f"{base}/b.cap"]),
        "application/atom+xml",
    )
    publisher.files["/a.cap"] = (
        (DATA / "01-nws-flash-flood-watch.cap").read_bytes(),
        "application/cap+xml",
    )
    publisher.files["/b.cap"] = (fixture_bytes("cap/wcatwc-warning.cap"), "application/cap+xml")
    cfg, chans, srcs = _setup(publisher, store)
    with httpx.Client() as http:
        r = poll_source(store, cfg, chans, srcs["nws"], http, now=NOW)
        assert r is not None and len(r.stored) == 2
        r2 = poll_source(store, cfg, chans, srcs["nws"], http, now=NOW)
    assert r2 is not None and r2.stored == [] and r2.unchanged == 0
    # The second poll sent the ETag, got 304, and fetched no document again.
    assert [h for h in publisher.hits if h[0] == "/index.atom"][1][1] is not None
    assert [h[0] for h in publisher.hits].count("/a.cap") == 1
    [row] = rows(store, sources_table, sources_table.c.name == "nws")
    assert row.etag and row.last_error is None and row.notices_ingested == 2


def test_new_index_entry_fetches_only_the_new_document(publisher: Publisher, store: Store) -> None:
    base = publisher.server.url
    publisher.files["/index.atom"] = (_index([f"{base}/a.cap"]), "application/atom+xml")
    publisher.files["/a.cap"] = (fixture_bytes("cap/weather.cap"), "application/cap+xml")
    publisher.files["/b.cap"] = (fixture_bytes("cap/wcatwc-warning.cap"), "application/cap+xml")
    cfg, chans, srcs = _setup(publisher, store)
    with httpx.Client() as http:
        poll_source(store, cfg, chans, srcs["nws"], http, now=NOW)
        publisher.files["/index.atom"] = (
            _index([f"{base}/a.cap", f"{base}/b.cap"]),
            "application/atom+xml",
        )
        r = poll_source(store, cfg, chans, srcs["nws"], http, now=NOW)
    assert r is not None and len(r.stored) == 1
    paths = [h[0] for h in publisher.hits]
    assert paths.count("/a.cap") == 1 and paths.count("/b.cap") == 1


@pytest.mark.parametrize(
    ("body", "ctype", "error"),
    [
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", "HTML page"),
        (None, "", "answered HTTP 404"),
        (fixture_bytes("cap/xee.atom"), "application/atom+xml", "DOCTYPE"),
        (
            b"<feed xmlns='http://www.w3.org/2005/Atom'><entry>",
            "application/atom+xml",
            "not well-formed",
        ),
    ],
)
def test_bad_input_is_recorded_and_nothing_is_lost(
    publisher: Publisher, store: Store, body: bytes | None, ctype: str, error: str
) -> None:
    from clarion.demo import DATA

    base = publisher.server.url
    publisher.files["/index.atom"] = (_index([f"{base}/a.cap"]), "application/atom+xml")
    publisher.files["/a.cap"] = (
        (DATA / "01-nws-flash-flood-watch.cap").read_bytes(),
        "application/cap+xml",
    )
    publisher.files["/news.rss"] = (
        fixture_bytes("feeds/wordpress-org-news.rss"),
        "application/rss+xml",
    )
    cfg, chans, srcs = _setup(publisher, store)
    with httpx.Client() as http:
        assert poll_source(store, cfg, chans, srcs["nws"], http, now=NOW) is not None
        [before] = rows(store, sources_table, sources_table.c.name == "nws")
        if body is None:
            del publisher.files["/index.atom"]
        else:
            publisher.files["/index.atom"] = (body, ctype)
        assert poll_source(store, cfg, chans, srcs["nws"], http, now=NOW) is None
        [after] = rows(store, sources_table, sources_table.c.name == "nws")
        assert error in after.last_error and after.last_error.startswith("source nws")
        assert after.consecutive_failures == 1
        assert (after.etag, after.cursor) == (before.etag, before.cursor)  # state unchanged
        assert count(store, notices) == 1  # nothing already stored is lost
        # Other sources are unaffected…
        blog = poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
        assert blog is not None and len(blog.stored) == 2  # initial_items = 2: no archive flood
        # …and the next poll proceeds once the publisher is fixed.
        publisher.files["/index.atom"] = (_index([f"{base}/a.cap"]), "application/atom+xml")
        assert poll_source(store, cfg, chans, srcs["nws"], http, now=NOW) is not None
    [healed] = rows(store, sources_table, sources_table.c.name == "nws")
    assert healed.consecutive_failures == 0 and healed.last_success_at is not None


def test_due_sources_respect_interval(publisher: Publisher, store: Store) -> None:
    publisher.files["/index.atom"] = (_index([]), "application/atom+xml")
    cfg, chans, srcs = _setup(publisher, store)
    assert set(s.name for s in due_sources(store, srcs, NOW)) == {"nws", "blog"}
    with httpx.Client() as http:
        poll_source(store, cfg, chans, srcs["nws"], http, now=NOW)
    assert [s.name for s in due_sources(store, srcs, NOW)] == ["blog"]


def test_host_pacer_spaces_polls_of_one_host() -> None:
    from clarion.polling import HostPacer

    pacer = HostPacer(gap=2.0)
    assert pacer.delay("https://alerts.example.gov/a", 100.0) == 0.0
    pacer.mark("https://alerts.example.gov/a", 100.0)
    assert pacer.delay("https://ALERTS.example.gov/b", 100.5) == 1.5  # same host, any path
    assert pacer.delay("https://other.example.org/", 100.5) == 0.0
    assert pacer.delay("https://alerts.example.gov/a", 103.0) == 0.0


def test_gigantic_response_is_cut_off(publisher: Publisher, store: Store) -> None:
    publisher.files["/huge.atom"] = (b"<feed>" + b" " * 5000 + b"</feed>", "application/atom+xml")
    cfg = config(f"""
[sources.huge]
kind = "cap"
url = "{publisher.server.url}/huge.atom"
max_bytes = 2048
[channels.preview]
kind = "preview"
""")
    with httpx.Client() as http:
        assert poll_source(store, cfg, channels_for(cfg), build_sources(cfg)["huge"], http) is None
    [row] = rows(store, sources_table, sources_table.c.name == "huge")
    assert "sent more than 2,048 bytes; refused" in row.last_error


def test_exactly_one_worker_polls_a_source_at_a_time(store: Store) -> None:
    from datetime import timedelta

    from clarion.polling import claim_source, release_source

    cfg = config('[sources.nws]\nkind = "cap"\nurl = "https://alerts.example/cap.atom"\n')
    [source] = build_sources(cfg).values()
    assert claim_source(store, source, "host-a:1", NOW)
    assert not claim_source(store, source, "host-b:2", NOW)  # A holds it
    assert claim_source(store, source, "host-a:1", NOW)  # its own lease, renewed
    release_source(store, "nws", "host-a:1")
    assert claim_source(store, source, "host-b:2", NOW)
    # B dies mid-poll: its lease runs out and A takes the source over.
    assert not claim_source(store, source, "host-a:1", NOW + timedelta(seconds=299))
    assert claim_source(store, source, "host-a:1", NOW + timedelta(seconds=301))
    release_source(store, "nws", "host-a:1")
    # Once polled, nobody polls it again before it is due.
    from sqlalchemy import update

    with store.write() as conn:
        conn.execute(update(sources_table).values(next_poll_at=NOW + timedelta(seconds=60)))
    assert not claim_source(store, source, "host-b:2", NOW + timedelta(seconds=30))
    assert claim_source(store, source, "host-b:2", NOW + timedelta(seconds=61))


def test_many_workers_racing_for_a_source_one_wins(store: Store) -> None:
    from clarion.polling import claim_source, load_state

    cfg = config('[sources.nws]\nkind = "cap"\nurl = "https://alerts.example/cap.atom"\n')
    [source] = build_sources(cfg).values()
    load_state(store, "nws", "cap")
    start = threading.Barrier(8)
    won: list[str] = []

    def worker(i: int) -> None:
        start.wait()
        if claim_source(store, source, f"host-{i}:1", NOW):
            won.append(f"host-{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1
    [row] = rows(store, sources_table)
    assert row.lease_owner == f"{won[0]}:1"


def test_a_parser_crash_backs_off_and_is_counted(
    publisher: Publisher, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in reading an answer is a failed poll like any other: recorded, counted, and
    polled again later, never once a second."""
    publisher.files["/index.atom"] = (_index([]), "application/atom+xml")
    cfg, chans, srcs = _setup(publisher, store)

    def boom(*a: object, **k: object) -> object:
        raise OverflowError("date value out of range")

    monkeypatch.setattr("clarion.sources.cap.parse_index_root", boom)
    with httpx.Client() as http:
        for n in (1, 2):
            assert poll_source(store, cfg, chans, srcs["nws"], http, now=NOW) is None
            [row] = rows(store, sources_table, sources_table.c.name == "nws")
            assert row.consecutive_failures == n
            assert "date value out of range" in row.last_error
            # 120 s interval, ±10 % jitter, doubled per failure in a row: never sooner.
            assert (row.next_poll_at - NOW).total_seconds() >= 0.9 * 120 * 2 ** (n - 1)


def test_rejected_items_are_listed_and_counted(publisher: Publisher, store: Store) -> None:
    from clarion.web.metrics import render_metrics

    base = publisher.server.url
    publisher.files["/index.atom"] = (
        _index([f"{base}/gone.cap", f"{base}/bad.cap"]),
        "application/atom+xml",
    )
    publisher.files["/bad.cap"] = (
        b"<alert><identifier>x</identifier></alert>",
        "application/cap+xml",
    )
    cfg, chans, srcs = _setup(publisher, store)
    with httpx.Client() as http:
        assert poll_source(store, cfg, chans, srcs["nws"], http, now=NOW) is not None
        assert poll_source(store, cfg, chans, srcs["nws"], http, now=NOW) is not None
    [row] = rows(store, sources_table, sources_table.c.name == "nws")
    assert row.consecutive_failures == 0  # the poll itself went through
    text = render_metrics(store, cfg).decode()
    # The missing document is tried again (and rejected again); the malformed one is not.
    assert 'clarion_source_items_rejected_total{reason="fetch_failed",source="nws"} 2.0' in text
    assert 'clarion_source_items_rejected_total{reason="malformed",source="nws"} 1.0' in text
    from clarion.status import source_statuses as source_health

    [nws] = [h for h in source_health(store, cfg) if h.name == "nws"]
    assert {(r.item, r.reason) for r in nws.rejected} == {
        (f"{base}/gone.cap", "fetch_failed"),
        (f"{base}/bad.cap", "malformed"),
    }


def test_an_item_whose_ingest_failed_is_still_new_at_the_next_poll(
    publisher: Publisher, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feed's items were recorded as seen in a transaction of their own, before the one
    that stores them: when that ingest failed (the database went away, the process was
    killed, one notice could not be stored), the new post stayed seen and was never stored
    nor posted, at any later poll. Now they are recorded with what is stored."""
    from clarion.store.schema import seen_items

    feed = fixture_bytes("feeds/wordpress-org-news.rss")
    publisher.files["/news.rss"] = (feed, "application/rss+xml")
    cfg, chans, srcs = _setup(publisher, store)
    with httpx.Client() as http:
        first = poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
        assert first is not None and len(first.stored) == 2
        seen_before = count(store, seen_items)
        new_item = (
            b"<item><title>WordPress 5.6.1 Security Release</title>"
            b"<link>https://wordpress.org/news/2021/01/wordpress-5-6-1/</link>"
            b"<guid isPermaLink='false'>https://wordpress.org/news/?p=9999</guid>"
            b"<pubDate>Tue, 05 Jan 2021 13:00:00 +0000</pubDate>"
            b"<description>A security release.</description></item>"
        )
        at = feed.index(b"<item>")
        publisher.files["/news.rss"] = (feed[:at] + new_item + feed[at:], "application/rss+xml")
        preview = chans["preview"]
        real_render = preview.render

        def broken(notice, ctx):  # type: ignore[no-untyped-def]
            raise RuntimeError("the database went away mid-ingest")

        monkeypatch.setattr(preview, "render", broken)
        with pytest.raises(RuntimeError):
            poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
        assert count(store, seen_items) == seen_before  # nothing recorded as seen
        monkeypatch.setattr(preview, "render", real_render)
        again = poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
    assert again is not None
    [stored] = again.stored
    [row] = rows(store, notices, notices.c.id == stored)
    assert row.headline == "WordPress 5.6.1 Security Release"
    assert count(store, seen_items) == seen_before + 1


def _render_failing_for(chans, monkeypatch: pytest.MonkeyPatch, doomed: set[str], exc) -> None:  # type: ignore[no-untyped-def]
    """The preview channel fails to render the `doomed` messages (a bug one message meets)."""
    preview = chans["preview"]
    real = preview.render

    def render(notice, ctx):  # type: ignore[no-untyped-def]
        if notice.identifier in doomed:
            raise exc
        return real(notice, ctx)

    monkeypatch.setattr(preview, "render", render)


def test_one_message_that_cannot_be_stored_is_rejected_alone(
    publisher: Publisher, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One message of a poll meeting a bug (here, in rendering) failed the whole poll, every
    other message of it unstored and unposted, poll after poll. Now it is rejected alone
    (listed with the source's rejections), the others are stored and queued, the source is
    healthy, and the message is tried again at the next poll."""
    from clarion.sources.feed import parse_feed
    from clarion.store.schema import rejected_items

    feed = fixture_bytes("feeds/wordpress-org-news.rss")
    publisher.files["/news.rss"] = (feed, "application/rss+xml")
    newest = sorted(parse_feed(feed, "application/rss+xml"), key=lambda n: n.sent)[-2:]
    cfg, chans, srcs = _setup(publisher, store)  # initial_items = 2: these two go on
    _render_failing_for(chans, monkeypatch, {newest[1].identifier}, ValueError("a bug"))
    with httpx.Client() as http:
        first = poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
        assert first is not None and len(first.stored) == 1
        [row] = rows(store, notices)
        assert row.identifier == newest[0].identifier
        [why] = rows(store, rejected_items)
        assert (why.item, why.reason) == (newest[1].identifier, "unstorable")
        assert "ValueError: a bug" in why.detail
        [health] = rows(store, sources_table, sources_table.c.name == "blog")
        assert health.consecutive_failures == 0 and health.last_error is None
        monkeypatch.undo()  # the bug is fixed; the feed is unchanged (its ETag too)
        again = poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
    assert again is not None and len(again.stored) == 1
    assert sorted(r.identifier for r in rows(store, notices)) == sorted(
        n.identifier for n in newest
    )
    assert count(store, deliveries) == 2  # each posted once


def test_a_poll_whose_every_message_fails_or_whose_database_is_away_fails_whole(
    publisher: Publisher, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not one message's fault: the database away (OperationalError), or every message
    failing alike. The poll fails as before (its error on the source, tried again), nothing
    is rejected and nothing is recorded as seen."""
    from sqlalchemy.exc import OperationalError

    from clarion.sources.feed import parse_feed
    from clarion.store.schema import rejected_items, seen_items

    feed = fixture_bytes("feeds/wordpress-org-news.rss")
    publisher.files["/news.rss"] = (feed, "application/rss+xml")
    every = {n.identifier for n in parse_feed(feed, "application/rss+xml")}
    cfg, chans, srcs = _setup(publisher, store)
    away = OperationalError("INSERT INTO notices …", {}, Exception("server closed"))
    with httpx.Client() as http:
        for exc, kind in ((away, OperationalError), (ValueError("a bug"), ValueError)):
            with monkeypatch.context() as m:
                _render_failing_for(chans, m, every, exc)
                with pytest.raises(kind):
                    poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
            assert count(store, notices) == count(store, rejected_items) == 0
            assert count(store, seen_items) == 0


def test_an_index_document_whose_alert_could_not_be_stored_is_read_again(
    publisher: Publisher, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CAP index fetches each listed document once. One whose alert could not be stored
    was remembered as fetched all the same: while its entry did not change, it was never
    fetched again, and the alert was never posted, even once the cause was gone. Its entry is
    now forgotten (and the index read whole again) until the alert is stored."""
    from clarion.sources.cap import parse_cap

    base = publisher.server.url
    a, b = fixture_bytes("cap/weather.cap"), fixture_bytes("cap/wcatwc-warning.cap")
    publisher.files["/index.atom"] = (
        _index([f"{base}/a.cap", f"{base}/b.cap"]),
        "application/atom+xml",
    )
    publisher.files["/a.cap"] = (a, "application/cap+xml")
    publisher.files["/b.cap"] = (b, "application/cap+xml")
    [doomed] = parse_cap(b)
    cfg, chans, srcs = _setup(publisher, store)
    _render_failing_for(chans, monkeypatch, {doomed.identifier}, ValueError("a bug"))
    with httpx.Client() as http:
        first = poll_source(store, cfg, chans, srcs["nws"], http, now=NOW)
        assert first is not None and len(first.stored) == 1
        monkeypatch.undo()  # the bug is fixed; the index and its documents are unchanged
        again = poll_source(store, cfg, chans, srcs["nws"], http, now=NOW)
        assert again is not None and len(again.stored) == 1
        [row] = rows(store, notices, notices.c.id == again.stored[0])
        assert row.identifier == doomed.identifier
        third = poll_source(store, cfg, chans, srcs["nws"], http, now=NOW)
    assert third is not None and third.stored == []
    paths = [h[0] for h in publisher.hits]
    assert paths.count("/a.cap") == 1 and paths.count("/b.cap") == 2  # b again, a never
    assert count(store, deliveries) == 2


def test_an_item_with_neither_guid_nor_link_is_published_once(
    publisher: Publisher, store: Store
) -> None:
    """Valid RSS 2.0: an item needs only a title or a description. One with neither guid nor
    link was refused by `clarion parse` and never published by a poll; it now has an id made
    from what it says, the same at every poll and in `clarion parse`."""
    from clarion.sources.feed import parse_feed

    feed = fixture_bytes("feeds/wordpress-org-news.rss")
    bare = (
        b"<item><title>Water main break on 5th Street</title>"
        b"<description>Boil water until further notice.</description>"
        b"<pubDate>Tue, 05 Jan 2021 13:00:00 +0000</pubDate></item>"
    )
    at = feed.index(b"<item>")
    body = feed[:at] + bare + feed[at:]
    [first, *_] = parse_feed(body)
    assert first.identifier.startswith("urn:sha256:")
    assert parse_feed(body)[0].identifier == first.identifier  # stable
    publisher.files["/news.rss"] = (body, "application/rss+xml")
    cfg, chans, srcs = _setup(publisher, store)
    with httpx.Client() as http:
        once = poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
        publisher.files["/news.rss"] = (body + b" ", "application/rss+xml")  # a new ETag
        again = poll_source(store, cfg, chans, srcs["blog"], http, now=NOW)
    assert once is not None and again is not None and again.stored == []
    headlines = {r.headline for r in rows(store, notices)}
    assert "Water main break on 5th Street" in headlines
