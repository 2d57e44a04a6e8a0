"""CAP (Common Alerting Protocol 1.0–1.2) documents and the Atom/RSS indexes that list them.

`parse_cap` and `parse_index` are pure: bytes in, notices (or index entries) out, or one
`SourceError` naming the problem. `CapSource.poll` is the I/O half: a conditional GET of the
configured URL and, for an index, one GET per listed document not seen before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography import x509
from lxml import etree
from pydantic import Field

from clarion.configtypes import SourceConfigBase
from clarion.model import (
    CAP_MSG_TYPES,
    Area,
    Certainty,
    Circle,
    Info,
    MsgType,
    NameValue,
    Notice,
    Reference,
    Resource,
    Severity,
    SignatureState,
    Status,
    Urgency,
)
from clarion.sources.base import (
    ITEM_ERRORS,
    Fetched,
    FetchState,
    PolledSource,
    PollResult,
    Rejected,
    SourceConnector,
    SourceError,
    aware_time,
    conditional_get,
    item_error,
)
from clarion.sources.capsig import verify_cap
from clarion.sources.xmlsafe import (
    Kids,
    child,
    child_text,
    children,
    local_name,
    namespace,
    parse_xml,
    text_of,
)


class CapSourceConfig(SourceConfigBase):
    """A CAP document URL, or an Atom/RSS index of CAP documents (NWS, Environment Canada…)."""

    kind: Literal["cap"]
    max_documents: int = Field(default=200, ge=1)
    trusted_certificates: list[Path] = Field(default_factory=list)  # PEM files
    concurrency: int = Field(default=4, ge=1, le=32)  # index documents fetched at once
    # An EAS Required Weekly or Monthly Test marked Actual: read as a Test (never posted to
    # the public as an alert), or, with "actual", as it is marked.
    eas_required_tests: Literal["test", "actual"] = "test"


CAP_NAMESPACES = {
    "urn:oasis:names:tc:emergency:cap:1.2": "1.2",
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
    "http://www.incident.com/cap/1.0": "1.0",
}
XMLDSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_CONTENT_TYPES = ("application/cap+xml", "application/common-alerting-protocol+xml")


def _enum(value: str | None, enum: Any, field: str, where: str, required: bool = True) -> Any:
    if value is None:
        if required:
            raise SourceError(f"{where}: required element <{field}> is missing or empty")
        return None
    try:
        return enum(value.strip().lower())
    except ValueError:
        allowed = ", ".join(e.value.capitalize() for e in enum)
        raise SourceError(f"{where}: <{field}> is {value!r}; CAP allows {allowed}") from None


def _time(value: str | None, field: str, where: str) -> datetime | None:
    return aware_time(value, f"{where}: <{field}>")


def _required(el: Kids, name: str, where: str) -> str:
    value = el.text(name)
    if value is None:
        raise SourceError(f"{where}: required element <{name}> is missing or empty")
    return value


def _pairs(el: Kids, name: str) -> list[NameValue]:
    out = []
    for pair in el.all(name):
        # A pair's first <valueName> and first <value>, read in one pass over its children.
        found: dict[str, str | None] = {}
        for c in pair:
            tag = c.tag
            if isinstance(tag, str):
                local = tag.rpartition("}")[2]
                if local in ("valueName", "value") and local not in found:
                    found[local] = text_of(c)
        key, value = found.get("valueName"), found.get("value")
        if key is not None and value is not None:
            out.append(NameValue(name=key, value=value))
    return out


def _references(text: str, where: str) -> list[Reference]:
    refs = []
    for triple in text.split():
        parts = triple.split(",")
        if len(parts) != 3 or not all(parts):
            raise SourceError(
                f"{where}: <references> entry {triple!r} is not a sender,identifier,sent triple"
            )
        refs.append(Reference(sender=parts[0], identifier=parts[1], sent=parts[2]))
    return refs


def _polygon(text: str, where: str) -> list[tuple[float, float]]:
    points = []
    for pair in text.split():
        try:
            lat, lon = (float(x) for x in pair.split(","))
        except ValueError:
            raise SourceError(f"{where}: <polygon> point {pair!r} is not lat,lon") from None
        points.append((lat, lon))
    if len(points) < 4:
        raise SourceError(f"{where}: <polygon> has {len(points)} points; CAP requires 4 or more")
    return points


def _circle(text: str, where: str) -> Circle:
    try:
        centre, radius = text.split()
        lat, lon = (float(x) for x in centre.split(","))
        return Circle(lat=lat, lon=lon, radius_km=float(radius))
    except ValueError:
        raise SourceError(f"{where}: <circle> {text!r} is not 'lat,lon radius'") from None


def _area(el: etree._Element, where: str) -> Area:
    k = Kids(el)
    altitude = k.text("altitude")
    ceiling = k.text("ceiling")
    try:
        alt = float(altitude) if altitude else None
        ceil = float(ceiling) if ceiling else None
    except ValueError:
        raise SourceError(f"{where}: <altitude>/<ceiling> is not a number") from None
    return Area(
        description=_required(k, "areaDesc", where),
        polygons=[_polygon(t, where) for p in k.all("polygon") if (t := text_of(p))],
        circles=[_circle(t, where) for c in k.all("circle") if (t := text_of(c))],
        geocodes=_pairs(k, "geocode"),
        altitude=alt,
        ceiling=ceil,
    )


def _resource(el: etree._Element, where: str, version: str) -> Resource:
    k = Kids(el)
    size = k.text("size")
    try:
        size_value = int(size) if size else None
    except ValueError:
        raise SourceError(f"{where}: <resource> <size> {size!r} is not a number") from None
    mime_type = k.text("mimeType")
    if mime_type is None and version != "1.2":  # optional before CAP 1.2
        import mimetypes

        uri = k.text("uri") or ""
        mime_type = mimetypes.guess_type(uri)[0] or "application/octet-stream"
    return Resource(
        description=_required(k, "resourceDesc", where),
        mime_type=mime_type or _required(k, "mimeType", where),
        uri=k.text("uri"),
        size=size_value,
        digest=k.text("digest"),
    )


# The formatting markup services put in CAP text; anything else (`<script>`) stays text,
# shown as written (escaped) like any other character.
_MARKUP = re.compile(r"</?\s*(?:br|p|div|li|ul|ol|b|i|em|strong|span|a|h[1-6])\b[^>]*>", re.I)


def plain(value: str | None) -> str | None:
    """A CAP text field as plain text: CAP's text is text, but services put HTML in it
    (`line<br />line`, `<p>…</p>`), which was posted verbatim. Text with markup is made plain
    with its line breaks; text without any is kept exactly as written."""
    if value is None or not _MARKUP.search(value):
        return value
    from clarion.sources.feed import html_to_text

    return html_to_text(value) or None


def _info(el: etree._Element, where: str, version: str = "1.2") -> Info:
    k = Kids(el)
    language = k.text("language") or "en-US"
    where = f"{where} (info {language})"
    return Info(
        language=language,
        categories=[t for c in k.all("category") if (t := text_of(c))],
        event=k.text("event") or "",
        response_types=[t for c in k.all("responseType") if (t := text_of(c))],
        urgency=_enum(k.text("urgency"), Urgency, "urgency", where),
        severity=_enum(k.text("severity"), Severity, "severity", where),
        certainty=_cap_certainty(k.text("certainty"), where),
        audience=k.text("audience"),
        event_codes=_pairs(k, "eventCode"),
        effective=_time(k.text("effective"), "effective", where),
        onset=_time(k.text("onset"), "onset", where),
        expires=_time(k.text("expires"), "expires", where),
        sender_name=k.text("senderName"),
        headline=plain(k.text("headline")),
        description=plain(k.text("description")),
        instruction=plain(k.text("instruction")),
        web=k.text("web"),
        contact=k.text("contact"),
        parameters=_pairs(k, "parameter"),
        resources=[_resource(r, where, version) for r in k.all("resource")],
        areas=[_area(a, where) for a in k.all("area")],
    )


def _cap_certainty(value: str | None, where: str) -> Certainty:
    # CAP 1.0 used "Very Likely", which CAP 1.1 folded into "Likely".
    if value is not None and value.strip().lower() == "very likely":
        return Certainty.LIKELY
    result: Certainty = _enum(value, Certainty, "certainty", where)
    return result


def thread_key_for(sender: str, identifier: str) -> str:
    return f"cap:{sender},{identifier}"


def alert_to_notice(
    el: etree._Element, original: bytes | None, where: str, required_tests: str = "test"
) -> Notice:
    """Turn one CAP `<alert>` element into a Notice, checking what CAP requires."""
    k = Kids(el)
    identifier = _required(k, "identifier", where)
    where = f"{where} [{identifier}]"
    sender = _required(k, "sender", where)
    sent = _time(_required(k, "sent", where), "sent", where)
    assert sent is not None
    status = _enum(k.text("status"), Status, "status", where)
    msg_type = _enum(k.text("msgType"), MsgType, "msgType", where)
    if msg_type not in CAP_MSG_TYPES:
        raise SourceError(f"{where}: <msgType> is {msg_type.value!r}, which CAP does not have")
    scope = _required(k, "scope", where)
    references: list[Reference] = []
    ref_el = k.first("references")
    ref_text = text_of(ref_el) if ref_el is not None else None
    if ref_text is not None:  # empty: no references (services send `<references/>` on alerts)
        references = _references(ref_text, where)
    if msg_type in (MsgType.UPDATE, MsgType.CANCEL) and not references:
        empty = " (it is present but empty)" if ref_el is not None else ""
        raise SourceError(
            f"{where}: a {msg_type.value} must name what it refers to in <references>{empty}"
        )
    signed = any(isinstance(c.tag, str) and c.tag == f"{{{XMLDSIG_NS}}}Signature" for c in el)
    # The thread is the oldest message referred to; the pipeline follows it further through
    # the store when a reference names a message that itself was an update.
    thread = thread_key_for(sender, identifier)
    if references:
        oldest = oldest_reference(references)
        thread = thread_key_for(oldest.sender, oldest.identifier)
    version = CAP_NAMESPACES.get(namespace(el), "1.2")
    infos = [_info(i, where, version) for i in k.all("info")]
    if required_tests == "test":
        status = required_test_status(status, infos)
    web = next((i.web for i in infos if i.web), None)
    return Notice(
        kind="cap",
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=msg_type,
        scope=scope.lower(),
        references=references,
        note=k.text("note"),
        codes=[t for c in k.all("code") if (t := text_of(c))],
        incidents=(k.text("incidents") or "").split(),
        infos=infos,
        thread_key=thread,
        link=web,
        original=original,
        original_content_type="application/cap+xml" if original is not None else None,
        signature=SignatureState.UNCHECKED if signed else SignatureState.UNSIGNED,
    )


# The EAS Required Weekly and Monthly Tests (47 CFR 11.61): sent marked Actual by design (they
# test the real chain), never an alert for the public.
REQUIRED_TESTS = frozenset({"RWT", "RMT"})


def required_test_status(status: Status, infos: list[Info]) -> Status:
    """Test for an Actual message whose EAS event code is a Required Weekly or Monthly Test."""
    if status is not Status.ACTUAL:
        return status
    codes = {
        c.value.strip().upper()
        for i in infos
        for c in i.event_codes
        if c.name.strip().upper() in ("SAME", "EAS", "EAS-ORG")
    }
    return Status.TEST if codes & REQUIRED_TESTS else status


def oldest_reference(references: list[Reference]) -> Reference:
    """The earliest message referred to, by its sent time (offsets honoured), then by order."""
    return min(enumerate(references), key=lambda ir: (_sort_time(ir[1].sent), ir[0]))[1]


def _sort_time(value: str) -> float:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return float("inf")


def _is_alert(el: etree._Element) -> bool:
    return local_name(el) == "alert" and (
        (isinstance(el.tag, str) and el.tag.split("}")[0].lstrip("{") in CAP_NAMESPACES)
        or not str(el.tag).startswith("{")
    )


def parse_cap(
    body: bytes, *, what: str = "CAP document", required_tests: str = "test"
) -> list[Notice]:
    """Parse one CAP document (or an index embedding CAP documents) into notices."""
    root = parse_xml(body, what=what)
    if _is_alert(root):
        return [alert_to_notice(root, bytes(body), what, required_tests)]
    if local_name(root) in ("feed", "rss", "RDF"):
        notices = []
        for entry in parse_index_root(root, what, required_tests=required_tests):
            if entry.embedded is not None:
                notices.append(entry.embedded)
        return notices
    if local_name(root) == "alert":
        versions = ", ".join(f"{v} ({ns})" for ns, v in sorted(CAP_NAMESPACES.items()))
        raise SourceError(
            f"{what}: <alert> is in the namespace {namespace(root)!r}, which is no CAP version "
            f"Clarion reads: {versions}"
        )
    raise SourceError(
        f"{what}: root element <{local_name(root)}> is neither a CAP <alert> nor a feed"
    )


@dataclass(frozen=True)
class IndexEntry:
    """One entry of an Atom/RSS index of CAP documents."""

    id: str
    updated: str | None
    url: str | None
    embedded: Notice | None


def parse_index(body: bytes, *, what: str = "CAP index") -> list[IndexEntry]:
    return parse_index_root(parse_xml(body, what=what), what)


def parse_index_root(
    root: etree._Element,
    what: str,
    rejected: list[Rejected] | None = None,
    required_tests: str = "test",
) -> list[IndexEntry]:
    name = local_name(root)
    if name == "feed":
        items = children(root, "entry")
    elif name == "rss":
        channel = child(root, "channel")
        items = children(channel, "item") if channel is not None else []
    elif name == "RDF":
        items = children(root, "item")
    else:
        raise SourceError(f"{what}: root element <{name}> is not an Atom or RSS feed")
    entries = []
    for n, item in enumerate(items, 1):
        where = f"{what} entry {n}"
        embedded = None
        url = _entry_link(item)
        entry_id = child_text(item, "id") or child_text(item, "guid") or url
        try:
            for el in item.iter():
                if isinstance(el.tag, str) and _is_alert(el) and el is not item:
                    original = etree.tostring(el, encoding="UTF-8", xml_declaration=True)
                    embedded = alert_to_notice(el, original, where, required_tests)
                    break
        except ITEM_ERRORS as exc:
            error = item_error(exc, where)
            if rejected is None:
                raise error from None
            rejected.append(Rejected(entry_id or f"entry {n}", error.reason, str(error)))
            continue
        if entry_id is None and embedded is None:
            continue  # an empty <item/>: nothing to follow
        entries.append(
            IndexEntry(
                id=entry_id or (embedded.identifier if embedded else ""),
                updated=child_text(item, "updated") or child_text(item, "pubDate"),
                url=url,
                embedded=embedded,
            )
        )
    return entries


def _entry_link(item: etree._Element) -> str | None:
    links = children(item, "link")
    best = None
    for link in links:
        href: str | None = link.get("href")
        if href is None:
            href = text_of(link)
        if not href:
            continue
        if (link.get("type") or "") in CAP_CONTENT_TYPES:
            return href
        if best is None and link.get("rel") in (None, "alternate", "related"):
            best = href
    return best


class CapSource(PolledSource):
    """Polls one CAP document URL, or an Atom/RSS index whose entries link to CAP documents."""

    kind = "cap"
    accept = (
        "application/cap+xml, application/atom+xml, application/rss+xml, "
        "application/xml;q=0.9, */*;q=0.1"
    )

    def __init__(
        self,
        name: str,
        url: str,
        max_bytes: int,
        max_documents: int = 200,
        trusted: Sequence[x509.Certificate] = (),
        concurrency: int = 4,
        required_tests: str = "test",
    ) -> None:
        super().__init__(name, url, max_bytes)
        self.required_tests = required_tests
        self.max_documents = max_documents
        self.trusted = list(trusted)
        self.concurrency = concurrency

    def _verified(self, notices: list[Notice]) -> list[Notice]:
        if not self.trusted:
            return notices
        return [
            n.model_copy(update={"signature": verify_cap(n.original, self.trusted, n.sent)})
            if n.original is not None
            else n
            for n in notices
        ]

    def poll(self, state: FetchState, http: httpx.Client) -> PollResult:
        fetched = self.fetch(state, http)
        if not isinstance(fetched, Fetched):
            return PollResult([], fetched.state, not_modified=True)
        what = f"source {self.name}"
        root = parse_xml(fetched.body, what=what, max_bytes=self.max_bytes)
        if _is_alert(root):
            notice = alert_to_notice(root, fetched.body, what, self.required_tests)
            return PollResult(self._verified([notice]), fetched.state)  # one document: all or none
        rejected: list[Rejected] = []
        entries = parse_index_root(root, what, rejected, self.required_tests)
        # Each listed document is fetched once: the cursor remembers entry id → updated.
        seen: dict[str, Any] = dict(state.cursor.get("seen", {}))
        notices: list[Notice] = []
        brought: dict[str, str] = {}  # message → the entry that brought it
        current: dict[str, Any] = {}
        to_fetch: list[IndexEntry] = []
        for entry in entries:
            marker = entry.updated or ""
            if seen.get(entry.id) == marker:
                current[entry.id] = marker
                continue
            if entry.embedded is not None:
                notices.append(entry.embedded)
                brought[entry.embedded.identifier] = entry.id
                current[entry.id] = marker
            elif entry.url and len(to_fetch) < self.max_documents:
                to_fetch.append(entry)  # the rest wait for the next poll
        # Bounded concurrency: a storm can list hundreds of new documents at once.
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            docs = list(pool.map(lambda e: self._document(http, e, what), to_fetch))
        # One bad document never holds back the others: it is rejected with its reason. One
        # that could not be fetched is tried again next poll; one that was read and is
        # malformed is not, until its entry says it changed.
        for entry, doc in zip(to_fetch, docs, strict=True):
            if isinstance(doc, Rejected):
                rejected.append(doc)
                if doc.reason != "fetch_failed":
                    current[entry.id] = entry.updated or ""
                continue
            notices.extend(doc)
            brought.update((n.identifier, entry.id) for n in doc)
            current[entry.id] = entry.updated or ""
        # A document that could not be fetched is tried again at the next poll, even if the
        # index itself has not changed by then: its validators are not kept.
        retry = any(r.reason == "fetch_failed" for r in rejected)
        new_state = FetchState(
            etag=None if retry else fetched.state.etag,
            last_modified=None if retry else fetched.state.last_modified,
            cursor={"seen": current},
        )
        return PollResult(self._verified(notices), new_state, rejected=rejected, entries=brought)

    def _document(
        self, http: httpx.Client, entry: IndexEntry, what: str
    ) -> list[Notice] | Rejected:
        assert entry.url is not None
        where = f"{what} document {entry.url}"
        try:
            doc = conditional_get(
                http,
                entry.url,
                FetchState(),
                what=where,
                accept="application/cap+xml, application/xml;q=0.9",
                max_bytes=self.max_bytes,
            )
        except SourceError as exc:
            return Rejected(entry.id, "fetch_failed", str(exc))
        assert isinstance(doc, Fetched)
        try:
            return parse_cap(doc.body, what=where, required_tests=self.required_tests)
        except SourceError as exc:
            return Rejected(entry.id, exc.reason, str(exc))


def _build(name: str, cfg: CapSourceConfig) -> CapSource:
    return CapSource(
        name,
        cfg.url,
        cfg.max_bytes,
        cfg.max_documents,
        _certificates(name, cfg.trusted_certificates),
        cfg.concurrency,
        cfg.eas_required_tests,
    )


def _certificates(source: str, paths: list[Path]) -> list[x509.Certificate]:
    from clarion.configtypes import ConfigError
    from clarion.sources.capsig import load_certificates

    certs: list[x509.Certificate] = []
    for i, path in enumerate(paths):
        key = f"sources.{source}.trusted_certificates[{i}]"
        try:
            certs.extend(load_certificates([path.read_bytes()]))
        except OSError as exc:
            raise ConfigError([f"{key}: cannot read {path}: {exc.strerror}"]) from None
        except ValueError:
            raise ConfigError([f"{key}: {path} holds no PEM certificate"]) from None
    return certs


CONNECTOR = SourceConnector(
    kind="cap",
    config=CapSourceConfig,
    parse=lambda body, content_type: parse_cap(body),
    build=_build,
)
