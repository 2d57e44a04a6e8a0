"""The audit log: every action on the desk and its commands — who, what, on what, when, from
where. Written in the same transaction as the action where there is one, so the log never
claims what did not happen, nor misses what did."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, or_, select

from clarion.store import Store
from clarion.store.schema import audit_log

ACTIONS = (
    "login",
    "login_failed",
    "logout",
    "compose",
    "approve",
    "reject",
    "withdraw",
    "send",
    "send_failed",
    "schedule",
    "retry",
    "cancel_delivery",
    "channel_resume",
    "template_save",
    "template_delete",
    "user_add",
    "user_disable",
    "user_enable",
    "user_passwd",
    "config_change",
)


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: str | None
    ip: str | None


def record(
    conn: Connection,
    now: datetime,
    actor: str,
    action: str,
    target: str | None = None,
    detail: str | None = None,
    ip: str | None = None,
) -> None:
    assert action in ACTIONS, action
    conn.execute(
        insert(audit_log).values(
            at=now,
            actor=actor[:64],
            action=action,
            target=target[:255] if target else None,
            detail=detail,
            ip=ip,
        )
    )


def log(store: Store, now: datetime, actor: str, action: str, **kw: str | None) -> None:
    with store.write() as conn:
        record(conn, now, actor, action, **kw)


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None  # in the target or the detail


def entries(
    store: Store, flt: AuditFilter, limit: int = 200, before: int | None = None
) -> list[Entry]:
    """Newest first; `before` pages on (an entry id)."""
    q = select(audit_log).order_by(audit_log.c.id.desc())
    if flt.actor:
        q = q.where(audit_log.c.actor == flt.actor)
    if flt.action:
        q = q.where(audit_log.c.action == flt.action)
    if flt.since:
        q = q.where(audit_log.c.at >= flt.since)
    if flt.until:
        q = q.where(audit_log.c.at < flt.until)
    if flt.text:
        like = f"%{flt.text}%"
        q = q.where(or_(audit_log.c.target.ilike(like), audit_log.c.detail.ilike(like)))
    if before is not None:
        q = q.where(audit_log.c.id < before)
    if limit:
        q = q.limit(limit)
    with store.read() as conn:
        return [
            Entry(r.id, r.at, r.actor, r.action, r.target, r.detail, r.ip) for r in conn.execute(q)
        ]


def to_csv(rows: Iterable[Entry]) -> str:
    """RFC 4180 CSV, with a header row. Cells that a spreadsheet would run as a formula are
    prefixed with a quote (CSV injection: a target or detail is text people typed)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["id", "at", "actor", "action", "target", "detail", "ip"])
    for e in rows:
        w.writerow(
            [
                e.id,
                e.at.isoformat(),
                *(_cell(v) for v in (e.actor, e.action, e.target, e.detail, e.ip)),
            ]
        )
    return out.getvalue()


def _cell(value: str | None) -> str:
    if not value:
        return ""
    return "'" + value if value[0] in "=+-@\t\r" else value
