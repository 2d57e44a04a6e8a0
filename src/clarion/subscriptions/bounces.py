"""Bounces that come back by mail, later (RFC 3464 delivery status notifications): which
subscriber bounced, and whether for good.

`clarion subscriptions bounce` reads one message on standard input — what a mail server's pipe
delivers (Postfix: an alias `|clarion subscriptions bounce`) — for the address the subscriber
mails are sent from with `verp = true` (`alerts+b-KEY@example.org`). The subscriber is found by
that key only, in the addresses the bounce was sent to: the key is in no public place (it is
the subscriber's unsubscribe secret, only ever in mail to them), so a bounce that carries it
answers a mail Clarion sent to that subscriber. A DSN naming only a `Final-Recipient` proves
nothing (anyone can mail one to the public sender address, naming a victim): it changes
nothing and is counted in the audit log (`bounce_ignored`). A permanent failure (`Action:
failed`, `Status: 5.x.x`) pauses the subscription at once; a delay or a temporary failure
changes nothing.
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

MAX_BYTES = 10 * 1024 * 1024
_KEY = re.compile(r"\+b-([A-Za-z0-9_-]{16,64})@")


@dataclass(frozen=True)
class Bounce:
    key: str | None  # from the VERP address
    recipient: str | None  # the DSN's Final-Recipient
    status: str | None  # 5.1.1
    permanent: bool


MAX_PARTS = 200  # a DSN has three; a mail nested deeper or wider is not a bounce


def read(raw: bytes) -> Bounce:
    """The bounce in `raw`; ValueError, in one line, for anything that is not one."""
    if len(raw) > MAX_BYTES:
        raise ValueError(f"a bounce of {len(raw):,} bytes; at most {MAX_BYTES:,}")
    if not raw.strip():
        raise ValueError("an empty message")
    try:
        return _read(raw)
    except ValueError:
        raise
    except (RecursionError, LookupError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"not a mail that can be read ({type(exc).__name__})") from None


def _read(raw: bytes) -> Bounce:
    msg = message_from_bytes(raw, policy=policy.compat32)
    addresses = " ".join(
        str(msg.get(h, "")) for h in ("To", "Delivered-To", "X-Original-To", "Envelope-To")
    )
    key = m.group(1) if (m := _KEY.search(addresses)) else None
    recipient = status = action = None
    for n, part in enumerate(msg.walk()):
        if n > MAX_PARTS:
            raise ValueError(f"a mail of more than {MAX_PARTS} parts is not a bounce")
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
    """What the bounce did, in words. Only a bounce that carries a subscriber's VERP key
    changes anything; every other one is counted (`bounce_ignored` in the audit log)."""
    from clarion.desk.audit import record

    if not bounce.key:
        return _ignored(store, bounce, now, "no VERP key in the address it came back to")
    if not bounce.permanent:
        return f"not a permanent failure ({bounce.status or 'no status'}): nothing changed"
    with store.write() as conn:
        q = select(subscriptions.c.id, subscriptions.c.state).where(
            subscriptions.c.kind == "email", subscriptions.c.unsubscribe_key == bounce.key
        )
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
            record(conn, now, "system", "bounce_paused", f"subscription:{active[0]}", bounce.status)
    if not found:
        return _ignored(store, bounce, now, "its VERP key is no subscriber's")
    return f"paused {len(active)} e-mail subscription(s): the address bounced ({bounce.status})"


def _ignored(store: Store, bounce: Bounce, now: datetime, why: str) -> str:
    from clarion.desk.audit import log

    detail = f"{why}; status {bounce.status or 'none'}"
    log(store, now, "system", "bounce_ignored", detail=detail)
    return f"{why}: nothing changed (a bounce proves itself only by that key; counted)"
