"""Atlassian Statuspage API v2: incidents and scheduled maintenances, one thread each.

`parse_statuspage` is pure and reads `summary.json`, `incidents.json`,
`incidents/unresolved.json` and `scheduled-maintenances*.json` alike. Every incident update
(investigating → identified → monitoring → resolved / postmortem) is one version of the
incident's thread, oldest first; a `resolved` (or, for maintenances, `completed`) update ends
the thread. Affected components become entities; the incident's impact becomes a severity.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from clarion.model import Entity, Info, MsgType, NameValue, Notice, Severity
from clarion.sources.base import PolledSource, SourceError, aware_time

IMPACT = {
    "none": Severity.UNKNOWN,
    "maintenance": Severity.MINOR,
    "minor": Severity.MINOR,
    "major": Severity.MODERATE,
    "critical": Severity.SEVERE,
}
TERMINAL = {"resolved", "completed"}


def _time(value: Any, where: str) -> datetime:
    parsed = aware_time(value, f"{where}: a time")
    if parsed is None:
        raise SourceError(f"{where}: a time is missing")
    return parsed


def _incident_notices(inc: dict[str, Any], page: str, kind: str, where: str) -> list[Notice]:
    inc_id = inc.get("id")
    name = inc.get("name")
    if not isinstance(inc_id, str) or not isinstance(name, str):
        raise SourceError(f"{where}: an {kind} has no id or name")
    where = f"{where} {kind} {inc_id}"
    updates = inc.get("incident_updates")
    if not isinstance(updates, list):
        raise SourceError(f"{where}: no incident_updates list")
    components = [
        Entity(kind="component", id=str(c.get("id")), name=c.get("name"))
        for c in inc.get("components") or []
        if isinstance(c, dict) and c.get("id")
    ]
    severity = IMPACT.get(str(inc.get("impact") or "none"), Severity.UNKNOWN)
    dated = sorted(updates, key=lambda u: _time(u.get("display_at") or u.get("created_at"), where))
    notices = []
    for i, upd in enumerate(dated):
        if not isinstance(upd, dict) or not upd.get("id"):
            raise SourceError(f"{where}: an update has no id")
        status = str(upd.get("status") or "")
        sent = _time(upd.get("display_at") or upd.get("created_at"), where)
        affected = [
            Entity(kind="component", id=str(a.get("code")), name=a.get("name"))
            for a in upd.get("affected_components") or []
            if a.get("code")
        ]
        entities = {(e.kind, e.id): e for e in [*components, *affected]}
        if status in TERMINAL:
            msg_type = MsgType.END
        else:
            msg_type = MsgType.ALERT if i == 0 else MsgType.UPDATE
        info = Info(
            language="en",
            categories=["Infra"],
            event=status.replace("_", " ").capitalize(),
            severity=severity,
            headline=name,
            description=" ".join(str(upd.get("body") or "").split()) or None,
            web=inc.get("shortlink"),
            sender_name=page,
            parameters=[
                NameValue(name="status", value=status),
                NameValue(name="impact", value=str(inc.get("impact") or "none")),
            ],
        )
        notices.append(
            Notice(
                kind="statuspage",
                identifier=str(upd["id"]),
                sender=page,
                sent=sent,
                msg_type=msg_type,
                infos=[info],
                entities=list(entities.values()),
                thread_key=f"local:statuspage:{inc_id}",
                link=inc.get("shortlink"),
                original=json.dumps(upd, sort_keys=True).encode(),
                original_content_type="application/json",
            )
        )
    return notices


def parse_statuspage(
    body: bytes, content_type: str = "", *, what: str = "Statuspage"
) -> list[Notice]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("page"), dict):
        raise SourceError(f"{what}: not a Statuspage API v2 document (no 'page')")
    if "incidents" not in data and "scheduled_maintenances" not in data:
        raise SourceError(
            f"{what}: no incidents or scheduled_maintenances (components.json "
            "has none: poll summary.json or incidents.json)"
        )
    page = str(data["page"].get("name") or data["page"].get("url") or "Statuspage")
    notices = []
    for key, kind in (("incidents", "incident"), ("scheduled_maintenances", "maintenance")):
        items = data.get(key) or []
        if not isinstance(items, list):
            raise SourceError(f"{what}: '{key}' is not a list")
        for inc in items:
            if not isinstance(inc, dict):
                raise SourceError(f"{what}: an entry of '{key}' is not an object")
            notices.extend(_incident_notices(inc, page, kind, what))
    return notices


class StatuspageSource(PolledSource):
    kind = "statuspage"
    accept = "application/json"

    def __init__(self, name: str, url: str, max_bytes: int, end_after: int = 3) -> None:
        super().__init__(name, url, max_bytes)
        self.end_after = end_after
        # summary.json and unresolved.json list only what is open: leaving them ends a thread.
        self.lists_active = url.rstrip("/").endswith(("summary.json", "unresolved.json"))

    def parse(self, body: bytes, content_type: str) -> list[Notice]:
        return parse_statuspage(body, what=self.what)
