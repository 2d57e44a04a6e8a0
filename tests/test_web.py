"""The public page and the Atom feed."""

from __future__ import annotations

import feedparser
import pytest
from fastapi.testclient import TestClient

from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from clarion.web.app import create_app
from tests.conftest import fixture_bytes
from tests.helpers import NOW, channels_for, config, demo_cap, ingest_bytes


@pytest.fixture
def client(store: Store):
    cfg = config()
    chans = channels_for(cfg)
    for i in range(3):
        ingest_bytes(store, cfg, chans, demo_cap(i))
        Dispatcher(store, chans, clock=lambda: NOW).run_until_idle()
    amber = demo_cap(3)
    ingest_bytes(store, cfg, chans, amber, source="amber")
    with TestClient(create_app(store, cfg)) as c:
        yield c


def test_index_lists_threads_newest_first(client: TestClient) -> None:
    html = client.get("/").text
    assert html.index("Amber Alert in Washington D.C.") < html.index("Flash Flood Watch extended")
    assert 'class="tag">cancelled<' in html
    assert '<link rel="alternate" type="application/atom+xml"' in html


def test_permalink_shows_every_version_and_where_it_went(client: TestClient) -> None:
    html = client.get("/notices/1").text
    for v in ("Version 3: cancel", "Version 2: update", "Version 1: alert"):
        assert v in html
    assert "Flash Flood Watch cancelled by NWS GreatFalls" in html
    assert "<strong>preview</strong>: sent" in html
    assert client.get("/notices/999").status_code == 404


def test_atom_feed_is_valid_and_cacheable(client: TestClient) -> None:
    r = client.get("/feeds/all.atom")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(r.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    titles = [e.title for e in parsed.entries]
    assert titles[0] == "Amber Alert in Washington D.C."
    assert "Cancelled: Flash Flood Watch cancelled by NWS GreatFalls" in titles
    assert len({e.id for e in parsed.entries}) == len(parsed.entries) == 4
    etag = r.headers["etag"]
    again = client.get("/feeds/all.atom", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/feeds/all.atom", headers={"If-None-Match": '"other"'}).status_code == 200


def test_etag_changes_when_a_notice_arrives(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    with TestClient(create_app(store, cfg)) as c:
        first = c.get("/feeds/all.atom").headers["etag"]
        ingest_bytes(store, cfg, chans, demo_cap(1))
        r = c.get("/feeds/all.atom", headers={"If-None-Match": first})
        assert r.status_code == 200 and r.headers["etag"] != first


def test_hostile_text_is_escaped(store: Store) -> None:
    cfg = config()
    chans = channels_for(cfg)
    body = demo_cap(0).replace(
        b"<headline>Flash Flood Watch",
        b"<headline>&lt;script&gt;alert(1)&lt;/script&gt; Flash Flood Watch",
    )
    ingest_bytes(store, cfg, chans, body)
    with TestClient(create_app(store, cfg)) as c:
        assert "<script>alert(1)" not in c.get("/").text
        assert "&lt;script&gt;alert(1)" in c.get("/notices/1").text
        feed = c.get("/feeds/all.atom").content
        assert b"<script>" not in feed


def test_publisher_and_source_timelines_follow_links_and_atproto_did(store: Store) -> None:
    from urllib.parse import quote

    cfg = config("""
[clarion]
atproto_did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
follow = [{ label = "Mastodon", url = "https://mastodon.example/@alerts" }]
[sources.nws]
kind = "cap"
url = "https://alerts.example/cap.atom"
[sources.amber]
kind = "cap"
url = "https://alerts.example/amber.atom"
""")
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    ingest_bytes(store, cfg, chans, demo_cap(3), source="amber")
    with TestClient(create_app(store, cfg)) as client:
        r = client.get("/.well-known/atproto-did")
        assert r.status_code == 200 and r.text == "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
        page = client.get("/").text
        assert '<a rel="me" href="https://mastodon.example/@alerts">Mastodon</a>' in page
        assert '<link rel="me" href="https://mastodon.example/@alerts">' in page
        amber = client.get("/sources/amber").text
        assert "Amber Alert in Washington D.C." in amber and "Flash Flood" not in amber
        assert client.get("/sources/nope").status_code == 404
        sender = "w-nws.webmaster@noaa.gov"
        nws = client.get(f"/publishers/{quote(sender, safe='')}").text
        assert "Flash Flood Watch" in nws and "Amber Alert" not in nws
        assert "Notices from NWS GreatFalls" in nws
        severe = client.get("/", params={"severity": "extreme"}).text
        assert "No notices match these filters." in severe
    bare = config()
    with TestClient(create_app(store, bare)) as client:
        assert client.get("/.well-known/atproto-did").status_code == 404


def test_security_headers_cors_for_public_data_and_body_limits(store: Store) -> None:
    cfg = config('[clarion]\npublic_url = "https://alerts.example.org"\nmax_request_bytes = 4096\n')
    with TestClient(create_app(store, cfg)) as client:
        page = client.get("/")
        h = page.headers
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert "script-src 'none'" in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["strict-transport-security"].startswith("max-age=")
        assert "access-control-allow-origin" not in h  # the page is not an API
        feed = client.get("/feeds/all.atom")
        assert feed.headers["access-control-allow-origin"] == "*"
        assert "ETag" in feed.headers["access-control-expose-headers"]
        docs = client.get("/api/docs")  # offline: no script, nothing from elsewhere
        assert docs.status_code == 200
        assert "script-src 'none'" in docs.headers["content-security-policy"]
        big = client.post("/api/v1/notices", content=b"x" * 5000)
        assert big.status_code == 413 and "over 4,096 bytes" in big.text

        def chunks():  # no Content-Length: counted while it streams
            for _ in range(10):
                yield b"y" * 1000

        streamed = client.post("/api/v1/notices", content=chunks())
        assert streamed.status_code == 413


def test_every_source_link_on_the_page_answers_and_there_is_an_icon(store: Store) -> None:
    """The page links each notice to its source's page: the desk's and the API's too (they
    are not configured sources), and a source since removed from the configuration."""
    import re

    from clarion.manual import NoticeIn, new_alert
    from clarion.pipeline import ingest
    from tests.helpers import channels_for, config

    cfg = config()
    chans = channels_for(cfg)
    ingest(store, cfg, chans, [new_alert(cfg, NoticeIn(headline="Road closed"), kind="desk")],
           source="desk")  # fmt: skip
    with TestClient(create_app(store, cfg)) as c:
        page = c.get("/").text
        links = set(re.findall(r'href="(/sources/[^"]+)"', page))
        assert links == {"/sources/desk"}
        for link in links:
            assert c.get(link).status_code == 200
            assert c.get(f"/feeds/source/{link.rsplit('/', 1)[1]}.atom").status_code == 200
        assert c.get("/sources/nobody").status_code == 404
        icon = c.get("/favicon.ico")
        assert icon.status_code == 200 and icon.content[:4] == b"\x00\x00\x01\x00"


def test_a_severity_badge_only_where_it_says_something(store: Store) -> None:
    """A cancelled watch no longer wears a red SEVERE badge; a blog post has no UNKNOWN one."""
    from clarion.pipeline import ingest
    from clarion.sources.feed import parse_feed
    from tests.conftest import fixture_bytes

    cfg = config()
    chans = channels_for(cfg)
    for i in range(3):
        ingest_bytes(store, cfg, chans, demo_cap(i))
    post = parse_feed(fixture_bytes("feeds/wordpress-org-news.rss"))[:1]
    ingest(store, cfg, chans, post, source="blog", now=NOW)
    with TestClient(create_app(store, cfg)) as c:
        page = c.get("/").text
        watch = c.get("/notices/1").text
    assert 'class="tag">cancelled' in page
    assert 'class="tag sev-' not in page  # the watch is cancelled; the post says no severity
    assert 'class="tag sev-' not in watch


def test_the_page_puts_what_is_in_effect_first_in_the_publishers_words(
    sqlite_store: Store,
) -> None:
    """What is in effect now leads, the most severe first; each story says its state in plain
    words, at times in the publisher's time zone; what is over follows under Recent."""
    from fastapi.testclient import TestClient

    from clarion.web.app import create_app

    cfg = config(
        """
[clarion]
timezone = "America/Denver"
drop_expired = false
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
"""
    )
    chans = channels_for(cfg)
    watch = demo_cap(0).replace(b"2010-08-30T12:00:00-06:00", b"2099-07-01T18:00:00-06:00")

    def alert(ident: bytes, severity: bytes) -> bytes:
        ident_old = b"NOAA-NWS-ALERTS-MT20100830100700TFXFlashFloodWatchTFX20100830180000MT"
        return watch.replace(ident_old, ident).replace(
            b"<severity>Severe", b"<severity>" + severity
        )

    ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))  # over since 2010
    ingest_bytes(sqlite_store, cfg, chans, alert(b"SEVERE-1", b"Severe"))
    ingest_bytes(sqlite_store, cfg, chans, alert(b"EXTREME-1", b"Extreme"))
    hurricane = fixture_bytes("cap/nws_multiple_polygons.cap").replace(
        b"2020-08-26T12:15:00-05:00", b"2099-07-01T12:00:00-05:00"
    )  # an Extreme warning with polygons, still in effect
    ingest_bytes(sqlite_store, cfg, chans, hurricane)
    with TestClient(create_app(sqlite_store, cfg)) as client:
        page = client.get("/").text
    now_part, recent = page.split('id="recent-h"')
    assert 'id="now-h">In effect now' in now_part
    assert now_part.count('class="notice"') == 3
    assert now_part.index("sev-extreme") < now_part.index("sev-severe")  # most severe first
    assert "In effect until Wed 1 Jul 2099, 6:00 PM MDT" in now_part  # the publisher's zone
    # One map of the areas in effect, its text alternative naming them.
    assert now_part.count("<svg") == 1 and "<polygon" in now_part
    assert "<title>Map of the areas in effect now: " in now_part and "Acadia" in now_part
    assert recent.count('class="notice"') == 1
    assert "Over since Mon 30 Aug 2010, 12:00 PM MDT" in recent


def test_a_database_that_does_not_answer_is_a_503_to_retry(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `Store._connect`'s patience, a request whose database is away answers 503 with
    Retry-After (senders and proxies retry it), never a bare 500; the connection is tried
    again meanwhile, and the first one that succeeds is used."""
    from sqlalchemy.exc import OperationalError

    from clarion.store import db

    monkeypatch.setattr(db, "CONNECT_PATIENCE", 0.3)
    real = sqlite_store.engine.connect
    refusals = {"left": 10**6}

    def connect() -> object:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise OperationalError(
                "connect", {}, Exception("the database system is in recovery mode")
            )
        return real()

    monkeypatch.setattr(sqlite_store.engine, "connect", connect)
    cfg = config()
    with TestClient(create_app(sqlite_store, cfg), raise_server_exceptions=False) as c:
        r = c.get("/api/v1/notices")
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        refusals["left"] = 2  # recovering: refused twice, then taken
        assert c.get("/api/v1/notices").status_code == 200
        assert refusals["left"] == 0
