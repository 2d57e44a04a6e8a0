"""Atom feed of notices. Pure: rows in, bytes out (lxml builds it, so escaping is right)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lxml import etree

ATOM = "http://www.w3.org/2005/Atom"


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def atom_feed(*, title: str, base_url: str, self_url: str, rows: Sequence[Any]) -> bytes:
    """`rows`: notices (id, thread_id, version, msg_type, headline, received_at, data)."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})

    def sub(
        parent: etree._Element, tag: str, text: str | None = None, **attrs: str
    ) -> etree._Element:
        el = etree.SubElement(parent, f"{{{ATOM}}}{tag}", **attrs)
        if text is not None:
            el.text = text
        return el

    sub(feed, "id", f"{base_url}/feeds/all.atom")
    sub(feed, "title", title)
    updated = max((r.received_at for r in rows), default=datetime(2000, 1, 1, tzinfo=UTC))
    sub(feed, "updated", _iso(updated))
    sub(feed, "link", rel="self", href=self_url, type="application/atom+xml")
    sub(feed, "link", rel="alternate", href=f"{base_url}/", type="text/html")
    sub(feed, "generator", "Clarion")
    for r in rows:
        data = r.data
        info = (data.get("infos") or [{}])[0]
        entry = sub(feed, "entry")
        sub(entry, "id", f"{base_url}/notices/{r.thread_id}#v{r.version}")
        prefix = {"update": "Update: ", "cancel": "Cancelled: "}.get(r.msg_type, "")
        sub(entry, "title", prefix + r.headline)
        sub(entry, "updated", _iso(r.received_at))
        sub(entry, "published", _iso(datetime.fromisoformat(data["sent"])))
        sub(
            entry,
            "link",
            rel="alternate",
            href=f"{base_url}/notices/{r.thread_id}",
            type="text/html",
        )
        author = sub(entry, "author")
        sub(author, "name", info.get("sender_name") or data.get("sender") or "unknown")
        for cat in info.get("categories") or []:
            sub(entry, "category", term=cat)
        parts = [p for p in (info.get("description"), info.get("instruction")) if p]
        if parts:
            sub(entry, "summary", "\n\n".join(parts), type="text")
    return bytes(etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True))
