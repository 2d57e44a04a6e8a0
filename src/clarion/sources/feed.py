"""RSS 2.0, Atom and JSON Feed 1.1: blogs, newsrooms, WordPress.

`parse_feed` is pure. XML feeds go through the hardened XML check first (no DOCTYPE, size cap)
and are then read by feedparser, which copes with the real web's many dialects. feedparser 6.0
does not read JSON Feed, so that small, strict JSON format is read here with the json module.

Each item becomes a Notice whose thread is the item's guid/id (falling back to its link), so an
edited item (same id, new content) becomes an update of the same thread, and a re-fetch of an
unchanged item is recognised by its content hash and ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

import feedparser
import httpx
import lxml.html
from lxml import etree
from pydantic import Field

from clarion import safejson
from clarion.configtypes import Duration, SourceConfigBase
from clarion.model import Info, Notice
from clarion.sources.base import (
    ITEM_ERRORS,
    Fetched,
    FetchState,
    PolledSource,
    PollResult,
    Rejected,
    SourceConnector,
    SourceError,
    item_error,
    sane_time,
)
from clarion.sources.websub import discover
from clarion.sources.xmlsafe import parse_xml


class FeedSourceConfig(SourceConfigBase):
    """An RSS, Atom or JSON Feed (WordPress and every blog)."""

    kind: Literal["feed"]
    interval: Duration = 300.0
    initial_items: int = Field(default=1, ge=0)
    on_edit: Literal["update", "ignore"] = "update"  # an edited item: post an update, or not
    websub: bool = True  # subscribe to the hub the feed advertises (needs clarion.public_url)
    websub_lease: Duration = 7 * 86400.0
    websub_poll_interval: Duration = 3600.0  # polling while subscribed: a safety net


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
    for block in doc.xpath("//p|//li|//h1|//h2|//h3|//h4|//div|//blockquote|//figure"):
        block.text = "\n" + (block.text or "")  # a block starts a line, and ends one
    for block in doc.xpath("//p|//br|//li|//h1|//h2|//h3|//h4|//div|//blockquote|//figure"):
        block.tail = "\n" + (block.tail or "")
    text = doc.text_content()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line) or None


# Dates as the real web writes them, besides RFC 822 and ISO 8601: year first only, so that
# 01/02/2020 (January 2 or February 1?) is never guessed. A date without a zone is UTC.
_LOOSE_DATES = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y.%m.%d %H:%M:%S",
)


def read_date(value: Any) -> datetime | None:
    """A feed's date as written, or None when it cannot be read without guessing
    (`clarion.sources.dates`: RFC 822 and RFC 3339 as feeds really write them, a zone read
    only where it names one offset).

    feedparser's own reading is not used: it turns `2020/1/10 14:33:00` into 2020-11-01.
    None means the item takes the time Clarion first saw it; a date is never invented.
    """
    from clarion.sources import dates

    if not isinstance(value, str) or not value.strip():
        return None
    text = " ".join(value.split())
    parsed = dates.read(text)
    if parsed is None:
        for fmt in _LOOSE_DATES:
            try:
                parsed = datetime.strptime(text, fmt).replace(tzinfo=UTC)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    try:
        return sane_time(parsed, "date")
    except SourceError:
        return None


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
    title_is_html: bool = True,
    summary_is_html: bool = True,
) -> Notice:
    sent = published or updated
    headline = (html_to_text(title) if title_is_html else _plain(title)) if title else None
    info = Info(
        language=language or "en",
        categories=tags,
        event=headline or "",
        headline=headline,
        description=html_to_text(summary_html) if summary_is_html else _plain(summary_html),
        web=link,
        sender_name=author,
    )
    return Notice(
        kind="feed",
        identifier=item_id,
        sender=author,
        # An item with no readable date takes the time it was first seen (the store keeps the
        # first; the date is then no part of what the item says, so a re-fetch is no change).
        sent=sent or datetime.now(UTC),
        sent_estimated=sent is None,
        infos=[info],
        thread_key=f"feed:{item_id}",
        link=link,
        original=original,
        original_content_type=content_type,
    )


def _plain(text: str | None) -> str | None:
    """Plain text as given (a format that says "text" means it: `<i>` is three characters)."""
    if not text or not text.strip():
        return None
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines() if line.strip())


def parse_feed(
    body: bytes,
    content_type: str = "",
    *,
    what: str = "feed",
    rejected: list[Rejected] | None = None,
    base_url: str | None = None,
) -> list[Notice]:
    """Parse an RSS, Atom or JSON Feed document into one notice per item.

    Relative links are resolved against `xml:base` and `base_url` (the address the feed was
    fetched from): a link `/news/1` was dropped. With a `rejected` list, an item that cannot be
    read is appended there and the others are read; without one, the first bad item raises."""
    head = body.lstrip()[:1]
    if head == b"{" or "json" in content_type.lower():
        return _parse_json_feed(body, what, rejected, base_url)
    body, content_type = http_charset(body, content_type)
    root = parse_xml(body, what=what)  # refuses DOCTYPEs, HTML pages and oversized input
    # No base handed to feedparser: it would resolve relative guids too, and an item's id
    # must stay what the feed says (a changed id is a new item, posted again). Links alone
    # are resolved, below (feedparser honours xml:base itself).
    headers = {"content-type": content_type or "application/xml"}
    parsed = feedparser.parse(body, response_headers=headers)
    if not parsed.version:
        raise SourceError(f"{what}: <{etree.QName(root).localname}> is not an RSS or Atom feed")
    feed = parsed.feed
    author = feed.get("title") or feed.get("link") or "feed"
    language = feed.get("language") or None
    notices = []
    for n, entry in enumerate(parsed.entries, 1):
        item_id = entry.get("id") or entry.get("link") or content_id(entry)
        if not item_id:
            continue  # an empty <item/>: nothing to publish
        if base_url and isinstance(entry.get("link"), str):
            entry["link"] = _resolved(entry["link"], base_url)
        try:
            notices.append(_rss_item(entry, item_id, author, language, root, n))
        except ITEM_ERRORS as exc:
            error = item_error(exc, f"{what}: item {n}")
            if rejected is None:
                raise error from None
            rejected.append(Rejected(str(item_id), error.reason, str(error)))
    return notices


_CHARSET = re.compile(r";\s*charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)
_DECLARED = re.compile(rb"^(\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=", re.I)


def http_charset(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The feed as UTF-8 when the HTTP answer names its charset and the document does not
    (no byte-order mark, no `encoding` in its declaration): RFC 7303 makes the HTTP charset
    the document's, and libxml2 read such a Latin-1 feed as broken UTF-8. Unchanged
    otherwise, or when the named charset is unknown."""
    m = _CHARSET.search(content_type or "")
    if m is None or body[:2] in (b"\xff\xfe", b"\xfe\xff") or _DECLARED.match(body[:200]):
        return body, content_type
    charset = m.group(1).lower()
    if charset.replace("-", "") in ("utf8", "usascii", "ascii"):
        return body, content_type
    try:
        text = body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return body, content_type
    return text.encode("utf-8"), _CHARSET.sub("; charset=utf-8", content_type, count=1)


def content_id(entry: Any) -> str | None:
    """The id of an item with neither guid nor link (valid RSS 2.0: an item needs only a
    title or a description): the SHA-256 of what it says, so the same item gets the same id
    at every poll and in `clarion parse`, and an edited one is a new item. None for an item
    that says nothing."""
    parts = [str(entry.get(k) or "").strip() for k in ("title", "summary", "published")]
    if not any(parts[:2]):
        return None
    return "urn:sha256:" + hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()


def _rss_item(
    entry: Any, item_id: str, author: str, language: str | None, root: etree._Element, n: int
) -> Notice:
    content = entry.get("content")
    summary_html = content[0].get("value") if content else entry.get("summary")
    # A short summary reads better on a post than a whole article; prefer it when both exist.
    if entry.get("summary") and content:
        summary_html = entry.get("summary")
    return _item_notice(
        item_id=item_id,
        title=entry.get("title"),
        summary_html=summary_html,
        link=entry.get("link"),
        published=read_date(entry.get("published")),
        updated=read_date(entry.get("updated")),
        author=entry.get("author") or author,
        language=entry.get("language") or language,
        tags=[t.get("term") for t in entry.get("tags", []) if t.get("term")],
        original=_item_original(root, n - 1),
        content_type="application/xml",
    )


def _item_original(root: etree._Element, index: int) -> bytes:
    items = [
        el
        for el in root.iter()
        if isinstance(el.tag, str) and etree.QName(el).localname in ("item", "entry")
    ]
    if index < len(items):
        return bytes(etree.tostring(items[index], encoding="UTF-8"))
    return b""


def _parse_json_feed(
    body: bytes, what: str, rejected: list[Rejected] | None, base_url: str | None = None
) -> list[Notice]:
    try:
        data = safejson.loads(
            body, nul="replace", out_of_range="infinity"
        )  # one item's NUL spoils no other
    except safejson.JSONRefused as exc:
        raise SourceError(f"{what}: {exc}") from None
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
            missing = SourceError(f"{what}: item {n} has no 'id'")
            if rejected is None:
                raise missing
            rejected.append(Rejected(f"item {n}", missing.reason, str(missing)))
            continue
        try:
            base = base_url or data.get("feed_url") or data.get("home_page_url")
            notices.append(_json_item(item, feed_author, data.get("language"), base))
        except ITEM_ERRORS as exc:
            error = item_error(exc, f"{what}: item {n}")
            if rejected is None:
                raise error from None
            rejected.append(Rejected(str(item["id"]), error.reason, str(error)))
    return notices


def _json_item(
    item: dict[str, Any], feed_author: str, feed_language: Any, base: Any = None
) -> Notice:
    # JSON Feed 1.1: `title`, `summary` and `content_text` are plain text; only
    # `content_html` is HTML.
    summary, summary_is_html = item.get("summary"), False
    if not isinstance(summary, str) or not summary.strip():
        summary, summary_is_html = item.get("content_html"), True
    if not isinstance(summary, str) or not summary.strip():
        summary, summary_is_html = item.get("content_text"), False
    title = item.get("title")
    return _item_notice(
        item_id=str(item["id"]),
        title=title if isinstance(title, str) else None,
        title_is_html=False,
        summary_html=summary if isinstance(summary, str) else None,
        summary_is_html=summary_is_html,
        link=_resolved(item.get("url"), base),
        published=read_date(item.get("date_published")),
        updated=read_date(item.get("date_modified")),
        author=feed_author,
        language=item.get("language") or feed_language,
        tags=[str(t) for t in item.get("tags", []) if t],
        original=json.dumps(item, ensure_ascii=False).encode(),
        content_type="application/feed+json",
    )


def _resolved(link: Any, base: Any) -> Any:
    """A JSON Feed item's `url` against the feed's own address (JSON Feed has no xml:base)."""
    if isinstance(link, str) and isinstance(base, str) and "://" not in link:
        from urllib.parse import urljoin

        return urljoin(base, link)
    return link


class FeedSource(PolledSource):
    """Polls one RSS/Atom/JSON feed with conditional GET.

    What is new is decided against every item the source ever listed (`clarion.seen`): on the
    very first poll only the newest `initial_items` items are published, so adding a blog does
    not flood every channel with its archive; the rest are remembered as seen, forever.
    """

    kind = "feed"
    accept = (
        "application/atom+xml, application/rss+xml, application/feed+json, "
        "application/xml;q=0.9, */*;q=0.1"
    )
    remembers_seen = True

    def __init__(self, name: str, url: str, max_bytes: int, initial_items: int = 1) -> None:
        super().__init__(name, url, max_bytes)
        self.initial_items = initial_items

    def poll(self, state: FetchState, http: httpx.Client) -> PollResult:
        fetched = self.fetch(state, http)
        if not isinstance(fetched, Fetched):
            return PollResult([], fetched.state, not_modified=True)
        rejected: list[Rejected] = []
        notices = parse_feed(
            fetched.body,
            fetched.content_type,
            what=f"source {self.name}",
            rejected=rejected,
            base_url=fetched.url or self.url,
        )
        # Only after the hardened parse: discovery reads the same bytes with feedparser.
        advertised = discover(
            fetched.body, fetched.content_type, fetched.link_header, fetched.url or self.url
        )
        return PollResult(notices, fetched.state, websub=advertised, rejected=rejected)


CONNECTOR = SourceConnector(
    kind="feed",
    config=FeedSourceConfig,
    parse=lambda body, content_type: parse_feed(body, content_type),
    build=lambda name, cfg: FeedSource(name, cfg.url, cfg.max_bytes, cfg.initial_items),
)
