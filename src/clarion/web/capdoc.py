"""A notice as a CAP 1.2 document, for `/notices/{thread}/v{n}.cap`. Pure.

A notice that arrived as signed CAP is served as its original bytes, untouched, so its
signature still verifies. Every other notice (a feed item, a transit alert, a status incident,
unsigned or CAP 1.1 input) is written as CAP 1.2 that validates against the OASIS schema:
times with a numeric offset and no fractions, the enumerations' own spelling, an identifier and
sender without spaces, commas, `<` or `&`, and every info block with at least one category.

Identifiers: CAP input keeps its own (it is already unique per sender). Other inputs reuse one
id for every version of a story (a feed item's guid, a Statuspage incident), so each version
gets `{id}-v{n}`, and an update or cancel references the versions before it, as CAP expects.
Clarion's END (a story that left its feed) becomes an Update with a note saying so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from lxml import etree

from clarion.model import CAP_KINDS, Info, MsgType, Notice, SignatureState

CAP12 = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_CONTENT_TYPE = "application/cap+xml"
CATEGORIES = [
    *("Geo", "Met", "Safety", "Security", "Rescue", "Fire"),
    *("Health", "Env", "Transport", "Infra", "CBRNE", "Other"),
]
RESPONSES = [
    *("Shelter", "Evacuate", "Prepare", "Execute", "Avoid"),
    *("Monitor", "Assess", "AllClear", "None"),
]
_FORBIDDEN = re.compile(r"[\s,<&]+")
KIND_CATEGORY = {"gtfsrt": "Transport", "statuspage": "Infra"}


def cap_time(dt: datetime) -> str:
    """CAP's dateTime: seconds, and a numeric offset ("Z" is not allowed)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.replace(microsecond=0).isoformat()


def cap_token(value: str, fallback: str = "unknown") -> str:
    """An identifier or sender as CAP allows: no spaces, commas, `<` or `&`."""
    cleaned = _FORBIDDEN.sub("-", value.strip()).strip("-")
    return cleaned or fallback


def cap_identity(notice: Notice, version: int) -> tuple[str, str, str]:
    """(sender, identifier, sent) of this version as its CAP document names it."""
    sender = cap_token(notice.sender)
    if notice.kind in CAP_KINDS:
        identifier = cap_token(notice.identifier)
    else:
        identifier = f"{cap_token(notice.identifier)}-v{version}"
    return sender, identifier, cap_time(notice.sent)


def serve_original(notice: Notice) -> bool:
    """Signed CAP goes out byte for byte: regenerating it would break the signature."""
    return bool(notice.original) and notice.signature is not SignatureState.UNSIGNED


def cap_document(
    notice: Notice, version: int, earlier: Sequence[tuple[str, str, str]] = ()
) -> bytes:
    """`earlier`: the CAP identities of the thread's previous versions, oldest first."""
    alert = etree.Element(f"{{{CAP12}}}alert", nsmap={None: CAP12})
    sub = _add
    sender, identifier, sent = cap_identity(notice, version)
    sub(alert, "identifier", identifier)
    sub(alert, "sender", sender)
    sub(alert, "sent", sent)
    sub(alert, "status", notice.status.value.capitalize())
    msg_type = "Update" if notice.msg_type is MsgType.END else notice.msg_type.value.capitalize()
    sub(alert, "msgType", msg_type)
    sub(alert, "source", f"Clarion ({notice.kind})" if notice.kind not in CAP_KINDS else None)
    sub(alert, "scope", (notice.scope or "public").capitalize())
    for code in notice.codes:
        sub(alert, "code", code)
    note = notice.note
    if notice.msg_type is MsgType.END:
        note = note or "This story has ended: it is no longer listed by its source."
    sub(alert, "note", note)
    refs = _references(notice, earlier)
    sub(alert, "references", " ".join(refs) if refs else None)
    sub(alert, "incidents", " ".join(cap_token(i) for i in notice.incidents) or None)
    for info in notice.infos:
        _info(alert, info, notice)
    return bytes(etree.tostring(alert, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _references(notice: Notice, earlier: Sequence[tuple[str, str, str]]) -> list[str]:
    if notice.kind in CAP_KINDS and notice.references:
        return [
            f"{cap_token(r.sender)},{cap_token(r.identifier)},{r.sent}" for r in notice.references
        ]
    if notice.msg_type in (MsgType.ALERT,):
        return []
    return [",".join(e) for e in earlier]


def _add(parent: etree._Element, tag: str, text: str | None) -> None:
    """A child element with text; nothing at all when there is no text (CAP has no empties)."""
    if text is None or text == "":
        return
    el = etree.SubElement(parent, f"{{{CAP12}}}{tag}")
    el.text = text


def _info(alert: etree._Element, info: Info, notice: Notice) -> None:
    el = etree.SubElement(alert, f"{{{CAP12}}}info")
    add = _add
    add(el, "language", info.language)
    cats = [c for c in CATEGORIES for want in info.categories if want.lower() == c.lower()]
    for cat in list(dict.fromkeys(cats)) or [KIND_CATEGORY.get(notice.kind, "Other")]:
        add(el, "category", cat)
    add(el, "event", info.event or info.headline or notice.headline)
    for r in info.response_types:
        match = [x for x in RESPONSES if x.lower() == r.lower()]
        if match:
            add(el, "responseType", match[0])
    add(el, "urgency", info.urgency.value.capitalize())
    add(el, "severity", info.severity.value.capitalize())
    add(el, "certainty", info.certainty.value.capitalize())
    add(el, "audience", info.audience)
    for code in info.event_codes:
        pair = etree.SubElement(el, f"{{{CAP12}}}eventCode")
        add(pair, "valueName", code.name)
        add(pair, "value", code.value)
    for name in ("effective", "onset", "expires"):
        value = getattr(info, name)
        if value is not None:
            add(el, name, cap_time(value))
    add(el, "senderName", info.sender_name)
    add(el, "headline", info.headline)
    add(el, "description", info.description)
    add(el, "instruction", info.instruction)
    add(el, "web", info.web or notice.link)
    add(el, "contact", info.contact)
    for p in info.parameters:
        pair = etree.SubElement(el, f"{{{CAP12}}}parameter")
        add(pair, "valueName", p.name)
        add(pair, "value", p.value)
    for res in info.resources:
        r = etree.SubElement(el, f"{{{CAP12}}}resource")
        add(r, "resourceDesc", res.description or "resource")
        add(r, "mimeType", res.mime_type or "application/octet-stream")
        add(r, "size", str(res.size) if res.size is not None else None)
        add(r, "uri", res.uri)
        add(r, "digest", res.digest)
    for area in info.areas:
        a = etree.SubElement(el, f"{{{CAP12}}}area")
        add(a, "areaDesc", area.description or "unspecified")
        for ring in area.polygons:
            if len(ring) >= 4 and ring[0] == ring[-1]:
                text = " ".join(f"{lat:g},{lon:g}" for lat, lon in ring)
                add(a, "polygon", text)
        for c in area.circles:
            add(a, "circle", f"{c.lat:g},{c.lon:g} {c.radius_km:g}")
        for g in area.geocodes:
            pair = etree.SubElement(a, f"{{{CAP12}}}geocode")
            add(pair, "valueName", g.name)
            add(pair, "value", g.value)
        if area.altitude is not None:
            add(a, "altitude", f"{area.altitude:g}")
            if area.ceiling is not None:
                add(a, "ceiling", f"{area.ceiling:g}")
