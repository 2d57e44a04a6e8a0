"""Push receipts: which signed webhook deliveries (by their id, per source) were taken in, so
that a sender's retry of one already ingested is answered "duplicate"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from clarion.store import Store
from clarion.store.schema import push_receipts


def seen(store: Store, source: str, webhook_id: str) -> bool:
    with store.read() as conn:
        row = conn.execute(
            select(push_receipts.c.webhook_id).where(
                push_receipts.c.source == source, push_receipts.c.webhook_id == webhook_id
            )
        ).first()
    return row is not None


def record(store: Store, source: str, webhook_id: str, now: datetime) -> None:
    """Remember a delivery taken in (a second record of the same one, raced in, is a no-op:
    ingest already deduplicated its content)."""
    try:
        with store.write() as conn:
            conn.execute(
                insert(push_receipts).values(webhook_id=webhook_id, source=source, received_at=now)
            )
    except IntegrityError:
        pass
