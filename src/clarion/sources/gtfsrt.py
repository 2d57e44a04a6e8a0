"""GTFS-realtime Service Alerts, as protobuf (gtfs-realtime-bindings) or its JSON form.

`parse_gtfsrt` is pure. A feed lists only what is active, and there is no cancel message: an
alert ends when its entity leaves the feed (the poller debounces that). Cause, effect and
severity become words; informed entities become the notice's entities; translations become one
info block per language, plain text preferred over `…-html` variants (converted to text when
they are the only form). The MTA's "Mercury" extension (field 1001 on the alert, `updated_at`
its field 2) marks edits when present; it is read from the unknown fields, so no MTA-specific
schema is compiled in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf import empty_pb2, json_format
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from google.transit import gtfs_realtime_pb2 as rt
from pydantic import Field

from clarion import safejson
from clarion.configtypes import Duration, SecretRef, SourceConfigBase
from clarion.model import Entity, Info, NameValue, Notice, Severity, storable
from clarion.sources.base import (
    ITEM_ERRORS,
    PolledSource,
    Rejected,
    SourceConnector,
    SourceError,
    item_error,
    sane_time,
)
from clarion.sources.feed import html_to_text


class GtfsRtSourceConfig(SourceConfigBase):
    """A GTFS-realtime Service Alerts feed (protobuf, or its JSON form)."""

    kind: Literal["gtfsrt"]
    interval: Duration = 60.0
    end_after: int = Field(default=3, ge=1)
    # Extra request headers; a value may be a secret reference (an API key):
    # headers = { "x-api-key" = { env = "MTA_KEY" } }
    headers: dict[str, str | SecretRef] = Field(default_factory=dict)

    def resolved_headers(self) -> dict[str, str]:
        return {k: v.resolve() if isinstance(v, SecretRef) else v for k, v in self.headers.items()}


MERCURY_ALERT_FIELD = 1001
MERCURY_UPDATED_AT_FIELD = 2

SEVERITY = {
    "UNKNOWN_SEVERITY": Severity.UNKNOWN,
    "INFO": Severity.MINOR,
    "WARNING": Severity.MODERATE,
    "SEVERE": Severity.SEVERE,
}


def words(enum_name: str) -> str:
    """`SIGNIFICANT_DELAYS` → `Significant delays`."""
    return enum_name.replace("_", " ").capitalize()


def _decode(body: bytes, content_type: str, what: str) -> tuple[rt.FeedMessage, list[Rejected]]:
    """The feed, and (JSON form) the entities that could not be read, each rejected alone."""
    feed = rt.FeedMessage()
    stripped = body.lstrip()
    if "json" in content_type.lower() or stripped[:1] == b"{":
        return _decode_json(body, what)
    try:
        feed.ParseFromString(body)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise SourceError(f"{what}: not a GTFS-realtime protobuf feed ({exc})") from None
    if not feed.HasField("header") or not feed.header.gtfs_realtime_version:
        raise SourceError(f"{what}: not a GTFS-realtime feed (no header with a version)")
    return feed, []


def _decode_json(body: bytes, what: str) -> tuple[rt.FeedMessage, list[Rejected]]:
    """GTFS-realtime's JSON form, read as every polled JSON source is (`safejson`: half an
    emoji or a NUL in one alert is U+FFFD, not a refusal of the feed; protobuf refuses an
    unpaired surrogate), and one entity at a time: protobuf's reader takes a document whole or
    not at all, so one entity with a value of the wrong type (a string as a period) refused
    the whole feed, every alert of the agency unposted with it."""
    feed = rt.FeedMessage()
    try:
        value = safejson.loads(body, nul="replace", out_of_range="infinity")
    except ValueError as exc:
        raise SourceError(f"{what}: not a GTFS-realtime JSON feed ({exc})") from None
    if not isinstance(value, dict):
        raise SourceError(f"{what}: not a GTFS-realtime JSON feed (not an object)")
    entities = value.get("entity") or []
    if not isinstance(entities, list):
        raise SourceError(f"{what}: not a GTFS-realtime JSON feed ('entity' is not a list)")
    try:
        head = {k: v for k, v in value.items() if k != "entity"}
        json_format.ParseDict(head, feed, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError) as exc:
        raise SourceError(f"{what}: not a GTFS-realtime JSON feed ({exc})") from None
    bad = []
    for n, item in enumerate(entities, 1):
        entity = rt.FeedEntity()
        try:
            json_format.ParseDict(item, entity, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
            ident = item.get("id") if isinstance(item, dict) else None
            name = ident if isinstance(ident, str) and ident else f"entity {n}"
            detail = " ".join(str(exc).split())[:300]
            bad.append(Rejected(name, "malformed", f"{what} entity {n}: {detail}"))
            continue
        feed.entity.add().CopyFrom(entity)
    return feed, bad


def _str(value: str | bytes) -> str:
    """A protobuf string field as text. GTFS-realtime is proto2, whose Python runtime hands
    back bytes when a producer put invalid UTF-8 in a string (found by fuzzing, see fuzz/):
    keep the text, with U+FFFD where the bytes were wrong. So is a NUL, which a protobuf
    string may hold and no PostgreSQL text can: one alert's NUL failed the whole feed's poll."""
    return storable(value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value)


def _translations(ts: Any) -> dict[str, str]:
    """language → plain text; `en-html` is used only when there is no plain `en`."""
    plain: dict[str, str] = {}
    html: dict[str, str] = {}
    for t in ts.translation:
        lang = _str(t.language) or ""
        if lang.lower().endswith("-html"):
            html[lang[: -len("-html")]] = _str(t.text)
        else:
            plain[lang] = _str(t.text)
    for lang, text in html.items():
        if lang not in plain:
            plain[lang] = html_to_text(text) or ""
    return {lang: " ".join(text.split()) for lang, text in plain.items() if text.strip()}


def _entities(selectors: Iterable[Any]) -> list[Entity]:
    out: list[Entity] = []
    for sel in selectors:
        if sel.agency_id:
            out.append(Entity(kind="agency", id=_str(sel.agency_id)))
        if sel.route_id:
            out.append(Entity(kind="route", id=_str(sel.route_id)))
        if sel.HasField("route_type"):
            out.append(Entity(kind="route_type", id=str(sel.route_type)))
        if sel.stop_id:
            out.append(Entity(kind="stop", id=_str(sel.stop_id)))
        if sel.HasField("trip") and (sel.trip.trip_id or sel.trip.route_id):
            out.append(Entity(kind="trip", id=_str(sel.trip.trip_id or sel.trip.route_id)))
    unique: dict[tuple[str, str], Entity] = {}
    for e in out:
        unique.setdefault((e.kind, e.id), e)
    return list(unique.values())


def _mercury_updated_at(alert: Any) -> datetime | None:
    for field in UnknownFieldSet(alert):
        if field.field_number == MERCURY_ALERT_FIELD and isinstance(field.data, bytes):
            inner = empty_pb2.Empty()
            inner.ParseFromString(field.data)
            for sub in UnknownFieldSet(inner):
                if sub.field_number == MERCURY_UPDATED_AT_FIELD and isinstance(sub.data, int):
                    return _ts(sub.data)
    return None


def _ts(seconds: int) -> datetime | None:
    if not seconds:
        return None
    try:
        t = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise SourceError(
            f"a time of {seconds} seconds is out of range", reason="invalid_date"
        ) from None
    return sane_time(t, "a time")


def _entity_notice(entity: Any, what: str, read_at: datetime) -> Notice | None:
    if entity.is_deleted or not entity.HasField("alert"):
        return None
    alert = entity.alert
    entity_id = _str(entity.id)
    where = f"{what} entity {entity_id!r}"
    if not entity_id:
        raise SourceError(f"{what}: an alert entity has no id")
    headers = _translations(alert.header_text)
    descriptions = _translations(alert.description_text)
    urls = _translations(alert.url)
    languages = list(dict.fromkeys([*headers, *descriptions])) or [""]
    cause = rt.Alert.Cause.Name(alert.cause) if alert.HasField("cause") else "UNKNOWN_CAUSE"
    effect = rt.Alert.Effect.Name(alert.effect) if alert.HasField("effect") else "UNKNOWN_EFFECT"
    severity_name = rt.Alert.SeverityLevel.Name(alert.severity_level)
    starts = [p.start for p in alert.active_period if p.start]
    ends = [p.end for p in alert.active_period]
    expires = _ts(max(ends)) if ends and all(ends) else None
    params = [
        NameValue(name="cause", value=words(cause)),
        NameValue(name="effect", value=words(effect)),
    ]
    infos = []
    for lang in languages:
        fallback = next(iter(headers.values()), None)
        infos.append(
            Info(
                language=lang or "en",
                categories=["Transport"],
                event=words(effect),
                severity=SEVERITY.get(severity_name, Severity.UNKNOWN),
                effective=_ts(min(starts)) if starts else None,
                expires=expires,
                headline=headers.get(lang) or fallback,
                description=descriptions.get(lang) or next(iter(descriptions.values()), None),
                web=urls.get(lang) or next(iter(urls.values()), None),
                parameters=params,
            )
        )
    if not any(i.headline or i.description for i in infos):
        raise SourceError(f"{where}: alert has neither header nor description text")
    entities = _entities(alert.informed_entity)
    agencies = [e.id for e in entities if e.kind == "agency"]
    updated = _mercury_updated_at(alert)
    return Notice(
        kind="gtfsrt",
        identifier=entity_id,
        sender=agencies[0] if agencies else "GTFS-realtime",
        sent=updated or read_at,
        sent_estimated=updated is None,
        infos=infos,
        entities=entities,
        thread_key=f"local:gtfsrt:{entity_id}",
        link=infos[0].web,
        original=entity.SerializePartialToString(),  # as received, even if incomplete
        original_content_type="application/x-protobuf",
    )


def parse_gtfsrt(
    body: bytes,
    content_type: str = "",
    *,
    what: str = "GTFS-rt feed",
    now: datetime | None = None,
    rejected: list[Rejected] | None = None,
) -> list[Notice]:
    """With a `rejected` list, an alert that cannot be read is appended there and the others
    are read; without one, the first bad alert raises."""
    feed, bad = _decode(body, content_type, what)
    if bad:
        if rejected is None:
            raise SourceError(bad[0].detail)
        rejected.extend(bad)
    read_at = _ts(feed.header.timestamp) or now or datetime.now(UTC)
    notices = []
    for n, entity in enumerate(feed.entity, 1):
        try:
            notice = _entity_notice(entity, what, read_at)
        except ITEM_ERRORS as exc:
            error = item_error(exc, f"{what} entity {n}")
            if rejected is None:
                raise error from None
            rejected.append(Rejected(_str(entity.id) or f"entity {n}", error.reason, str(error)))
            continue
        if notice is not None:
            notices.append(notice)
    return notices


class GtfsRtSource(PolledSource):
    kind = "gtfsrt"
    accept = "application/x-protobuf, application/json;q=0.5"
    lists_active = True

    def __init__(
        self,
        name: str,
        url: str,
        max_bytes: int,
        end_after: int = 3,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, url, max_bytes)
        self.end_after = end_after
        self.headers = headers or {}

    def parse(
        self, body: bytes, content_type: str, rejected: list[Rejected] | None = None
    ) -> list[Notice]:
        return parse_gtfsrt(body, content_type, what=self.what, rejected=rejected)


CONNECTOR = SourceConnector(
    kind="gtfsrt",
    config=GtfsRtSourceConfig,
    parse=lambda body, content_type: parse_gtfsrt(body, content_type),
    build=lambda name, cfg: GtfsRtSource(
        name, cfg.url, cfg.max_bytes, cfg.end_after, cfg.resolved_headers()
    ),
)
