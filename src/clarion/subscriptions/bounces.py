"""Bounces that come back by mail, later (RFC 3464 delivery status notifications): which
subscriber bounced, and whether for good.

`clarion subscriptions bounce` reads one message on standard input — what a mail server's pipe
delivers (Postfix: an alias `|clarion subscriptions bounce`) — for the address the subscriber
mails are sent from with `verp = true` (`alerts+b-KEY@example.org`). The subscriber is found by
that key (in the addresses the bounce was sent to) or, without it, by the DSN's
`Final-Recipient`. A permanent failure (`Action: failed`, `Status: 5.x.x`) pauses the
subscription at once; a delay or a temporary failure changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

from sqlalchemy import select, update

from clarion.store import Store
from clarion.store.schema import subscriptions
from clarion.subscriptions.registry import address_key

MAX_BYTES = 10 * 1024 * 1024
_KEY = re.compile(r"\+b-([A-Za-z0-9_-]{16,64})@")


@dataclass(frozen=True)
class Bounce:
    key: str | None  # from the VERP address
    recipient: str | None  # the DSN's Final-Recipient
    status: str | None  # 5.1.1
    permanent: bool


def read(raw: bytes) -> Bounce:
    if len(raw) > MAX_BYTES:
        raise ValueError(f"a bounce of {len(raw):,} bytes; at most {MAX_BYTES:,}")
    msg = message_from_bytes(raw, policy=policy.compat32)
    addresses = " ".join(
        str(msg.get(h, "")) for h in ("To", "Delivered-To", "X-Original-To", "Envelope-To")
    )
    key = m.group(1) if (m := _KEY.search(addresses)) else None
    recipient = status = action = None
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _status_blocks(part):
            final = block.get("Final-Recipient") or block.get("Original-Recipient") or ""
            if ";" in final:
                recipient = final.split(";", 1)[1].strip().strip("<>")
            status = (block.get("Status") or "").strip() or None
            action = (block.get("Action") or "").strip().lower() or None
            break
    permanent = action == "failed" and bool(status and status.startswith("5"))
    return Bounce(key, recipient, status, permanent)


def _status_blocks(part: Message) -> list[Message]:
    """The per-recipient fields of a message/delivery-status part (after the per-message
    block), however the parser left them."""
    payload: Any = part.get_payload()
    if isinstance(payload, list):
        return list(payload[1:] or payload)
    text = payload if isinstance(payload, str) else ""
    blocks = [b for b in re.split(r"\r?\n\r?\n", text.strip()) if b.strip()]
    out = []
    for b in blocks[1:] or blocks:
        out.append(message_from_bytes(b.encode(errors="replace"), policy=policy.compat32))
    return out


def apply(store: Store, bounce: Bounce, now: datetime) -> str:
    """What the bounce did, in words."""
    if not bounce.permanent:
        return f"not a permanent failure ({bounce.status or 'no status'}): nothing changed"
    with store.write() as conn:
        q = select(subscriptions.c.id, subscriptions.c.state).where(subscriptions.c.kind == "email")
        if bounce.key:
            q = q.where(subscriptions.c.unsubscribe_key == bounce.key)
        elif bounce.recipient:
            q = q.where(subscriptions.c.address_key == address_key("email", bounce.recipient))
        else:
            return "no subscriber named in this bounce"
        found = conn.execute(q).all()
        active = [r.id for r in found if r.state == "active"]
        if active:
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id.in_(active))
                .values(
                    state="paused",
                    paused_reason=f"the address bounced ({bounce.status})",
                    updated_at=now,
                )
            )
    if not found:
        return "no subscriber matches this bounce"
    return f"paused {len(active)} e-mail subscription(s): the address bounced ({bounce.status})"
