"""WebSub subscriptions of feed sources: when to ask a hub, asking it, and whether a lease is
active. Database and network work, kept out of `clarion.sources` (which stays parsers and
fetches); the pure parts (discovery, signatures, the callback token) are in
`clarion.sources.websub`.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select, update

from clarion.sources.websub import Advertised, callback_token
from clarion.store import Store
from clarion.store.schema import websub

log = logging.getLogger(__name__)


def needs_request(row: Any, advertised: Advertised, now: datetime) -> bool:
    """Subscribe (again) unless an active lease for the same hub and topic has time left."""
    if row is None or row.hub != advertised.hub or row.topic != advertised.topic:
        return True
    if row.state == "requested":  # awaiting the hub's verification; retry after an hour
        return bool(now - row.requested_at > timedelta(hours=1))
    if row.state != "active" or row.lease_expires_at is None:
        return bool(now - row.requested_at > timedelta(hours=1))  # failed/denied: retry hourly
    remaining = row.lease_expires_at - now
    margin = min(timedelta(days=1), timedelta(seconds=(row.lease_seconds or 0) / 10))
    return bool(remaining <= margin)


def ensure_subscription(
    store: Store,
    source: str,
    advertised: Advertised,
    callback: str,
    http: httpx.Client,
    now: datetime,
    lease_seconds: int,
) -> str | None:
    """Ask the hub for a subscription (or its renewal) when one is due; returns the new state."""
    with store.read() as conn:
        row = conn.execute(select(websub).where(websub.c.source == source)).first()
    if not needs_request(row, advertised, now):
        return None
    renewal = row is not None and row.hub == advertised.hub and row.topic == advertised.topic
    # A renewal keeps its secret, so content the hub signs before re-verifying still checks.
    secret = row.secret if row is not None and renewal else secrets.token_hex(32)
    values: dict[str, Any] = {
        "hub": advertised.hub,
        "topic": advertised.topic,
        "secret": secret,
        "requested_at": now,
    }
    try:
        resp = http.post(
            advertised.hub,
            data={
                "hub.mode": "subscribe",
                "hub.topic": advertised.topic,
                "hub.callback": f"{callback.rstrip('/')}/{callback_token(secret)}",
                "hub.secret": secret,
                "hub.lease_seconds": str(lease_seconds),
            },
        )
        error = (
            None
            if resp.status_code in (202, 204)
            else (f"hub {advertised.hub} answered HTTP {resp.status_code}")
        )
    except httpx.HTTPError as exc:
        error = f"hub {advertised.hub} unreachable: {exc}"
    if error is None:
        # Until the hub verifies, an active lease stays active; anything else is "requested".
        still_active = row is not None and renewal and row.state == "active"
        values["state"] = "active" if still_active else "requested"
    else:
        values["state"] = "failed"
        log.warning("websub for %s: %s; polling continues", source, error)
    values["last_error"] = error
    with store.write() as conn:
        if row is None:
            conn.execute(insert(websub).values(source=source, received=0, **values))
        else:
            conn.execute(update(websub).where(websub.c.source == source).values(**values))
    return str(values["state"])


def subscription(store: Store, source: str) -> Any:
    """The source's WebSub subscription row, or None."""
    with store.read() as conn:
        return conn.execute(select(websub).where(websub.c.source == source)).first()


def update_subscription(store: Store, source: str, **values: Any) -> None:
    """Record what the hub said (a verification, a denial)."""
    with store.write() as conn:
        conn.execute(update(websub).where(websub.c.source == source).values(**values))


def count_received(store: Store, source: str) -> None:
    """One more content delivery from the hub."""
    with store.write() as conn:
        conn.execute(
            update(websub).where(websub.c.source == source).values(received=websub.c.received + 1)
        )


def active_lease(store: Store, source: str, now: datetime) -> bool:
    with store.read() as conn:
        row = conn.execute(select(websub).where(websub.c.source == source)).first()
    return bool(
        row is not None
        and row.state == "active"
        and row.lease_expires_at
        and row.lease_expires_at > now
    )
