"""Compose templates: a few built in ("Service disruption", "All clear"…), and any the
operators save from the compose form (a saved one with a built-in's name replaces it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select

from clarion.desk import audit
from clarion.manual import NoticeIn
from clarion.store import Store
from clarion.store.schema import desk_templates

BUILTIN: dict[str, dict[str, object]] = {
    "Service disruption": {
        "headline": "Service disruption: [what] is unavailable until [when]",
        "event": "Service disruption",
        "description": "[What is affected, where, and since when.]",
        "instruction": "[What people should do instead.] We will post an update by [time].",
        "severity": "moderate",
        "urgency": "immediate",
        "certainty": "observed",
        "categories": ["Infra"],
    },
    "All clear": {
        "headline": "All clear: [what] is back to normal",
        "event": "All clear",
        "description": "[What happened, and that it is over.] No further action is needed.",
        "severity": "minor",
        "urgency": "past",
        "certainty": "observed",
        "categories": ["Other"],
    },
    "Severe weather warning": {
        "headline": "[Hazard] warning for [area] until [time]",
        "event": "Severe weather warning",
        "description": "[What is expected, where, and when.]",
        "instruction": "[What people should do now.]",
        "severity": "severe",
        "urgency": "expected",
        "certainty": "likely",
        "categories": ["Met"],
    },
    "Test message": {
        # Every channel marks a Test notice "[TEST]" itself: the headline need not say so.
        "headline": "This is a test of our alerting. No action is needed.",
        "event": "Test",
        "description": "This is only a test. If this had been a real alert, it would say what "
        "is happening and what to do.",
        "status": "test",
        "severity": "minor",
        "urgency": "unknown",
        "certainty": "unknown",
        "categories": ["Other"],
    },
}


def template_names(store: Store) -> list[str]:
    with store.read() as conn:
        saved = [r.name for r in conn.execute(select(desk_templates.c.name))]
    return sorted(set(BUILTIN) | set(saved))


def load_template(store: Store, name: str) -> NoticeIn | None:
    with store.read() as conn:
        r = conn.execute(select(desk_templates.c.body).where(desk_templates.c.name == name)).first()
    if r is not None:
        return NoticeIn.model_validate(r.body)
    if name in BUILTIN:
        return NoticeIn.model_validate(BUILTIN[name])
    return None


def save_template(
    store: Store, name: str, body: NoticeIn, who: str, now: datetime, *, ip: str | None
) -> None:
    name = name.strip()[:80]
    with store.write() as conn:
        conn.execute(delete(desk_templates).where(desk_templates.c.name == name))
        conn.execute(
            insert(desk_templates).values(
                name=name,
                body=body.model_dump(mode="json", exclude_none=True, exclude={"expires"}),
                created_by=who,
                created_at=now,
            )
        )
        audit.record(conn, now, who, "template_save", f"template {name}", body.headline, ip)
