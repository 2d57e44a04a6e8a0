"""What the editors' desk reads: named queries, so that no desk handler writes SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from clarion.store.schema import (
    audit_log,
    deliveries,
    delivery_events,
    notices,
    threads,
)
from clarion.store.schema import channels as channels_t
from clarion.store.schema import drafts as drafts_t
from clarion.store.schema import sources as sources_t


def awaiting_approval(conn: Connection) -> int:
    """Drafts waiting for a second editor."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(drafts_t)
            .where(drafts_t.c.state == "awaiting_approval")
        ).scalar_one()
    )


def audit_actors(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(select(audit_log.c.actor).distinct())]


def live_panel(conn: Connection, stories: int = 12, problems: int = 50) -> dict[str, Any]:
    """The newest stories, each one's newest delivery per channel (`cells`), and the
    deliveries in trouble (waiting to retry, failed, or pending after an error)."""
    recent = list(
        conn.execute(select(threads).order_by(threads.c.updated_at.desc()).limit(stories))
    )
    ids = [t.id for t in recent]
    cells: dict[tuple[int, str], Any] = {}
    if ids:
        for d in conn.execute(
            select(deliveries).where(deliveries.c.thread_id.in_(ids)).order_by(deliveries.c.version)
        ):
            cells[(d.thread_id, d.channel)] = d  # the newest version's wins
    trouble = list(
        conn.execute(
            select(deliveries, threads.c.headline)
            .select_from(deliveries.join(threads, threads.c.id == deliveries.c.thread_id))
            .where(
                (deliveries.c.state.in_(("retry_wait", "failed")))
                | ((deliveries.c.state == "pending") & deliveries.c.error_kind.is_not(None))
            )
            .order_by(deliveries.c.updated_at.desc())
            .limit(problems)
        )
    )
    return {"recent": recent, "cells": cells, "problems": trouble}


def story(conn: Connection, thread_id: int) -> dict[str, Any] | None:
    """A story as the desk shows it: its thread, versions, deliveries, their latest events
    and the drafts that made it; None when there is no such story."""
    t = conn.execute(select(threads).where(threads.c.id == thread_id)).first()
    if t is None:
        return None
    versions = list(
        conn.execute(
            select(
                notices.c.id,
                notices.c.version,
                notices.c.msg_type,
                notices.c.status,
                notices.c.headline,
                notices.c.severity,
                notices.c.received_at,
            )
            .where(notices.c.thread_id == thread_id)
            .order_by(notices.c.version)
        )
    )
    rows = list(
        conn.execute(
            select(deliveries)
            .where(deliveries.c.thread_id == thread_id)
            .order_by(deliveries.c.version)
        )
    )
    events = list(
        conn.execute(
            select(delivery_events)
            .where(delivery_events.c.delivery_id.in_([d.id for d in rows] or [""]))
            .order_by(delivery_events.c.id.desc())
            .limit(100)
        )
    )
    authored = list(
        conn.execute(
            select(drafts_t)
            .where(
                (drafts_t.c.thread_id == thread_id)
                | drafts_t.c.notice_id.in_([v.id for v in versions] or [0])
            )
            .order_by(drafts_t.c.id)
        )
    )
    return {"t": t, "versions": versions, "rows": rows, "events": events, "authored": authored}


def fingerprint(conn: Connection) -> tuple[Any, ...]:
    """What changes whenever anything the desk shows changes; its first item is the newest
    notice id."""
    return (
        conn.execute(select(func.max(notices.c.id))).scalar(),
        conn.execute(select(func.max(delivery_events.c.id))).scalar(),
        conn.execute(select(func.max(audit_log.c.id))).scalar(),
        tuple(conn.execute(select(channels_t.c.name, channels_t.c.state)).all()),
        conn.execute(select(func.max(sources_t.c.last_polled_at))).scalar(),
    )


def notices_after(
    conn: Connection, after: int, limit: int = 20, upto: int | None = None
) -> list[Any]:
    """The newest `limit` notices stored after `after` (and up to `upto`), oldest first (the
    desk lists the last ten arrivals: after a burst, the newest, not the burst's first
    twenty)."""
    where = [notices.c.id > after]
    if upto is not None:
        where.append(notices.c.id <= upto)
    rows = conn.execute(
        select(notices.c.id, notices.c.thread_id, notices.c.headline, notices.c.status)
        .where(*where)
        .order_by(notices.c.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))
