"""Feeds of notices: Atom, RSS 2.0, JSON Feed 1.1, and an Atom index of CAP 1.2 documents.
Pure: items in, bytes out (lxml builds the XML, so escaping is right).

Each version of a notice is one entry (`…/notices/{thread}#v{n}`), so an update reaches a
reader as a new entry beside the alert it updates, and a cancellation too.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from lxml import etree

ATOM = "http://www.w3.org/2005/Atom"
DC = "http://purl.org/dc/elements/1.1/"
CAP_MEDIA_TYPE = "application/cap+xml"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FeedMeta:
    title: str
    base_url: str
    self_url: str
    html_url: str
    hub: str | None = None
    description: str = "Public notices, as they are published."


@dataclass(frozen=True)
class Item:
    id: str
    url: str
    title: str
    published: datetime
    updated: datetime
    author: str
    summary: str
    language: str | None
    cap_url: str
    categories: list[str] = field(default_factory=list)


def item_from_row(row: Any, base_url: str) -> Item:
    """`row`: a notice (id, thread_id, version, msg_type, headline, received_at, data)."""
    data = row.data
    info = (data.get("infos") or [{}])[0]
    prefix = {"update": "Update: ", "cancel": "Cancelled: ", "end": "Ended: "}.get(row.msg_type, "")
    status = data.get("status", "actual")
    if status != "actual":
        prefix = f"[{status.upper()}] " + prefix
    parts = [p for p in (info.get("description"), info.get("instruction"), data.get("note")) if p]
    return Item(
        id=f"{base_url}/notices/{row.thread_id}#v{row.version}",
        url=f"{base_url}/notices/{row.thread_id}#v{row.version}",
        title=prefix + row.headline,
        published=datetime.fromisoformat(data["sent"]),
        # The message's own time, in every format (Atom's `updated` was when Clarion received
        # it, so a 2010 alert read today looked new in one format and old in another).
        updated=datetime.fromisoformat(data["sent"]),
        author=info.get("sender_name") or data.get("sender") or "unknown",
        summary="\n\n".join(parts),
        language=info.get("language"),
        cap_url=f"{base_url}/notices/{row.thread_id}/v{row.version}.cap",
        categories=list(info.get("categories") or []),
    )


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _updated(items: Sequence[Item]) -> datetime:
    return max((i.updated for i in items), default=EPOCH)


def _xml(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> Any:
    el = etree.SubElement(parent, tag, **attrs)
    if text is not None:
        el.text = text
    return el


def _atom_head(meta: FeedMeta, items: Sequence[Item]) -> etree._Element:
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})
    a = f"{{{ATOM}}}"
    _sub(feed, a + "id", meta.self_url)
    _sub(feed, a + "title", meta.title)
    _sub(feed, a + "subtitle", meta.description)
    _sub(feed, a + "updated", _iso(_updated(items)))
    _sub(feed, a + "link", rel="self", href=meta.self_url, type="application/atom+xml")
    _sub(feed, a + "link", rel="alternate", href=meta.html_url, type="text/html")
    if meta.hub:
        _sub(feed, a + "link", rel="hub", href=meta.hub)
    _sub(feed, a + "generator", "Clarion")
    return feed


def atom_feed(meta: FeedMeta, items: Sequence[Item]) -> bytes:
    feed = _atom_head(meta, items)
    a = f"{{{ATOM}}}"
    for it in items:
        entry = _sub(feed, a + "entry")
        _sub(entry, a + "id", it.id)
        _sub(entry, a + "title", it.title)
        _sub(entry, a + "updated", _iso(it.updated))
        _sub(entry, a + "published", _iso(it.published))
        _sub(entry, a + "link", rel="alternate", href=it.url, type="text/html")
        _sub(entry, a + "link", rel="alternate", href=it.cap_url, type=CAP_MEDIA_TYPE)
        author = _sub(entry, a + "author")
        _sub(author, a + "name", it.author)
        for cat in it.categories:
            _sub(entry, a + "category", term=cat)
        if it.summary:
            summary = _sub(entry, a + "summary", it.summary, type="text")
            if it.language:
                summary.set("{http://www.w3.org/XML/1998/namespace}lang", it.language)
    return _xml(feed)


def cap_index(meta: FeedMeta, items: Sequence[Item]) -> bytes:
    """An Atom feed whose entries are CAP documents (as NWS, NAADS and IPAWS publish them):
    each entry's `link rel=alternate type=application/cap+xml` is the CAP 1.2 document."""
    feed = _atom_head(meta, items)
    a = f"{{{ATOM}}}"
    for it in items:
        entry = _sub(feed, a + "entry")
        _sub(entry, a + "id", it.cap_url)
        _sub(entry, a + "title", it.title)
        _sub(entry, a + "updated", _iso(it.updated))
        _sub(entry, a + "published", _iso(it.published))
        _sub(entry, a + "link", rel="alternate", href=it.cap_url, type=CAP_MEDIA_TYPE)
        _sub(entry, a + "link", rel="related", href=it.url, type="text/html")
        author = _sub(entry, a + "author")
        _sub(author, a + "name", it.author)
        if it.summary:
            _sub(entry, a + "summary", it.summary, type="text")
    return _xml(feed)


def rss_feed(meta: FeedMeta, items: Sequence[Item]) -> bytes:
    rss = etree.Element("rss", version="2.0", nsmap={"atom": ATOM, "dc": DC})
    ch = _sub(rss, "channel")
    _sub(ch, "title", meta.title)
    _sub(ch, "link", meta.html_url)
    _sub(ch, "description", meta.description)
    _sub(ch, f"{{{ATOM}}}link", rel="self", href=meta.self_url, type="application/rss+xml")
    if meta.hub:
        _sub(ch, f"{{{ATOM}}}link", rel="hub", href=meta.hub)
    _sub(ch, "lastBuildDate", format_datetime(_updated(items).astimezone(UTC), usegmt=True))
    _sub(ch, "generator", "Clarion")
    for it in items:
        item = _sub(ch, "item")
        _sub(item, "title", it.title)
        _sub(item, "link", it.url)
        _sub(item, "guid", it.id, isPermaLink="false")
        _sub(item, "pubDate", format_datetime(it.published.astimezone(UTC), usegmt=True))
        _sub(item, f"{{{DC}}}creator", it.author)
        for cat in it.categories:
            _sub(item, "category", cat)
        if it.summary:
            # RSS readers take <description> as HTML: a notice's text is escaped as HTML, so
            # that "<b>" in it is shown, never taken as markup (or script).
            _sub(item, "description", html.escape(it.summary).replace("\n", "<br>\n"))
        _sub(item, "enclosure", url=it.cap_url, type=CAP_MEDIA_TYPE, length="0")
    return _xml(rss)


def json_feed(meta: FeedMeta, items: Sequence[Item]) -> bytes:
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)."""
    doc: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": meta.title,
        "home_page_url": meta.html_url,
        "feed_url": meta.self_url,
        "description": meta.description,
        "items": [],
    }
    if meta.hub:
        doc["hubs"] = [{"type": "WebSub", "url": meta.hub}]
    for it in items:
        entry: dict[str, Any] = {
            "id": it.id,
            "url": it.url,
            "title": it.title,
            "content_text": it.summary or it.title,
            "date_published": _iso(it.published),
            "date_modified": _iso(it.updated),
            "authors": [{"name": it.author}],
            "attachments": [{"url": it.cap_url, "mime_type": CAP_MEDIA_TYPE}],
        }
        if it.categories:
            entry["tags"] = it.categories
        if it.language:
            entry["language"] = it.language
        doc["items"].append(entry)
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()


FORMATS = {
    "atom": (atom_feed, "application/atom+xml; charset=utf-8"),
    "rss": (rss_feed, "application/rss+xml; charset=utf-8"),
    "json": (json_feed, "application/feed+json; charset=utf-8"),
    "cap": (cap_index, "application/atom+xml; charset=utf-8"),
}
