"""One read model of what runs: each source's health, latency and rejected items, used by
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
