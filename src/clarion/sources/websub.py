"""WebSub (W3C Recommendation, 2018): Clarion subscribes to the hubs that feeds advertise.

A feed that names a hub (`<link rel="hub">`, an HTTP `Link` header, or JSON Feed `hubs`) is
pushed to Clarion within seconds of being published, instead of waiting for the next poll:

1. `discover` (pure) finds the hub and the topic (the feed's `rel="self"` URL).
2. `ensure_subscription` asks the hub to send updates to `{public_url}/websub/{source}` with a
   fresh secret, and renews the lease before it runs out.
3. The web app (`clarion.web.websub_routes`) answers the hub's intent verification and takes
   the content it distributes, checking `X-Hub-Signature`.

Polling never stops: while a subscription is active the source is still polled, but only every
`websub_poll_interval` (a safety net); when the hub fails, refuses or lets the lease lapse,
polling returns to the source's own interval.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import feedparser
import httpx
from sqlalchemy import insert, select, update

from clarion.store import Store
from clarion.store.schema import websub

log = logging.getLogger(__name__)

SIGNATURE_ALGORITHMS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


@dataclass(frozen=True)
class Advertised:
    hub: str
    topic: str


def _link_header(value: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (value or "").split(","):
        if ";" not in part:
            continue
        url, *params = part.split(";")
        for p in params:
            key, _, val = p.strip().partition("=")
            if key.lower() == "rel":
                for rel in val.strip('"').split():
                    out.setdefault(rel, url.strip().strip("<>"))
    return out


def discover(
    body: bytes, content_type: str, link_header: str | None, fetched_url: str
) -> Advertised | None:
    """The hub and topic a feed advertises (HTTP Link header first, then the document)."""
    links = _link_header(link_header)
    hub, topic = links.get("hub"), links.get("self")
    if hub is None:
        if body.lstrip()[:1] == b"{":
            try:
                data = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return None
            hubs = [h.get("url") for h in data.get("hubs") or [] if isinstance(h, dict)]
            hub = next((h for h in hubs if h), None)
            topic = topic or data.get("feed_url")
        else:
            parsed = feedparser.parse(body, response_headers={"content-type": content_type})
            for link in parsed.feed.get("links", []):
                if link.get("rel") == "hub" and hub is None:
                    hub = link.get("href")
                elif link.get("rel") == "self" and topic is None:
                    topic = link.get("href")
    if not hub:
        return None
    return Advertised(hub=hub, topic=topic or fetched_url)


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature: method=hex` (sha1, sha256, sha384, sha512) over the raw body."""
    if not header or "=" not in header:
        return False
    method, _, given = header.partition("=")
    algorithm = SIGNATURE_ALGORITHMS.get(method.strip().lower())
    if algorithm is None:
        return False
    expected = hmac.new(secret.encode(), body, algorithm).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


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


def callback_token(secret: str) -> str:
    """The unguessable last segment of a subscription's callback URL. WebSub's verification of
    intent carries no signature, so without it anyone who knows the (public) topic could
    "verify" a subscription and slow the source's polling to the safety net's pace."""
    return hmac.new(secret.encode(), b"websub-callback", hashlib.sha256).hexdigest()[:32]


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


def active_lease(store: Store, source: str, now: datetime) -> bool:
    with store.read() as conn:
        row = conn.execute(select(websub).where(websub.c.source == source)).first()
    return bool(
        row is not None
        and row.state == "active"
        and row.lease_expires_at
        and row.lease_expires_at > now
    )
