"""One read model of what runs: each source's health, latency and rejected items, and each
channel's state, queue and use against its caps, used by
`clarion sources`, `clarion status`, the desk, the REST API and `/metrics` alike (they used to
compute it each their own way)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from clarion.config import Config
from clarion.store import Store
from clarion.store.schema import notices, rejected_items
from clarion.store.schema import sources as sources_table

_URL = re.compile(r"https?://\S+")


def public_error(error: str | None) -> str | None:
    """A source's error as the public may read it: without the address it fetched (a feed's
    URL can carry an API key in its query)."""
    return _URL.sub("(its address)", error) if error else None


@dataclass(frozen=True)
class SourceHealth:
    name: str
    kind: str
    state: str  # never polled | ok | failing
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    items_seen: int
    notices_ingested: int
    latency_p50: float | None  # seconds from the notice's own sent time to its ingest
    latency_max: float | None
    rejected: list[Any] = field(default_factory=list)  # rejected_items rows, newest first
    enabled: bool = True
    last_polled_at: datetime | None = None

    @property
    def failing(self) -> bool:
        return self.consecutive_failures > 0


def source_statuses(store: Store, config: Config, sample: int = 100) -> list[SourceHealth]:
    """Each configured source's health, and its latency over its last `sample` notices."""
    out = []
    with store.read() as conn:
        states = {r.name: r for r in conn.execute(select(sources_table))}
        for name, cfg in config.sources.items():
            rows = conn.execute(
                select(notices.c.sent, notices.c.received_at, notices.c.data)
                .where(notices.c.source == name)
                .order_by(notices.c.id.desc())
                .limit(sample)
            ).all()
            lat = sorted(
                (r.received_at - r.sent).total_seconds()
                for r in rows
                if not r.data.get("sent_estimated") and r.data.get("msg_type") != "end"
            )
            rejected = conn.execute(
                select(rejected_items)
                .where(rejected_items.c.source == name)
                .order_by(rejected_items.c.last_at.desc())
                .limit(20)
            ).all()
            row = states.get(name)
            if row is None:
                state = "never polled"
            else:
                state = "failing" if row.consecutive_failures else "ok"
            out.append(
                SourceHealth(
                    name=name,
                    kind=cfg.kind,
                    state=state,
                    last_success_at=row.last_success_at if row else None,
                    last_error=row.last_error if row else None,
                    consecutive_failures=row.consecutive_failures if row else 0,
                    items_seen=row.items_seen if row else 0,
                    notices_ingested=row.notices_ingested if row else 0,
                    latency_p50=lat[len(lat) // 2] if lat else None,
                    latency_max=lat[-1] if lat else None,
                    rejected=list(rejected),
                    enabled=cfg.enabled,
                    last_polled_at=row.last_polled_at if row else None,
                )
            )
    return out


@dataclass(frozen=True)
class ChannelHealth:
    """One channel as every view shows it: its state, its queue, its use against its caps."""

    name: str
    kind: str
    enabled: bool
    state: str  # active | needs_reauth | disabled | not started
    state_reason: str | None
    queue: dict[str, int]  # deliveries by state
    posts_today: int
    posts_this_month: int
    spend_this_month: float
    daily_cap: int | None  # the config's, else the platform's own (X's legacy plan)
    monthly_cap: int | None
    monthly_budget: float | None
    statuses: list[str]
    sent_count: int = 0  # every post since the channel started
    failed_count: int = 0
    last_sent_at: datetime | None = None

    @property
    def waiting(self) -> int:
        """Deliveries not yet done (pending, retrying, being sent)."""
        from clarion.delivery.outbox import ACTIVE

        return sum(n for state, n in self.queue.items() if state in ACTIVE)


def channel_statuses(store: Store, config: Config, now: datetime) -> list[ChannelHealth]:
    """Each configured channel's state, queue and use this day and month (UTC), in three
    queries whatever the number of channels."""
    from sqlalchemy import and_, case, func

    from clarion.delivery.outbox import period_starts
    from clarion.store.schema import channels as channels_table
    from clarion.store.schema import deliveries as d

    day, _, month, _ = period_starts(now)
    sent = d.c.state == "sent"
    with store.read() as conn:
        rows = {r.name: r for r in conn.execute(select(channels_table))}
        queue: dict[str, dict[str, int]] = {}
        for ch, st, n in conn.execute(
            select(d.c.channel, d.c.state, func.count()).group_by(d.c.channel, d.c.state)
        ):
            queue.setdefault(ch, {})[st] = int(n)
        use = {
            r.channel: r
            for r in conn.execute(
                select(
                    d.c.channel,
                    func.sum(case((d.c.sent_at >= day, 1), else_=0)).label("today"),
                    func.count().label("month"),
                    func.coalesce(func.sum(d.c.cost), 0.0).label("spend"),
                )
                .where(and_(sent, d.c.sent_at >= month))
                .group_by(d.c.channel)
            )
        }
    out = []
    for name, cfg in config.channels.items():
        row, u = rows.get(name), use.get(name)
        state = row.state if row is not None else "not started"
        if not cfg.enabled:
            state = "disabled"
        out.append(
            ChannelHealth(
                name=name,
                kind=cfg.kind,
                enabled=cfg.enabled,
                state=state,
                state_reason=row.state_reason if row is not None else None,
                queue=queue.get(name, {}),
                posts_today=int(u.today or 0) if u else 0,
                posts_this_month=int(u.month or 0) if u else 0,
                spend_this_month=float(u.spend or 0.0) if u else 0.0,
                daily_cap=cfg.daily_cap if cfg.daily_cap is not None else cfg.default_daily_cap(),
                monthly_cap=cfg.monthly_cap,
                monthly_budget=cfg.monthly_budget,
                statuses=[s.value for s in cfg.statuses],
                sent_count=int(row.sent_count or 0) if row is not None else 0,
                failed_count=int(row.failed_count or 0) if row is not None else 0,
                last_sent_at=row.last_sent_at if row is not None else None,
            )
        )
    return out
