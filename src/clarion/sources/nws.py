"""api.weather.gov `/alerts/active`: the NWS's GeoJSON alerts, which list only what is active.

`parse_nws` is pure. Each feature is a CAP message in JSON clothing (the same `urn:oid`
identifiers as the NWS's CAP feed), so it maps onto the model the way CAP does, and its thread
key has the same form: an alert read here and the same alert read as CAP join one thread.
An alert that leaves the active list has ended (after `end_after` absences, so a brief drop-out
does not end it and then post it again).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import Field

from clarion import safejson
from clarion.configtypes import Duration, SourceConfigBase
from clarion.model import (
    CAP_MSG_TYPES,
    Area,
    Certainty,
    Info,
    MsgType,
    NameValue,
    Notice,
    Reference,
    Severity,
    Status,
    Urgency,
)
from clarion.sources.base import (
    ITEM_ERRORS,
    PolledSource,
    Rejected,
    SourceConnector,
    SourceError,
    aware_time,
    item_error,
)
from clarion.sources.cap import oldest_reference, thread_key_for


class NwsSourceConfig(SourceConfigBase):
    """api.weather.gov `/alerts/active` (GeoJSON), with the API's own filters."""

    kind: Literal["nws"]
    url: str = "https://api.weather.gov/alerts/active"
    interval: Duration = 60.0
    user_agent: str = Field(min_length=5, description="who you are and how to reach you")
    area: list[str] | None = None  # state/territory codes: ["MT", "WA"]
    zone: list[str] | None = None  # zone ids: ["MTZ014"]
    event: list[str] | None = None  # ["Flood Warning"]
    severity: list[str] | None = None
    urgency: list[str] | None = None
    certainty: list[str] | None = None
    end_after: int = Field(default=3, ge=1)


DEFAULT_URL = "https://api.weather.gov/alerts/active"


def _time(value: Any, field: str, where: str) -> datetime | None:
    return aware_time(value, f"{where}: {field}")


def _enum(value: Any, enum: Any, field: str, where: str) -> Any:
    if not isinstance(value, str):
        raise SourceError(f"{where}: {field} is missing")
    try:
        return enum(value.lower())
    except ValueError:
        raise SourceError(f"{where}: {field} {value!r} is not a CAP value") from None


def _str(props: dict[str, Any], key: str) -> str | None:
    value = props.get(key)
    return value.strip() or None if isinstance(value, str) else None


def _polygons(geometry: Any, where: str) -> list[list[tuple[float, float]]]:
    """GeoJSON [lon, lat] rings to the model's (lat, lon) rings."""
    if not geometry:
        return []
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    try:
        if kind == "Polygon":
            rings = [coords[0]]
        elif kind == "MultiPolygon":
            rings = [poly[0] for poly in coords]
        else:
            raise SourceError(f"{where}: geometry type {kind!r} is not a polygon")
        return [[(float(lat), float(lon)) for lon, lat, *_ in ring] for ring in rings]
    except (TypeError, ValueError, IndexError):
        raise SourceError(f"{where}: geometry coordinates are malformed") from None


def feature_to_notice(feature: dict[str, Any], where: str) -> Notice:
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise SourceError(f"{where}: feature has no properties")
    identifier = _str(props, "id")
    sender = _str(props, "sender")
    if not identifier or not sender:
        raise SourceError(f"{where}: feature lacks an id or a sender")
    where = f"{where} [{identifier}]"
    sent = _time(props.get("sent"), "sent", where)
    if sent is None:
        raise SourceError(f"{where}: sent is missing")
    msg_type = _enum(props.get("messageType"), MsgType, "messageType", where)
    if msg_type not in CAP_MSG_TYPES:
        raise SourceError(f"{where}: messageType {msg_type.value!r} is not a CAP value")
    references = []
    for ref in props.get("references") or []:
        try:
            references.append(
                Reference(sender=ref["sender"], identifier=ref["identifier"], sent=ref["sent"])
            )
        except (KeyError, TypeError):
            raise SourceError(f"{where}: a reference lacks sender, identifier or sent") from None
    raw_params = props.get("parameters") or {}
    # expiredReferences: earlier messages of the same event that have expired and so dropped
    # out of `references`; they still say which thread this message belongs to.
    for value in raw_params.get("expiredReferences") or []:
        for triple in str(value).split():
            parts = triple.split(",")
            if len(parts) == 3 and all(parts):
                references.append(Reference(sender=parts[0], identifier=parts[1], sent=parts[2]))
    params = [
        NameValue(name=k, value=str(v))
        for k, vs in raw_params.items()
        for v in (vs if isinstance(vs, list) else [vs])
    ]
    geocode = props.get("geocode") or {}
    geocodes = [NameValue(name=k, value=str(v)) for k, vs in geocode.items() for v in vs or []]
    area = Area(
        description=_str(props, "areaDesc") or "",
        polygons=_polygons(feature.get("geometry"), where),
        geocodes=geocodes,
    )
    nws_headline = (raw_params.get("NWSheadline") or [None])[0]
    info = Info(
        language="en-US",
        categories=[c for c in [_str(props, "category")] if c],
        event=_str(props, "event") or "",
        response_types=[r for r in [_str(props, "response")] if r],
        urgency=_enum(props.get("urgency"), Urgency, "urgency", where),
        severity=_enum(props.get("severity"), Severity, "severity", where),
        certainty=_enum(props.get("certainty"), Certainty, "certainty", where),
        effective=_time(props.get("effective"), "effective", where),
        onset=_time(props.get("onset"), "onset", where),
        expires=_time(props.get("expires"), "expires", where),
        sender_name=_str(props, "senderName"),
        headline=_str(props, "headline") or nws_headline,
        description=_str(props, "description"),
        instruction=_str(props, "instruction"),
        web=_str(props, "@id")
        or (feature.get("id") if isinstance(feature.get("id"), str) else None),
        parameters=params,
        areas=[area],
    )
    ends = _time(props.get("ends"), "ends", where)
    if ends is not None:
        info = info.model_copy(
            update={"parameters": [*params, NameValue(name="ends", value=ends.isoformat())]}
        )
    thread = thread_key_for(sender, identifier)
    if references:
        oldest = oldest_reference(references)
        thread = thread_key_for(oldest.sender, oldest.identifier)
    return Notice(
        kind="nws",
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=_enum(props.get("status"), Status, "status", where),
        msg_type=msg_type,
        scope=(_str(props, "scope") or "public").lower(),
        references=references,
        infos=[info],
        thread_key=thread,
        link=info.web,
        original=json.dumps(feature, ensure_ascii=False, sort_keys=True).encode(),
        original_content_type="application/geo+json",
    )


def parse_nws(
    body: bytes,
    content_type: str = "",
    *,
    what: str = "api.weather.gov",
    rejected: list[Rejected] | None = None,
) -> list[Notice]:
    """Parse an `/alerts` GeoJSON FeatureCollection. A repeated alert id keeps its first copy.

    With a `rejected` list, a feature that cannot be read is appended there (with its id when
    it has one) and the others are read; without one, the first bad feature raises."""
    try:
        data = safejson.loads(
            body, nul="replace", out_of_range="infinity"
        )  # one item's NUL spoils no other
    except safejson.JSONRefused as exc:
        raise SourceError(f"{what}: {exc}") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise SourceError(f"{what}: not a GeoJSON FeatureCollection")
    features = data.get("features")
    if not isinstance(features, list):
        raise SourceError(f"{what}: FeatureCollection has no 'features' list")
    seen: set[str] = set()
    notices = []
    for n, feature in enumerate(features, 1):
        try:
            if not isinstance(feature, dict):
                raise SourceError(f"{what}: feature {n} is not an object")
            notice = feature_to_notice(feature, f"{what} feature {n}")
        except ITEM_ERRORS as exc:
            error = item_error(exc, f"{what} feature {n}")
            if rejected is None:
                raise error from None
            item = _feature_id(feature) or f"feature {n}"
            rejected.append(Rejected(item, error.reason, str(error)))
            continue
        if notice.identifier in seen:
            continue
        seen.add(notice.identifier)
        notices.append(notice)
    return notices


def _feature_id(feature: Any) -> str | None:
    props = feature.get("properties") if isinstance(feature, dict) else None
    ident = props.get("id") if isinstance(props, dict) else None
    return ident.strip() or None if isinstance(ident, str) else None


class NwsSource(PolledSource):
    """Polls `/alerts/active` with the configured filters and the operator's User-Agent."""

    kind = "nws"
    accept = "application/geo+json"
    lists_active = True

    def __init__(
        self,
        name: str,
        url: str,
        max_bytes: int,
        *,
        user_agent: str,
        filters: dict[str, list[str]],
        end_after: int = 3,
    ) -> None:
        query = urlencode({k: ",".join(v) for k, v in filters.items() if v})
        super().__init__(name, f"{url}?{query}" if query else url, max_bytes)
        self.headers = {"User-Agent": user_agent}
        self.end_after = end_after

    def parse(
        self, body: bytes, content_type: str, rejected: list[Rejected] | None = None
    ) -> list[Notice]:
        return parse_nws(body, content_type, what=self.what, rejected=rejected)


def _build(name: str, cfg: NwsSourceConfig) -> NwsSource:
    filters = {
        k: v
        for k in ("area", "zone", "event", "severity", "urgency", "certainty")
        if (v := getattr(cfg, k))
    }
    return NwsSource(
        name,
        cfg.url,
        cfg.max_bytes,
        user_agent=cfg.user_agent,
        filters=filters,
        end_after=cfg.end_after,
    )


CONNECTOR = SourceConnector(
    kind="nws",
    config=NwsSourceConfig,
    parse=lambda body, content_type: parse_nws(body, content_type),
    build=_build,
)
