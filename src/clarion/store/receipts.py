"""Push receipts: which signed webhook deliveries (by their id, per source) were taken in, so
that a sender's retry of one already ingested is answered "duplicate"."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
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


# How long a receipt is kept: far past any sender's retries (Standard Webhooks senders give up
# within days), so that the table does not grow with every push for as long as Clarion runs.
# A retry older than this is ingested again, and its content is found stored: nothing is
# posted twice.
KEEP = timedelta(days=30)


def record(store: Store, source: str, webhook_id: str, now: datetime) -> None:
    """Remember a delivery taken in (a second record of the same one, raced in, is a no-op:
    ingest already deduplicated its content), and forget receipts older than `KEEP` (an index
    range: nothing to read when there are none)."""
    try:
        with store.write() as conn:
            conn.execute(delete(push_receipts).where(push_receipts.c.received_at < now - KEEP))
            conn.execute(
                insert(push_receipts).values(webhook_id=webhook_id, source=source, received_at=now)
            )
    except IntegrityError:
        pass
