"""Push sources: notices POSTed to `/hooks/{source}` as JSON (the schema below) or as CAP XML.

`parse_push` is pure. The JSON schema is deliberately small and CAP-shaped; it is served in the
API's OpenAPI document and in docs/push.md. Authentication (Standard Webhooks signatures,
replays, stale timestamps) is the web endpoint's job (`clarion.web.hooks`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from clarion import safejson
from clarion.configtypes import SecretRef, SourceConfigCommon
from clarion.model import (
    Area,
    Certainty,
    Entity,
    Info,
    MsgType,
    NameValue,
    Notice,
    Reference,
    Severity,
    Status,
    Urgency,
)
from clarion.sources.base import SourceConnector, SourceError, sane_time
from clarion.sources.cap import parse_cap, thread_key_for


class PushSourceConfig(SourceConfigCommon):
    """Notices pushed to Clarion: `POST /hooks/NAME`, signed per Standard Webhooks."""

    kind: Literal["push"]
    secret: SecretRef
    max_bytes: int = Field(default=1024 * 1024, ge=1024)


class PushArea(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str
    geocodes: dict[str, list[str]] = Field(default_factory=dict, examples=[{"UGC": ["MTZ014"]}])
    polygons: list[list[tuple[float, float]]] = Field(default_factory=list)


class PushEntity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(examples=["route"])
    id: str
    name: str | None = None


class PushNotice(BaseModel):
    """One notice pushed as JSON. Only `identifier`, `sent` and `headline` are required."""

    model_config = ConfigDict(extra="forbid")
    identifier: str = Field(min_length=1, max_length=512, description="unique per sender")
    sender: str | None = Field(default=None, description="defaults to the source's name")
    sent: AwareDatetime
    status: Status = Status.ACTUAL
    msg_type: MsgType = MsgType.ALERT
    references: list[str] = Field(
        default_factory=list, description="identifiers of earlier notices of the same sender"
    )
    language: str = "en"
    headline: str = Field(min_length=1, max_length=1000)
    event: str | None = None
    description: str | None = None
    instruction: str | None = None
    severity: Severity = Severity.UNKNOWN
    urgency: Urgency = Urgency.UNKNOWN
    certainty: Certainty = Certainty.UNKNOWN
    categories: list[str] = Field(default_factory=list)
    web: str | None = None
    effective: AwareDatetime | None = None
    expires: AwareDatetime | None = None
    areas: list[PushArea] = Field(default_factory=list)
    entities: list[PushEntity] = Field(default_factory=list)

    @field_validator("sent", "effective", "expires")
    @classmethod
    def _sane(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return sane_time(value, "the date")
        except SourceError as exc:
            raise ValueError(str(exc)) from None

    def to_notice(self, default_sender: str, original: bytes) -> Notice:
        if self.msg_type is MsgType.END:
            raise SourceError("msg_type 'end' is Clarion's own; push a cancel instead")
        sender = self.sender or default_sender
        info = Info(
            language=self.language,
            categories=self.categories,
            event=self.event or self.headline,
            urgency=self.urgency,
            severity=self.severity,
            certainty=self.certainty,
            effective=self.effective,
            expires=self.expires,
            sender_name=sender,
            headline=self.headline,
            description=self.description,
            instruction=self.instruction,
            web=self.web,
            areas=[
                Area(
                    description=a.description,
                    polygons=a.polygons,
                    geocodes=[
                        NameValue(name=k, value=v) for k, vs in a.geocodes.items() for v in vs
                    ],
                )
                for a in self.areas
            ],
        )
        refs = [Reference(sender=sender, identifier=r, sent="") for r in self.references]
        first = self.references[0] if self.references else self.identifier
        return Notice(
            kind="push",
            identifier=self.identifier,
            sender=sender,
            sent=self.sent,
            status=self.status,
            msg_type=self.msg_type,
            references=refs,
            infos=[info],
            entities=[Entity(kind=e.kind, id=e.id, name=e.name) for e in self.entities],
            thread_key=thread_key_for(sender, first).replace("cap:", "push:", 1),
            link=self.web,
            original=original,
            original_content_type="application/json",
        )


class PushBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notices: list[PushNotice] = Field(min_length=1, max_length=1000)


def parse_push(body: bytes, content_type: str, *, source: str, what: str = "push") -> list[Notice]:
    """A JSON notice, a JSON `{"notices": [...]}` batch, or a CAP document."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype.endswith("xml") or body.lstrip()[:1] == b"<":
        return parse_cap(body, what=what)
    try:
        data = safejson.loads(body)
    except safejson.JSONRefused as exc:
        raise SourceError(f"{what}: {exc}") from None
    try:
        if isinstance(data, dict) and "notices" in data:
            items = PushBatch.model_validate(data).notices
        else:
            items = [PushNotice.model_validate(data)]
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise SourceError(f"{what}: {loc}: {first['msg']}") from None
    return [n.to_notice(source, json.dumps(n.model_dump(mode="json")).encode()) for n in items]


__all__ = ["PushNotice", "datetime", "parse_push"]


# Pushed to Clarion (`POST /hooks/NAME`), never polled: no `build`.
CONNECTOR = SourceConnector(
    kind="push",
    config=PushSourceConfig,
    parse=lambda body, content_type: parse_push(body, content_type, source="push"),
)
