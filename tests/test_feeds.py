"""The publisher's feeds and CAP documents: every format read back by feedparser without a
bozo error, filters, conditional requests, the WebSub hub, and CAP that validates."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import feedparser
import pytest
from fastapi.testclient import TestClient
from lxml import etree

from clarion.config import Config
from clarion.pipeline import ingest
from clarion.sources.feed import parse_feed
from clarion.sources.gtfsrt import parse_gtfsrt
from clarion.sources.statuspage import parse_statuspage
from clarion.store import Store
from clarion.web.app import create_app
from tests.conftest import FIXTURES, fixture_bytes
from tests.fakes.websub_hub import FakeHub
from tests.helpers import NOW, channels_for, config, demo_cap, ingest_bytes

SOURCES = """
[sources.nws]
kind = "cap"
url = "https://alerts.example/cap.atom"
[sources.amber]
kind = "cap"
url = "https://alerts.example/amber.atom"
[sources.news]
kind = "feed"
url = "https://wordpress.example/feed"
[sources.bart]
kind = "gtfsrt"
url = "https://bart.example/alerts"
[sources.github]
kind = "statuspage"
url = "https://status.example/api/v2/summary.json"
"""
SCHEMA = etree.XMLSchema(etree.parse(str(FIXTURES / "cap/cap12.xsd")))


def _fill(store: Store, cfg: Config) -> None:
    chans = channels_for(cfg)
    for i in range(3):  # a flash flood watch: alert, update, cancel
        ingest_bytes(store, cfg, chans, demo_cap(i), now=NOW + timedelta(minutes=i))
    ingest_bytes(store, cfg, chans, demo_cap(3), source="amber", now=NOW + timedelta(minutes=3))
    later = NOW + timedelta(minutes=4)
    news = parse_feed(fixture_bytes("feeds/wordpress-org-news.rss"))[:2]
    ingest(store, cfg, chans, news, source="news", now=later)
    bart = parse_gtfsrt(fixture_bytes("gtfsrt/bart-alerts.pb"), "application/x-protobuf")
    ingest(store, cfg, chans, bart, source="bart", now=later)
    # The GTFS-realtime spec's own example: alerts on routes and stops.
    from tests.test_gtfsrt import spec_example

    spec = parse_gtfsrt(spec_example().SerializeToString(), "application/x-protobuf", now=later)
    ingest(store, cfg, chans, spec, source="bart", now=later)
    gh = parse_statuspage(fixture_bytes("statuspage/githubstatus-summary-2022-11-25.json"))
    ingest(store, cfg, chans, gh, source="github", now=later)


@pytest.fixture
def site(store: Store) -> Any:
    cfg = config(SOURCES)
    _fill(store, cfg)
    with TestClient(create_app(store, cfg)) as c:
        yield c, store, cfg


def _parsed(client: TestClient, url: str, **params: Any) -> Any:
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    if "json" in r.headers["content-type"]:
        return _json_feed(r.content)
    parsed = feedparser.parse(r.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


def _json_feed(body: bytes) -> Any:
    """feedparser 6 (the latest release) reads no JSON Feed: check the document against the
    JSON Feed 1.1 rules, read it back with Clarion's own JSON Feed reader, and answer in
    feedparser's shape."""
    doc = json.loads(body)
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(doc["title"], str) and isinstance(doc["items"], list)
    for key in ("home_page_url", "feed_url"):
        assert doc[key].startswith("http")
    for item in doc["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert "content_text" in item or "content_html" in item  # one is required
        for key in ("date_published", "date_modified"):
            datetime.fromisoformat(item[key])  # RFC 3339
    read = parse_feed(body, "application/feed+json")
    assert [n.identifier for n in read] == [i["id"] for i in doc["items"]]
    entries = [
        feedparser.FeedParserDict(id=i["id"], title=i["title"], link=i["url"]) for i in doc["items"]
    ]
    return feedparser.FeedParserDict(entries=entries, feed=feedparser.FeedParserDict())


@pytest.mark.parametrize("path", ["/feeds/all.atom", "/feeds/all.rss", "/feeds/all.json"])
def test_every_format_reads_cleanly_with_every_version(site: Any, path: str) -> None:
    client, *_ = site
    parsed = _parsed(client, path)
    titles = [e.title for e in parsed.entries]
    assert any(t.startswith("Update: Flash Flood Watch") for t in titles)
    assert any(t.startswith("Cancelled: ") for t in titles)
    assert "Amber Alert in Washington D.C." in titles
    assert len({e.id for e in parsed.entries}) == len(parsed.entries) >= 8
    flood = [e for e in parsed.entries if "/notices/1#" in e.link]
    assert [e.id.rsplit("#", 1)[1] for e in flood] == ["v3", "v2", "v1"]  # newest first


def test_the_three_formats_hold_the_same_entries(site: Any) -> None:
    client, *_ = site
    ids = [
        [e.id for e in _parsed(client, f"/feeds/all.{fmt}").entries]
        for fmt in ("atom", "rss", "json")
    ]
    assert ids[0] == ids[1] == ids[2]


def test_cap_index_links_each_document_and_each_validates(site: Any) -> None:
    client, *_ = site
    parsed = _parsed(client, "/feeds/cap.atom")
    assert parsed.entries
    for e in parsed.entries:
        [cap] = [link.href for link in e.links if link.type == "application/cap+xml"]
        r = client.get(cap.removeprefix("http://testserver"))
        assert r.status_code == 200 and r.headers["content-type"] == "application/cap+xml"
        doc = etree.fromstring(r.content)
        if doc.tag == "{urn:oasis:names:tc:emergency:cap:1.2}alert":
            SCHEMA.assertValid(doc)  # every generated document is CAP 1.2
        else:  # only an original kept byte for byte may be anything else (CAP 1.1 here)
            assert r.content in (demo_cap(0), demo_cap(1), demo_cap(2), demo_cap(3))


def test_generated_cap_for_every_kind_validates_and_updates_reference_earlier(
    site: Any,
) -> None:
    client, store, _ = site
    from clarion.store.schema import notices
    from tests.helpers import rows

    for n in rows(store, notices):
        r = client.get(f"/notices/{n.thread_id}/v{n.version}.cap")
        assert r.status_code == 200
        doc = etree.fromstring(r.content)
        SCHEMA.assertValid(doc)
        ns = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
        if n.version > 1 and n.kind not in ("cap", "nws"):
            refs = doc.findtext("c:references", namespaces=ns)
            assert refs and refs.count(",") == 2 * (n.version - 1)
    assert client.get("/notices/1.cap").content == client.get("/notices/1/v3.cap").content
    assert client.get("/notices/1/v9.cap").status_code == 404


def test_a_signed_original_comes_back_byte_identical(store: Store) -> None:
    cfg = config()
    signed = fixture_bytes("cap/canada_signed.cap")
    ingest_bytes(store, cfg, channels_for(cfg), signed, include_expired=True)
    with TestClient(create_app(store, cfg)) as client:
        r = client.get("/notices/1.cap")
    assert r.status_code == 200 and r.content == signed


@pytest.mark.parametrize(
    ("params", "expect"),
    [
        ({"source": "amber"}, {"amber"}),
        ({"source": ["news", "github"]}, {"news", "github"}),
        ({"severity": "severe"}, None),  # checked below
        ({"category": "Transport"}, {"bart"}),
        ({"area": "MTZ014"}, {"nws"}),
        ({"area": "UGC=MTZ014"}, {"nws"}),
        ({"lang": "en"}, {"nws", "amber", "news", "bart", "github"}),
        ({"status": "actual", "source": "nws"}, {"nws"}),
    ],
)
def test_filters(site: Any, params: dict[str, Any], expect: set[str] | None) -> None:
    client, store, _ = site
    from clarion.store.schema import notices
    from tests.helpers import rows

    by_url = {
        f"http://testserver/notices/{n.thread_id}#v{n.version}": n for n in rows(store, notices)
    }
    parsed = _parsed(client, "/feeds/all.json", **params)
    got = [by_url[e.id] for e in parsed.entries]
    assert got, "the filter matched nothing"
    if expect is not None:
        assert {n.source for n in got} == expect
    if params.get("severity"):
        # Each matches itself, or follows up a story that matched (a Minor cancel of a Severe
        # watch belongs in the feed of severe notices).
        for n in got:
            assert n.severity in ("severe", "extreme") or (
                n.msg_type in ("update", "cancel", "end")
                and any(
                    o.thread_id == n.thread_id and o.id < n.id and o.severity == "severe"
                    for o in by_url.values()
                )
            )
        assert len(got) < len(by_url)


def test_route_and_entity_filters(site: Any) -> None:
    client, store, _ = site
    from clarion.store.schema import notice_terms
    from tests.helpers import rows

    terms = {t.term for t in rows(store, notice_terms)}
    route = sorted(t for t in terms if t.startswith("route:"))[0].removeprefix("route:")
    component = sorted(t for t in terms if t.startswith("entity:component:"))[0]
    assert {e.id for e in _parsed(client, "/feeds/all.atom", route=route).entries}
    entries = _parsed(client, "/feeds/all.atom", entity=component.removeprefix("entity:")).entries
    assert entries and all("/notices/" in e.link for e in entries)
    assert _parsed(client, "/feeds/all.atom", route="no-such-route").entries == []
    bad = client.get("/feeds/all.atom", params={"severity": "apocalyptic"})
    assert bad.status_code == 422 and "severity" in bad.text


def test_per_source_feeds(site: Any) -> None:
    client, *_ = site
    for fmt in ("atom", "rss", "json"):
        parsed = _parsed(client, f"/feeds/source/amber.{fmt}")
        assert [e.title for e in parsed.entries] == ["Amber Alert in Washington D.C."]
    assert _parsed(client, "/feeds/source/nws/cap.atom").entries
    assert client.get("/feeds/source/nope.atom").status_code == 404


def test_conditional_requests(site: Any) -> None:
    client, store, cfg = site
    r = client.get("/feeds/all.rss")
    etag, last = r.headers["etag"], r.headers["last-modified"]
    assert "max-age=60" in r.headers["cache-control"] and "public" in r.headers["cache-control"]
    assert client.get("/feeds/all.rss", headers={"If-None-Match": etag}).status_code == 304
    assert client.get("/feeds/all.rss", headers={"If-Modified-Since": last}).status_code == 304
    earlier = format_datetime(NOW - timedelta(days=1), usegmt=True)
    assert client.get("/feeds/all.rss", headers={"If-Modified-Since": earlier}).status_code == 200
    # Each format and each filter has its own ETag; a new notice changes them.
    assert client.get("/feeds/all.atom").headers["etag"] != etag
    assert client.get("/feeds/all.rss", params={"source": "nws"}).headers["etag"] != etag
    wcatwc = fixture_bytes("cap/wcatwc-warning.cap")
    ingest_bytes(store, cfg, channels_for(cfg), wcatwc, now=NOW + timedelta(hours=1))
    again = client.get("/feeds/all.rss", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["etag"] != etag
    cap = client.get("/notices/1/v1.cap")
    cached = client.get("/notices/1/v1.cap", headers={"If-None-Match": cap.headers["etag"]})
    assert cached.status_code == 304


def test_feeds_name_the_hub_and_the_hub_is_told_of_new_notices(store: Store) -> None:
    with FakeHub() as hub:
        cfg = config(
            SOURCES
            + f"""
[clarion]
public_url = "https://alerts.example.org"
websub_hub = "{hub.url}"
"""
        )
        chans = channels_for(cfg)
        ingest_bytes(store, cfg, chans, demo_cap(0))
        assert hub.pinged.wait(10)
        [urls] = hub.published
        assert "https://alerts.example.org/feeds/all.atom" in urls
        assert "https://alerts.example.org/feeds/source/nws.rss" in urls
        with TestClient(create_app(store, cfg)) as client:
            for fmt in ("atom", "rss", "json"):
                r = client.get(f"/feeds/all.{fmt}")
                assert f'<{hub.url}>; rel="hub"' in r.headers["link"]
                parsed = feedparser.parse(r.content)
                if fmt == "json":
                    assert r.json()["hubs"] == [{"type": "WebSub", "url": hub.url}]
                else:
                    assert any(
                        link.get("rel") == "hub" and link["href"] == hub.url
                        for link in parsed.feed.links
                    )


def test_a_notices_text_is_text_in_every_feed_reader(store: Store) -> None:
    """RSS readers take <description> as HTML: "<b>" and "<script>" in a notice's text are
    shown as written, never as markup. feedparser (a real reader) reads them back as text."""
    from clarion.manual import NoticeIn, new_alert

    cfg = config()
    text = 'Use <b>care</b> & avoid <script>alert("x")</script> near "Elm St."'
    notice = new_alert(cfg, NoticeIn(headline="Road closed", description=text))
    ingest(store, cfg, channels_for(cfg), [notice], source="desk")
    with TestClient(create_app(store, cfg)) as c:
        rss = _parsed(c, "/feeds/all.rss")
        atom = _parsed(c, "/feeds/all.atom")
    [item] = rss.entries
    # RSS: HTML, the markup escaped, so it renders as the words written.
    assert item.summary_detail.type == "text/html"
    assert "<b>" not in item.summary and "<script" not in item.summary
    assert "&lt;b&gt;care&lt;/b&gt;" in item.summary
    # Atom says it is text (type="text"): the words as written.
    [entry] = atom.entries
    assert entry.summary_detail.type == "text/plain" and text in entry.summary


def test_a_filtered_feed_carries_every_follow_up_of_a_story_it_holds(store: Store) -> None:
    """The README's own filtered feed held the watch and its update but not its cancellation
    (the Cancel says "Minor"): a reader who filtered never learned it was cancelled."""
    cfg = config()
    chans = channels_for(cfg)
    for i in range(3):  # a flash flood watch: alert, update, cancel
        ingest_bytes(store, cfg, chans, demo_cap(i), now=NOW + timedelta(minutes=i))
    params = {"severity": "severe", "area": "MTZ014"}
    with TestClient(create_app(store, cfg)) as c:
        feed = _parsed(c, "/feeds/all.atom", **params)
        titles = [e.title for e in feed.entries]
        assert len(titles) == 3 and titles[0].startswith("Cancelled")
        api = c.get("/api/v1/notices", params=params).json()["items"]
        assert [v["msg_type"] for v in api[0]["versions"]] == ["alert", "update", "cancel"]
        # A filter that no version of the story ever matched still finds nothing.
        assert _parsed(c, "/feeds/all.atom", severity="extreme").entries == []


def test_every_format_publishes_the_messages_own_time(store: Store) -> None:
    """A 2010 watch read today is from 2010 in every format and on the page: Atom's `updated`
    was the time Clarion received it, while RSS said 2010."""
    cfg = config()
    ingest_bytes(store, cfg, channels_for(cfg), demo_cap(0), now=NOW + timedelta(days=5000))
    with TestClient(create_app(store, cfg)) as c:
        atom = _parsed(c, "/feeds/all.atom")
        rss = _parsed(c, "/feeds/all.rss")
        page = c.get("/").text
    [a], [r] = atom.entries, rss.entries
    assert a.updated_parsed[:3] == (2010, 8, 30) and r.published_parsed[:3] == (2010, 8, 30)
    assert "2010-08-30" in page and str((NOW + timedelta(days=5000)).year) not in page


def test_notices_are_found_by_the_name_of_their_place(store: Store) -> None:
    """`place`: the words of an area's, a line's or a service's name, any case, with or
    without accents; every word must be in it. The page, the feeds and the API take it."""
    from fastapi.testclient import TestClient

    from clarion.store.terms import place_words
    from clarion.web.app import create_app
    from tests.conftest import fixture_bytes
    from tests.helpers import channels_for, config, demo_cap, ingest_bytes

    assert place_words("Saint-Léonard, comté d'Essex") == ["saint", "leonard", "comte", "essex"]
    cfg = config()
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0), include_expired=True)  # Lewis and Clark
    ingest_bytes(store, cfg, chans, fixture_bytes("cap/canada.cap"), include_expired=True)
    with TestClient(create_app(store, cfg)) as client:

        def found(query: str) -> list[str]:
            items = client.get("/feeds/all.json", params={"place": query}).json()["items"]
            return sorted(i["title"].split(" ")[0] for i in items)

        assert len(found("lewis CLARK")) == 1 and found("lewis clark") != found("essex")
        assert found("comté d'Essex") == found("comte essex") == found("Essex") != []
        assert found("Lewis Essex") == []  # every word must be in it
        api = client.get("/api/v1/notices", params={"place": "Rondeau"}).json()
        assert len(api["items"]) == 1
        page = client.get("/", params={"place": "lewis and clark"}).text
        assert 'name="place" value="lewis and clark"' in page  # as the reader typed it
        assert page.count('class="notice"') == 1
