"""Direct subscriptions: people follow their own area, line or service by Web Push or e-mail,
with no platform in between (docs/subscriptions.md).

- `interests`: what a subscriber asks for, bounded and turned into the terms notices carry;
- `registry`: subscribers in the store: created, confirmed, changed, paused, removed, counted;
- `matching`: at ingest, which subscribers a notice reaches (terms, points in polygons);
- `webpush`: one message encrypted (RFC 8291) and signed (VAPID, RFC 8292) for one browser.
"""
