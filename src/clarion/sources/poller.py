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

import httpx
from sqlalchemy import insert, select, update

from clarion.channels.base import Channel
from clarion.config import Config
from clarion.pipeline import IngestResult, ingest
from clarion.sources.base import FetchState, Source, SourceError
from clarion.store import Store
from clarion.store.schema import sources as sources_table

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
    interval = config.sources[source.name].interval
    next_poll = now + timedelta(seconds=interval * random.uniform(0.9, 1.1))
    try:
        polled = source.poll(state, http)
    except SourceError as exc:
        _record_failure(store, source.name, now, str(exc), next_poll)
        log.warning("%s", exc)
        return None
    result = ingest(store, config, channels, polled.notices, source=source.name, now=now)
    with store.write() as conn:
        conn.execute(
            update(sources_table)
            .where(sources_table.c.name == source.name)
            .values(
                etag=polled.state.etag,
                last_modified=polled.state.last_modified,
                cursor=polled.state.cursor,
                last_polled_at=now,
                last_success_at=now,
                consecutive_failures=0,
                next_poll_at=next_poll,
                items_seen=sources_table.c.items_seen + len(polled.notices),
                notices_ingested=sources_table.c.notices_ingested + len(result.stored),
            )
        )
    return result


def _record_failure(
    store: Store, name: str, now: datetime, error: str, next_poll: datetime
) -> None:
    with store.write() as conn:
        row = conn.execute(
            select(sources_table.c.consecutive_failures).where(sources_table.c.name == name)
        ).first()
        failures = (row.consecutive_failures if row else 0) + 1
        # Back off a failing source: up to 8 intervals, so a dead feed is not hammered.
        delay = (next_poll - now) * min(8, 2 ** (failures - 1))
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


def due_sources(store: Store, sources: Mapping[str, Source], now: datetime) -> list[Source]:
    with store.read() as conn:
        rows = {
            r.name: r.next_poll_at
            for r in conn.execute(select(sources_table.c.name, sources_table.c.next_poll_at))
        }
    return [s for name, s in sources.items() if rows.get(name) is None or rows[name] <= now]
