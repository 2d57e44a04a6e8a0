"""RSS 2.0, Atom and JSON Feed 1.1: blogs, newsrooms, WordPress.

`parse_feed` is pure. XML feeds go through the hardened XML check first (no DOCTYPE, size cap)
and are then read by feedparser, which copes with the real web's many dialects. feedparser 6.0
does not read JSON Feed, so that small, strict JSON format is read here with the json module.

Each item becomes a Notice whose thread is the item's guid/id (falling back to its link), so an
edited item (same id, new content) becomes an update of the same thread, and a re-fetch of an
unchanged item is recognised by its content hash and ignored.
"""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime
from typing import Any

import feedparser
import httpx
import lxml.html
from lxml import etree

from clarion.model import Info, Notice
from clarion.sources.base import Fetched, FetchState, PolledSource, PollResult, SourceError
from clarion.sources.websub import discover
from clarion.sources.xmlsafe import parse_xml

JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1")


def html_to_text(html: str | None) -> str | None:
    """Readable plain text from an HTML fragment: block elements become line breaks."""
    if not html or not html.strip():
        return None
    if "<" not in html and "&" not in html:
        return " ".join(html.split())
    try:
        doc = lxml.html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):
        return " ".join(html.split())
    for bad in doc.xpath("//script|//style|//iframe|//noscript"):
        bad.drop_tree()
    for block in doc.xpath("//p|//br|//li|//h1|//h2|//h3|//h4|//div|//blockquote|//figure"):
        block.tail = "\n" + (block.tail or "")
    text = doc.text_content()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line) or None


def _item_notice(
    *,
    item_id: str,
    title: str | None,
    summary_html: str | None,
    link: str | None,
    published: datetime | None,
    updated: datetime | None,
    author: str,
    language: str | None,
    tags: list[str],
    original: bytes,
    content_type: str,
) -> Notice:
    sent = published or updated or datetime.now(UTC)
    info = Info(
        language=language or "en",
        categories=tags,
        event=title or "",
        headline=html_to_text(title) if title else None,
        description=html_to_text(summary_html),
        web=link,
        sender_name=author,
    )
    return Notice(
        kind="feed",
        identifier=item_id,
        sender=author,
        sent=sent,
        infos=[info],
        thread_key=f"feed:{item_id}",
        link=link,
        original=original,
        original_content_type=content_type,
    )


def _struct_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(calendar.timegm(value), UTC)


def parse_feed(body: bytes, content_type: str = "", *, what: str = "feed") -> list[Notice]:
    """Parse an RSS, Atom or JSON Feed document into one notice per item."""
    head = body.lstrip()[:1]
    if head == b"{" or "json" in content_type.lower():
        return _parse_json_feed(body, what)
    root = parse_xml(body, what=what)  # refuses DOCTYPEs, HTML pages and oversized input
    parsed = feedparser.parse(
        body, response_headers={"content-type": content_type or "application/xml"}
    )
    if not parsed.version:
        raise SourceError(f"{what}: <{etree.QName(root).localname}> is not an RSS or Atom feed")
    feed = parsed.feed
    author = feed.get("title") or feed.get("link") or "feed"
    language = feed.get("language") or None
    notices = []
    for n, entry in enumerate(parsed.entries, 1):
        item_id = entry.get("id") or entry.get("link")
        if not item_id:
            if not entry.get("title"):
                continue  # an empty <item/>: nothing to publish
            raise SourceError(f"{what}: item {n} has neither an id/guid nor a link")
        content = entry.get("content")
        summary_html = content[0].get("value") if content else entry.get("summary")
        # A short summary reads better on a post than a whole article; prefer it when both exist.
        if entry.get("summary") and content:
            summary_html = entry.get("summary")
        item_xml = _item_original(root, n - 1)
        notices.append(
            _item_notice(
                item_id=item_id,
                title=entry.get("title"),
                summary_html=summary_html,
                link=entry.get("link"),
                published=_struct_time(entry.get("published_parsed")),
                updated=_struct_time(entry.get("updated_parsed")),
                author=entry.get("author") or author,
                language=entry.get("language") or language,
                tags=[t.get("term") for t in entry.get("tags", []) if t.get("term")],
                original=item_xml,
                content_type="application/xml",
            )
        )
    return notices


def _item_original(root: etree._Element, index: int) -> bytes:
    items = [
        el
        for el in root.iter()
        if isinstance(el.tag, str) and etree.QName(el).localname in ("item", "entry")
    ]
    if index < len(items):
        return bytes(etree.tostring(items[index], encoding="UTF-8"))
    return b""


def _parse_json_feed(body: bytes, what: str) -> list[Notice]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") not in JSON_FEED_VERSIONS:
        raise SourceError(f"{what}: JSON, but not a JSON Feed (no jsonfeed.org 'version')")
    items = data.get("items")
    if not isinstance(items, list):
        raise SourceError(f"{what}: JSON Feed has no 'items' list")
    authors = data.get("authors") or (
        [data["author"]] if isinstance(data.get("author"), dict) else []
    )
    feed_author = data.get("title") or (authors[0].get("name") if authors else None) or "feed"
    notices = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or not item.get("id"):
            raise SourceError(f"{what}: item {n} has no 'id'")
        notices.append(
            _item_notice(
                item_id=str(item["id"]),
                title=item.get("title"),
                summary_html=item.get("summary")
                or item.get("content_html")
                or item.get("content_text"),
                link=item.get("url"),
                published=_json_time(item.get("date_published"), what, n),
                updated=_json_time(item.get("date_modified"), what, n),
                author=feed_author,
                language=item.get("language") or data.get("language"),
                tags=[str(t) for t in item.get("tags", []) if t],
                original=json.dumps(item, ensure_ascii=False).encode(),
                content_type="application/feed+json",
            )
        )
    return notices


def _json_time(value: Any, what: str, n: int) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise SourceError(f"{what}: item {n} date {value!r} is not RFC 3339") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class FeedSource(PolledSource):
    """Polls one RSS/Atom/JSON feed with conditional GET.

    On the very first poll only the newest `initial_items` items are published, so adding a
    blog does not flood every channel with its archive; the rest are stored as already seen.
    """

    kind = "feed"
    accept = (
        "application/atom+xml, application/rss+xml, application/feed+json, "
        "application/xml;q=0.9, */*;q=0.1"
    )

    def __init__(self, name: str, url: str, max_bytes: int, initial_items: int = 1) -> None:
        super().__init__(name, url, max_bytes)
        self.initial_items = initial_items

    def poll(self, state: FetchState, http: httpx.Client) -> PollResult:
        fetched = self.fetch(state, http)
        if not isinstance(fetched, Fetched):
            return PollResult([], fetched.state, not_modified=True)
        notices = parse_feed(fetched.body, fetched.content_type, what=f"source {self.name}")
        # Only after the hardened parse: discovery reads the same bytes with feedparser.
        advertised = discover(
            fetched.body, fetched.content_type, fetched.link_header, fetched.url or self.url
        )
        cursor = dict(fetched.state.cursor)
        if not cursor.get("primed"):
            newest = sorted(notices, key=lambda n: n.sent, reverse=True)[: self.initial_items]
            notices = [n for n in notices if n in newest]
            cursor["primed"] = True
        state = FetchState(fetched.state.etag, fetched.state.last_modified, cursor)
        return PollResult(notices, state, websub=advertised)
