"""Polling: fetch each due source, ingest what it yields, and record its health.

A failed poll (network error, bad payload) records the error in plain words on the source's row
and leaves its fetch state (ETag, cursor) untouched, so the next poll tries again from the same
place; nothing already stored is affected, and other sources carry on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import insert, or_, select, update

from clarion.channels.base import Channel
from clarion.config import Config
from clarion.pipeline import IngestResult, end_branches, ingest_listing, live_branches
from clarion.seen import record_rejections, sort_items
from clarion.sources.base import FetchState, Source, SourceError
from clarion.sources.feed import FeedSourceConfig
from clarion.store import Store
from clarion.store.schema import sources as sources_table
from clarion.websub_subscriber import active_lease, ensure_subscription

log = logging.getLogger(__name__)


def load_state(store: Store, name: str, kind: str) -> FetchState:
    with store.write() as conn:
        row = conn.execute(select(sources_table).where(sources_table.c.name == name)).first()
        if row is None:
            conn.execute(
                insert(sources_table).values(
                    name=name,
                    kind=kind,
                    cursor={},
                    consecutive_failures=0,
                    items_seen=0,
                    notices_ingested=0,
                )
            )
            return FetchState()
        return FetchState(etag=row.etag, last_modified=row.last_modified, cursor=row.cursor or {})


def poll_source(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    source: Source,
    http: httpx.Client,
    now: datetime | None = None,
) -> IngestResult | None:
    """Poll one source once. Returns what was ingested, or None when the poll failed."""
    now = now or datetime.now(UTC)
    state = load_state(store, source.name, source.kind)
    cfg = config.sources[source.name]
    interval = getattr(cfg, "interval", 60.0)
    if isinstance(cfg, FeedSourceConfig) and cfg.websub and active_lease(store, source.name, now):
        interval = max(interval, cfg.websub_poll_interval)  # the hub pushes; polls are a net
    next_poll = now + timedelta(seconds=interval * random.uniform(0.9, 1.1))
    try:
        polled = source.poll(state, http)
    except SourceError as exc:
        _record_failure(store, source.name, now, str(exc), next_poll, exc.retry_after)
        log.warning("%s", exc)
        return None
    except Exception as exc:  # a parser's bug must not turn into a poll a second: back off
        log.exception("source %s: reading its answer failed", source.name)
        _record_failure(
            store, source.name, now, f"source {source.name}: could not be read ({exc!r})", next_poll
        )
        return None
    record_rejections(store, source.name, polled.rejected, now)
    max_age = getattr(cfg, "max_age", None)
    items = polled.notices
    too_old: list[str] = []
    ordered = None
    if getattr(source, "remembers_seen", False):
        ordered = sort_items(
            store,
            source.name,
            items,
            now,
            initial_items=getattr(cfg, "initial_items", 1),
            max_age=max_age,
            on_edit=getattr(cfg, "on_edit", "update"),
        )
        items, too_old = ordered.new, [n.identifier for n in ordered.too_old]
    result, unstorable = ingest_listing(
        store,
        config,
        channels,
        items,
        source=source.name,
        now=now,
        edits=getattr(cfg, "on_edit", "update"),
        max_age=max_age,
        # Seen only with what is stored: a failed ingest leaves its new items new.
        seen=None if ordered is None else ordered.record,
    )
    record_rejections(store, source.name, unstorable, now)
    # What could not be stored is read again at the next poll (an index's entry included).
    state_after = polled.state_retrying({r.item for r in unstorable})
    result.identifiers |= {n.identifier for n in polled.notices}
    result.skipped += [(i, "older than the source's max_age") for i in too_old]
    cursor = dict(state_after.cursor)
    if source.lists_active:
        # Every successful poll counts, a 304 included: "nothing changed" still says that what
        # was missing is still missing. Only messages still live are counted, by their own id:
        # one segment of an NWS product ends while its siblings go on.
        listed = None if polled.not_modified else result.identifiers | polled.rejected_ids
        cursor["absent"], gone = _absences(
            state.cursor.get("absent", {}),
            listed,
            live_branches(store, source.name),
            source.end_after,
        )
        if gone:
            result += end_branches(
                store,
                config,
                channels,
                gone,
                source=source.name,
                now=now,
                reason=f"No longer listed by {source.name}: it has ended.",
            )
    if (
        isinstance(cfg, FeedSourceConfig)
        and cfg.websub
        and config.clarion.public_url
        and polled.websub is not None
    ):
        callback = f"{config.clarion.public_url.rstrip('/')}/websub/{source.name}"
        ensure_subscription(
            store, source.name, polled.websub, callback, http, now, int(cfg.websub_lease)
        )
    with store.write() as conn:
        conn.execute(
            update(sources_table)
            .where(sources_table.c.name == source.name)
            .values(
                etag=state_after.etag,
                last_modified=state_after.last_modified,
                cursor=cursor,
                last_polled_at=now,
                last_success_at=now,
                consecutive_failures=0,
                next_poll_at=next_poll,
                items_seen=sources_table.c.items_seen + len(polled.notices),
                notices_ingested=sources_table.c.notices_ingested + len(result.stored),
            )
        )
    return result


def _absences(
    previous: dict[str, int], listed: set[str] | None, live: dict[str, int], end_after: int
) -> tuple[dict[str, int], list[int]]:
    """Count consecutive polls each live message was missing from (`listed` None: the server
    answered 304, so what was missing last time is missing again); those missing `end_after`
    times in a row have ended. A brief drop-out (one empty answer) ends nothing."""
    counts: dict[str, int] = {}
    gone = []
    for ident, notice_id in live.items():
        missing = ident in previous if listed is None else ident not in listed
        if not missing:
            continue
        n = previous.get(ident, 0) + 1
        if n >= end_after:
            gone.append(notice_id)
        else:
            counts[ident] = n
    return counts, gone


def _record_failure(
    store: Store,
    name: str,
    now: datetime,
    error: str,
    next_poll: datetime,
    retry_after: float | None = None,
) -> None:
    with store.write() as conn:
        row = conn.execute(
            select(sources_table.c.consecutive_failures).where(sources_table.c.name == name)
        ).first()
        failures = (row.consecutive_failures if row else 0) + 1
        # Back off a failing source: up to 8 intervals, so a dead feed is not hammered.
        delay = (next_poll - now) * min(8, 2 ** (failures - 1))
        if retry_after is not None:  # a 429/503 that says when: never sooner than that
            delay = max(delay, timedelta(seconds=retry_after))
        conn.execute(
            update(sources_table)
            .where(sources_table.c.name == name)
            .values(
                last_polled_at=now,
                last_error=error,
                last_error_at=now,
                consecutive_failures=failures,
                next_poll_at=now + delay,
            )
        )


def claim_source(
    store: Store, source: Source, worker: str, now: datetime, seconds: float = 300.0
) -> bool:
    """Take the source's lease if it is due and nobody holds it (or theirs ran out): one
    conditional UPDATE, so of many workers on many hosts exactly one wins. A worker that dies
    mid-poll loses the lease when it expires; the others then take the source over."""
    load_state(store, source.name, source.kind)  # the row exists before anyone competes
    t = sources_table
    with store.write() as conn:
        res = conn.execute(
            update(t)
            .where(
                t.c.name == source.name,
                or_(t.c.next_poll_at.is_(None), t.c.next_poll_at <= now),
                or_(
                    t.c.lease_owner.is_(None),
                    t.c.lease_expires_at < now,
                    t.c.lease_owner == worker,
                ),
            )
            .values(lease_owner=worker, lease_expires_at=now + timedelta(seconds=seconds))
        )
        return res.rowcount == 1


def release_source(store: Store, name: str, worker: str) -> None:
    with store.write() as conn:
        conn.execute(
            update(sources_table)
            .where(sources_table.c.name == name, sources_table.c.lease_owner == worker)
            .values(lease_owner=None, lease_expires_at=None)
        )


def due_sources(store: Store, sources: Mapping[str, Source], now: datetime) -> list[Source]:
    with store.read() as conn:
        rows = {
            r.name: r.next_poll_at
            for r in conn.execute(select(sources_table.c.name, sources_table.c.next_poll_at))
        }
    return [s for name, s in sources.items() if rows.get(name) is None or rows[name] <= now]


class HostPacer:
    """Per-host politeness: at least `gap` seconds between polls of sources on one host.

    Pure arithmetic on the times it is given; the poll loop waits for what `delay` returns.
    """

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.last: dict[str, float] = {}

    @staticmethod
    def host(url: str) -> str:
        return urlsplit(url).netloc.lower()

    def delay(self, url: str, now: float) -> float:
        last = self.last.get(self.host(url))
        return 0.0 if last is None else max(0.0, last + self.gap - now)

    def mark(self, url: str, now: float) -> None:
        self.last[self.host(url)] = now
