"""Atlassian Statuspage API v2: incidents and scheduled maintenances, one thread each.

`parse_statuspage` is pure and reads `summary.json`, `incidents.json`,
`incidents/unresolved.json` and `scheduled-maintenances*.json` alike. Every incident update
(investigating → identified → monitoring → resolved / postmortem) is one version of the
incident's thread, oldest first; a `resolved` (or, for maintenances, `completed`) update ends
the thread. Affected components become entities; the incident's impact becomes a severity.

Updates are ordered by their time, then by how far along the incident they are
(investigating < identified < monitoring < resolved < postmortem), then by id: two updates
stamped with the same second never put "monitoring" after "resolved".

Component status (`components.json`, and the components of `summary.json`) is a story of its
own: a component or group that is not `operational` is listed as a live notice (a change of
its status updates it), and once it is back to `operational` it is no longer listed, so it
ends after the source's `end_after` polls (the debounce against a flapping component).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from clarion import safejson
from clarion.configtypes import Duration, SourceConfigBase
from clarion.model import Entity, Info, MsgType, NameValue, Notice, Severity
from clarion.sources.base import (
    ITEM_ERRORS,
    PolledSource,
    Rejected,
    SourceConnector,
    SourceError,
    aware_time,
    item_error,
)


class StatuspageSourceConfig(SourceConfigBase):
    """An Atlassian Statuspage: its `/api/v2/summary.json` or `/api/v2/incidents.json`."""

    kind: Literal["statuspage"]
    interval: Duration = 60.0
    end_after: int = Field(default=3, ge=1)


IMPACT = {
    "none": Severity.UNKNOWN,
    "maintenance": Severity.MINOR,
    "minor": Severity.MINOR,
    "major": Severity.MODERATE,
    "critical": Severity.SEVERE,
}
TERMINAL = {"resolved", "completed"}
# How far along an incident (or maintenance) each status is: the tie-break for equal times.
PROGRESS = {
    "investigating": 0,
    "identified": 1,
    "monitoring": 2,
    "resolved": 3,
    "postmortem": 4,
    "scheduled": 0,
    "in_progress": 1,
    "verifying": 2,
    "completed": 3,
}
COMPONENT_SEVERITY = {
    "degraded_performance": Severity.MINOR,
    "under_maintenance": Severity.MINOR,
    "partial_outage": Severity.MODERATE,
    "major_outage": Severity.SEVERE,
}


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
    for upd in updates:
        if not isinstance(upd, dict) or not upd.get("id"):
            raise SourceError(f"{where}: an update has no id")
    dated = sorted(
        updates,
        key=lambda u: (
            _time(u.get("display_at") or u.get("created_at"), where),
            PROGRESS.get(str(u.get("status") or ""), 0),
            str(u["id"]),
        ),
    )
    notices = []
    for i, upd in enumerate(dated):
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


# How bad each component status is: a group is as bad as its worst component.
WORSE = [
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
]


def group_views(components: list[Any]) -> dict[str, tuple[str | None, str | None, Any]]:
    """For each component id: (the name of its group, its status, its time), where a group's
    status and time come from its components: Statuspage never bumps a group's own
    `updated_at` (Linode's "Regions": 2018, its regions in outage since 2021-12-17), so judged
    by it a group's outage was dropped as too old. Pure."""
    comps = [c for c in components if isinstance(c, dict) and isinstance(c.get("id"), str)]
    by_id = {c["id"]: c for c in comps}
    views: dict[str, tuple[str | None, str | None, Any]] = {}
    for c in comps:
        group = by_id.get(c.get("group_id")) if isinstance(c.get("group_id"), str) else None
        group_name = group.get("name") if group is not None else None
        status, at = c.get("status"), c.get("updated_at") or c.get("created_at")
        kids = [by_id[k] for k in c.get("components") or [] if isinstance(k, str) and k in by_id]
        if c.get("group") and kids:
            ranks = [WORSE.index(k["status"]) for k in kids if k.get("status") in WORSE]
            status = WORSE[max(ranks)] if ranks else status
            times = [str(t) for k in kids if (t := k.get("updated_at"))]
            at = max([*times, str(at)]) if times else at
        views[c["id"]] = (group_name if isinstance(group_name, str) else None, status, at)
    return views


def _component_notice(
    comp: dict[str, Any],
    page: str,
    where: str,
    view: tuple[str | None, str | None, Any] = (None, None, None),
) -> Notice | None:
    group, status_of_group, at = view
    comp_id, name = comp.get("id"), comp.get("name")
    status = status_of_group or comp.get("status")
    if not isinstance(comp_id, str) or not isinstance(name, str) or not isinstance(status, str):
        raise SourceError(f"{where}: a component has no id, name or status")
    if status == "operational":
        return None  # listed no more: its story, if it had one, ends after the debounce
    where = f"{where} component {comp_id}"
    words = status.replace("_", " ")
    shown = f"{group} › {name}" if group else name  # two "API"s in two groups are two things
    info = Info(
        language="en",
        categories=["Infra"],
        event=words.capitalize(),
        severity=COMPONENT_SEVERITY.get(status, Severity.UNKNOWN),
        headline=f"{shown}: {words}",
        description=comp.get("description") if isinstance(comp.get("description"), str) else None,
        sender_name=page,
        parameters=[NameValue(name="status", value=status)],
    )
    return Notice(
        kind="statuspage",
        identifier=f"component:{comp_id}",
        sender=page,
        sent=_time(at or comp.get("updated_at") or comp.get("created_at"), where),
        infos=[info],
        entities=[Entity(kind="component", id=comp_id, name=shown)],
        thread_key=f"local:statuspage-component:{comp_id}",
        original=json.dumps(comp, sort_keys=True).encode(),
        original_content_type="application/json",
    )


def parse_statuspage(
    body: bytes,
    content_type: str = "",
    *,
    what: str = "Statuspage",
    rejected: list[Rejected] | None = None,
) -> list[Notice]:
    """With a `rejected` list, an incident or component that cannot be read is appended there
    and the others are read; without one, the first bad one raises."""
    try:
        data = safejson.loads(
            body, nul="replace", out_of_range="infinity"
        )  # one item's NUL spoils no other
    except safejson.JSONRefused as exc:
        raise SourceError(f"{what}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("page"), dict):
        raise SourceError(f"{what}: not a Statuspage API v2 document (no 'page')")
    if not any(k in data for k in ("incidents", "scheduled_maintenances", "components")):
        raise SourceError(
            f"{what}: no incidents, scheduled_maintenances or components: poll summary.json, "
            "incidents.json or components.json"
        )
    page = str(data["page"].get("name") or data["page"].get("url") or "Statuspage")
    comps = data.get("components")
    views = group_views(comps if isinstance(comps, list) else [])
    notices = []
    for key, kind in (
        ("incidents", "incident"),
        ("scheduled_maintenances", "maintenance"),
        ("components", "component"),
    ):
        items = data.get(key) or []
        if not isinstance(items, list):
            raise SourceError(f"{what}: '{key}' is not a list")
        for n, inc in enumerate(items, 1):
            try:
                if not isinstance(inc, dict):
                    raise SourceError(f"{what}: an entry of '{key}' is not an object")
                if kind == "component":
                    view = views.get(str(inc.get("id")), (None, None, None))
                    one = _component_notice(inc, page, what, view)
                    notices.extend([one] if one is not None else [])
                else:
                    notices.extend(_incident_notices(inc, page, kind, what))
            except ITEM_ERRORS as exc:
                ident = inc.get("id") if isinstance(inc, dict) else None
                item = f"{kind} {ident}" if isinstance(ident, str) else f"{kind} {n}"
                error = item_error(exc, f"{what}: {item}")
                if rejected is None:
                    raise error from None
                rejected.append(Rejected(item, error.reason, str(error)))
    return notices


class StatuspageSource(PolledSource):
    kind = "statuspage"
    accept = "application/json"

    def __init__(self, name: str, url: str, max_bytes: int, end_after: int = 3) -> None:
        super().__init__(name, url, max_bytes)
        self.end_after = end_after
        # summary.json and unresolved.json list only what is open: leaving them ends a thread.
        # summary.json, unresolved.json and components.json list only what is open (a
        # component that is not operational): leaving them ends a story.
        from urllib.parse import urlsplit

        path = urlsplit(url).path.rstrip("/").removesuffix(".json")  # ?query, no suffix too
        self.lists_active = path.endswith(("/summary", "/unresolved", "/components"))

    def parse(
        self, body: bytes, content_type: str, rejected: list[Rejected] | None = None
    ) -> list[Notice]:
        return parse_statuspage(body, what=self.what, rejected=rejected)


CONNECTOR = SourceConnector(
    kind="statuspage",
    config=StatuspageSourceConfig,
    parse=lambda body, content_type: parse_statuspage(body, content_type),
    build=lambda name, cfg: StatuspageSource(name, cfg.url, cfg.max_bytes, cfg.end_after),
)
