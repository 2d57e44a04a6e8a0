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

from clarion.config import Config
from clarion.store import Store
from clarion.store.schema import audit_log, config_history

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
    "credential_set",
    "template_save",
    "template_delete",
    "user_add",
    "user_disable",
    "user_enable",
    "user_passwd",
    "config_change",
    "api_publish",
    "api_key_trusted",
    "subscription_test",
    "bounce_paused",
    "bounce_ignored",  # a bounce that proved nothing (no VERP key of ours): counted, no change
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


def _flatten(value: object, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    import json

    return {prefix: json.dumps(value, sort_keys=True, default=str)}


def config_changed(
    store: Store, config: Config, now: datetime, *, actor: str, host: str
) -> str | None:
    """Record the configuration this process runs with; if it differs from the last one
    recorded, log a `config_change` saying which keys were added, removed or changed.
    Returns that summary, or None when nothing changed. Secrets are references (the name of an
    environment variable or a file), so no secret value is ever stored or shown."""
    import hashlib
    import json

    flat = _flatten(config.model_dump(mode="json", exclude_none=True))
    digest = hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()
    with store.write() as conn:
        last = conn.execute(
            select(config_history.c.digest, config_history.c.data)
            .order_by(config_history.c.id.desc())
            .limit(1)
        ).first()
        if last is not None and last.digest == digest:
            return None
        conn.execute(
            insert(config_history).values(at=now, digest=digest, data=flat, host=host[:255])
        )
        if last is None:
            summary = f"first start with a recorded configuration ({len(flat)} keys)"
        else:
            before: dict[str, str] = dict(last.data)
            parts = []
            for label, keys in (
                ("changed", sorted(k for k in flat if k in before and before[k] != flat[k])),
                ("added", sorted(k for k in flat if k not in before)),
                ("removed", sorted(k for k in before if k not in flat)),
            ):
                if keys:
                    shown = ", ".join(keys[:20]) + (
                        f" and {len(keys) - 20} more" if len(keys) > 20 else ""
                    )
                    parts.append(f"{label}: {shown}")
            summary = "; ".join(parts) or "reordered"
        record(conn, now, actor, "config_change", f"config {digest[:12]}", summary, host)
    return summary
