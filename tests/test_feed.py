"""RSS, Atom and JSON Feed parsing on real feeds."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from clarion.model import MsgType
from clarion.sources.base import SourceError
from clarion.sources.feed import html_to_text, parse_feed
from tests.conftest import fixture_bytes
from tests.golden import check_golden, notice_record


@pytest.mark.parametrize("name", ["wordpress-org-news.rss", "onefoottsunami.atom"])
def test_golden(name: str) -> None:
    notices = parse_feed(fixture_bytes(f"feeds/{name}"), what=name)
    check_golden(f"feeds/{name}", [notice_record(n) for n in notices])


def test_wordpress_rss_items() -> None:
    notices = parse_feed(fixture_bytes("feeds/wordpress-org-news.rss"))
    assert len(notices) == 10
    first = notices[0]
    assert first.identifier == "https://wordpress.org/news/?p=9444"  # guid, isPermaLink=false
    assert first.thread_key == "feed:https://wordpress.org/news/?p=9444"
    assert first.headline == "Introducing Learn WordPress"
    assert first.link == "https://wordpress.org/news/2020/12/introducing-learn-wordpress/"
    assert first.sent == datetime(2020, 12, 15, 13, 0, tzinfo=UTC)
    assert first.sender == "Hugh Lashbrooke"  # dc:creator
    assert first.msg_type is MsgType.ALERT
    assert "learnwordpress" in first.infos[0].categories
    # HTML and entities become readable text: no tags, no &#8211;
    for n in notices:
        desc = n.infos[0].description or ""
        assert "<" not in desc and "&#" not in desc and "&nbsp;" not in desc
    assert len({n.identifier for n in notices}) == 10


def test_wordpress_atom_with_crlf_and_empty_lang() -> None:
    notices = parse_feed(fixture_bytes("feeds/onefoottsunami.atom"))
    assert len(notices) == 25
    assert notices[0].identifier == "http://onefoottsunami.com/?p=14863"
    assert notices[0].headline == "Link: Pillow Fight Leaves 24 Concussed"


JSON_FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "Transit Agency News",
    "home_page_url": "https://transit.example/",
    "items": [
        {
            "id": "2026-11-01-a",
            "url": "https://transit.example/news/a",
            "title": "Line 4 detour this weekend",
            "content_html": "<p>Buses on <b>Line 4</b> detour via Elm St.</p>",
            "date_published": "2026-11-01T08:00:00-05:00",
            "tags": ["detour"],
        },
        {
            "id": "2026-11-02-b",
            "content_text": "Fares unchanged in 2027.",
            "date_published": "2026-11-02T09:00:00Z",
        },
    ],
}


def test_json_feed() -> None:
    notices = parse_feed(json.dumps(JSON_FEED).encode(), "application/feed+json")
    assert [n.identifier for n in notices] == ["2026-11-01-a", "2026-11-02-b"]
    assert notices[0].infos[0].description == "Buses on Line 4 detour via Elm St."
    assert notices[0].sent == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
    assert notices[0].infos[0].categories == ["detour"]
    assert notices[1].headline == "2026-11-02-b" or notices[1].infos[0].description


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (b"<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html", "HTML page"),
        (b"<rss version='2.0'><channel><item><title>x", "application/rss+xml", "not well-formed"),
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"title": "no id"}]}',
            "application/json",
            "has no 'id'",
        ),
        (b'{"hello": 1}', "application/json", "not a JSON Feed"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "application/xml", "not well-formed|not XML"),
        (
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            "application/xml",
            "not an RSS or Atom feed",
        ),
    ],
)
def test_bad_feeds_are_clear_errors(body: bytes, ctype: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_feed(body, ctype, what="source blog")


def test_html_to_text_keeps_paragraphs() -> None:
    assert (
        html_to_text("<p>One</p><p>Two &amp; three</p><script>x()</script>") == "One\nTwo & three"
    )
    assert html_to_text("   ") is None


def test_relative_links_are_resolved_against_xml_base_and_the_feeds_address() -> None:
    """A relative link (`/news/1`, `posts/2`) was dropped: only absolute http(s) links are
    kept. It is resolved against `xml:base` where the feed sets one, else the address it was
    fetched from, in RSS, Atom and JSON Feed alike."""
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<link>https://water.example.gov/</link>"
        b"<item><title>Boil notice</title><guid>n1</guid><link>/news/1</link></item>"
        b"</channel></rss>"
    )
    [item] = parse_feed(rss, base_url="https://water.example.gov/feeds/news.rss")
    assert item.link == "https://water.example.gov/news/1"
    assert item.identifier == "n1"  # an id stays as written: a changed id is a new item
    atom = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
        b'xml:base="https://water.example.gov/blog/"><title>T</title><id>f</id>'
        b"<updated>2024-01-01T00:00:00Z</updated><entry><id>e1</id><title>Main break</title>"
        b'<link href="posts/2"/><updated>2024-01-01T00:00:00Z</updated></entry></feed>'
    )
    [entry] = parse_feed(atom, base_url="https://elsewhere.example/atom.xml")
    assert entry.link == "https://water.example.gov/blog/posts/2"  # xml:base wins
    jf = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "T",
            "home_page_url": "https://water.example.gov/",
            "items": [{"id": "j1", "url": "/alerts/3", "content_text": "Flushing hydrants"}],
        }
    ).encode()
    [jitem] = parse_feed(jf, "application/feed+json")
    assert jitem.link == "https://water.example.gov/alerts/3"
    [bare] = parse_feed(rss)  # no address known: a relative link is still left out
    assert bare.link is None


def test_the_http_charset_is_the_feeds_when_the_document_names_none() -> None:
    """A Latin-1 feed without an `encoding` in its declaration, served as
    `charset=ISO-8859-1`, was read as broken UTF-8 (RFC 7303: the HTTP charset is the
    document's). A document that names its own encoding keeps it."""
    rss = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Météo</title>'
        "<link>https://meteo.example/</link>"
        "<item><guid>1</guid><title>Orages forts à Genève</title>"
        "<link>https://meteo.example/1</link></item></channel></rss>"
    )
    [item] = parse_feed(rss.encode("latin-1"), "application/rss+xml; charset=ISO-8859-1")
    assert item.infos[0].headline == "Orages forts à Genève"
    declared = rss.replace('version="1.0"?>', 'version="1.0" encoding="utf-8"?>').encode()
    [same] = parse_feed(declared, "application/rss+xml; charset=ISO-8859-1")
    assert same.infos[0].headline == "Orages forts à Genève"
