"""Seen is forever: what a source has listed once is never new again.

A feed lists its newest items, and which items it lists moves over time (a post falls off the
end, is edited, comes back after a CDN hiccup, the whole archive is served again). What is new
is therefore decided against every item the source ever listed, posted or not, kept in
`seen_items` with the fingerprint of what it said:

- at a source's first poll every listed item is recorded as seen, and only the newest
  `initial_items` go on (adding a blog does not flood every channel with its archive);
- afterwards an item never seen before is new, unless it is older than `max_age`;
- an item seen before that says the same is dropped; one that says something else (an edit)
  goes on when `on_edit = "update"`, and is only recorded when `on_edit = "ignore"`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from clarion.model import Notice
from clarion.sources.base import Rejected
from clarion.store import Store
from clarion.store.schema import rejected_items, seen_items

log = logging.getLogger(__name__)


@dataclass
class Sorted:
    """What a poll's items are, and (`record`) what it saw, to be written where its new items
    are stored."""

    new: list[Notice] = field(default_factory=list)  # to ingest
    too_old: list[Notice] = field(default_factory=list)  # never seen, older than max_age
    archived: int = 0  # recorded at the first poll, not published
    source: str = ""
    now: datetime | None = None
    unseen: dict[str, str] = field(default_factory=dict)  # item → fingerprint, not yet stored
    changed: dict[str, str] = field(default_factory=dict)  # item → its new fingerprint

    def record(self, conn: Connection, rejected: set[str] | frozenset[str] = frozenset()) -> None:
        """Record the poll's items as seen, in the transaction that stores its new items
        (`ingest_listing(seen=…)`). Recorded in a transaction of its own, before them, a failed or
        killed ingest left new items seen and never stored: a blog post or an alert lost for
        good. Rows another ingest of the source recorded meanwhile are left as they are. The
        `rejected` identifiers (messages that could not be stored) stay unseen: new again."""
        skip = {i[:512] for i in rejected}
        unseen = {i: h for i, h in self.unseen.items() if i not in skip}
        ids = list(unseen)
        stored: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            stored.update(
                conn.execute(
                    select(seen_items.c.item).where(
                        seen_items.c.source == self.source, seen_items.c.item.in_(chunk)
                    )
                ).scalars()
            )
        rows = [
            {"source": self.source, "item": i, "content_hash": h, "first_seen_at": self.now}
            for i, h in unseen.items()
            if i not in stored
        ]
        if rows:
            conn.execute(insert(seen_items), rows)
        for key, h in self.changed.items():
            if key in skip:
                continue
            conn.execute(
                update(seen_items)
                .where(seen_items.c.source == self.source, seen_items.c.item == key)
                .values(content_hash=h)
            )


def sort_items(
    store: Store,
    source: str,
    items: Sequence[Notice],
    now: datetime,
    *,
    initial_items: int,
    max_age: float | None,
    on_edit: str = "update",
) -> Sorted:
    """Sort a poll's items into new, too old and already seen. Nothing is written here: pass
    `seen=sorted.record` to the `ingest_listing` of `sorted.new`, so that they are recorded
    as seen only with them."""
    out = Sorted(source=source, now=now)
    if not items:
        return out
    hashes = {_key(n): n.content_hash() for n in items}
    oldest = now - timedelta(seconds=max_age) if max_age else None
    with store.read() as conn:
        first = (
            conn.execute(
                select(seen_items.c.item).where(seen_items.c.source == source).limit(1)
            ).first()
            is None
        )
        known: dict[str, str] = {}
        ids = list(hashes)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            known.update(
                (r.item, r.content_hash)
                for r in conn.execute(
                    # Not a row-value IN list: SQLite reads the whole table for those.
                    select(seen_items.c.item, seen_items.c.content_hash).where(
                        seen_items.c.source == source, seen_items.c.item.in_(chunk)
                    )
                )
            )
    if first:
        newest = sorted(items, key=lambda n: n.sent, reverse=True)[:initial_items]
        out.new = [n for n in items if n in newest and not _old(n, oldest)]
        out.too_old = [n for n in items if n in newest and _old(n, oldest)]
        out.archived = len(items) - len(out.new) - len(out.too_old)
    else:
        for n in items:
            seen_hash = known.get(_key(n))
            if seen_hash == hashes[_key(n)]:
                continue  # seen, and says the same
            if seen_hash is not None and on_edit == "ignore":
                continue
            if _old(n, oldest):
                if seen_hash is None:
                    out.too_old.append(n)
                continue
            out.new.append(n)
    out.unseen = {i: h for i, h in hashes.items() if i not in known}
    out.changed = {i: h for i, h in hashes.items() if i in known and known[i] != h}
    return out


def record_rejections(store: Store, source: str, rejected: list[Rejected], now: datetime) -> None:
    """Keep each rejected item with its reason (one row per item, counted each time it is
    seen again), for `clarion sources`, the desk and `/metrics`."""
    if not rejected:
        return
    t = rejected_items
    with store.write() as conn:
        for r in {r.item[:512]: r for r in rejected}.values():
            item = r.item[:512]
            done = conn.execute(
                update(t)
                .where(t.c.source == source, t.c.item == item)
                .values(reason=r.reason, detail=r.detail, count=t.c.count + 1, last_at=now)
            )
            if done.rowcount == 0:
                conn.execute(
                    insert(t).values(
                        source=source,
                        item=item,
                        reason=r.reason,
                        detail=r.detail,
                        count=1,
                        first_at=now,
                        last_at=now,
                    )
                )
    for r in rejected:
        log.warning("%s", r.detail)


def _key(n: Notice) -> str:
    return n.identifier[:512]


def _old(n: Notice, oldest: datetime | None) -> bool:
    return oldest is not None and not n.sent_estimated and n.sent < oldest
