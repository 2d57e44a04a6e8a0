"""Rate limits kept in the database, so they hold across every worker and replica.

- `take`: a token from a channel's bucket (the platform's documented write limit), in one
  short transaction; on PostgreSQL the bucket row is locked (`FOR UPDATE`), so two workers on
  two hosts never both take the last token.
- `pause`: the platform answered 429: no worker sends on that channel until the time it gave
  (`claim` skips paused channels: see `delivery.outbox._due_query`).
- `api_hit`: one request in a client's hourly window for the REST API, counted with an upsert.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from clarion.store import Store
from clarion.store.schema import api_usage, rate_buckets

WINDOW = 3600


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _bucket(conn: Connection, channel: str, capacity: float, now: datetime) -> Any:
    conn.execute(
        _insert(conn)(rate_buckets)
        .values(channel=channel, tokens=capacity, refilled_at=now)
        .on_conflict_do_nothing(index_elements=["channel"])
    )
    q = select(rate_buckets).where(rate_buckets.c.channel == channel)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return conn.execute(q).one()


def take(store: Store, channel: str, requests: int, per_seconds: float, now: datetime) -> float:
    """Take a token (returns 0), or return the seconds until one is there (or the pause ends)."""
    capacity = float(requests)
    rate = requests / per_seconds
    with store.write() as conn:
        row = _bucket(conn, channel, capacity, now)
        if row.paused_until is not None and row.paused_until > now:
            return float((row.paused_until - now).total_seconds())
        elapsed = max(0.0, (now - row.refilled_at).total_seconds())
        tokens = min(capacity, row.tokens + elapsed * rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        conn.execute(
            update(rate_buckets)
            .where(rate_buckets.c.channel == channel)
            .values(tokens=tokens, refilled_at=max(now, row.refilled_at))
        )
        return wait


def pause(store: Store, channel: str, until: datetime, now: datetime) -> None:
    """No worker sends on `channel` before `until` (a later pause already set stands)."""
    with store.write() as conn:
        row = _bucket(conn, channel, 1.0, now)
        if row.paused_until is None or row.paused_until < until:
            conn.execute(
                update(rate_buckets)
                .where(rate_buckets.c.channel == channel)
                .values(paused_until=until)
            )


def api_hit(store: Store, who: str, limit: int, now: float) -> tuple[bool, int, float]:
    """Count a request in `who`'s clock-hour window: (allowed, remaining, seconds to reset)."""
    start = int(now // WINDOW) * WINDOW
    reset = start + WINDOW - now
    with store.write() as conn:
        ins = _insert(conn)(api_usage).values(who=who[:160], window_start=start, count=1)
        used = conn.execute(
            ins.on_conflict_do_update(
                index_elements=["who", "window_start"],
                set_={"count": api_usage.c.count + 1},
            ).returning(api_usage.c.count)
        ).scalar_one()
        if used == 1:  # a new window: forget the finished ones (of everyone)
            conn.execute(delete(api_usage).where(api_usage.c.window_start < start - WINDOW))
    if used > limit:
        return False, 0, reset
    return True, max(0, limit - used), reset
