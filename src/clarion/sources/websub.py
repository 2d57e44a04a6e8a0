"""WebSub (W3C Recommendation, 2018): Clarion subscribes to the hubs that feeds advertise.

A feed that names a hub (`<link rel="hub">`, an HTTP `Link` header, or JSON Feed `hubs`) is
pushed to Clarion within seconds of being published, instead of waiting for the next poll:

1. `discover` (pure) finds the hub and the topic (the feed's `rel="self"` URL).
2. `clarion.websub_subscriber.ensure_subscription` asks the hub to send updates to
   `{public_url}/websub/{source}/{token}` with a fresh secret, and renews the lease before it
   runs out (the database and network half, kept out of `sources/`).
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
from dataclasses import dataclass

import feedparser

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


def callback_token(secret: str) -> str:
    """The unguessable last segment of a subscription's callback URL. WebSub's verification of
    intent carries no signature, so without it anyone who knows the (public) topic could
    "verify" a subscription and slow the source's polling to the safety net's pace."""
    return hmac.new(secret.encode(), b"websub-callback", hashlib.sha256).hexdigest()[:32]
