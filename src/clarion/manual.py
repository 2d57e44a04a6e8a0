"""Notices written by people (the API's write endpoints, `clarion post`): an alert, then its
updates and its cancellation, each a new version of the same thread, referring to the last."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from clarion.config import Config
from clarion.model import (
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


class GeocodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, examples=["UGC"])
    value: str = Field(min_length=1, max_length=128, examples=["MTZ014"])


class AreaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1, max_length=1000)
    geocodes: list[GeocodeIn] = Field(default_factory=list, max_length=100)


class NoticeIn(BaseModel):
    """A notice as a person writes it: the CAP fields that matter, with sane defaults."""

    model_config = ConfigDict(extra="forbid")
    headline: str = Field(min_length=1, max_length=500)
    event: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    instruction: str | None = Field(default=None, max_length=5_000)
    severity: Severity = Severity.UNKNOWN
    urgency: Urgency = Urgency.UNKNOWN
    certainty: Certainty = Certainty.UNKNOWN
    categories: list[str] = Field(default_factory=lambda: ["Other"], max_length=12)
    status: Status = Status.ACTUAL
    areas: list[AreaIn] = Field(default_factory=list, max_length=100)
    expires: datetime | None = None
    web: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    language: str | None = Field(default=None, max_length=35)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _info(config: Config, inp: NoticeIn) -> Info:
    expires = inp.expires
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return Info(
        language=inp.language or config.clarion.languages[0],
        categories=inp.categories,
        event=inp.event or inp.headline,
        urgency=inp.urgency,
        severity=inp.severity,
        certainty=inp.certainty,
        headline=inp.headline,
        description=inp.description or None,
        instruction=inp.instruction or None,
        web=inp.web,
        expires=expires,
        sender_name=config.clarion.publisher_name,
        areas=[
            Area(
                description=a.description,
                geocodes=[NameValue(name=g.name, value=g.value) for g in a.geocodes],
            )
            for a in inp.areas
        ],
    )


class FollowUpError(ValueError):
    """A follow-up that would change what its story is (its status)."""


def new_alert(config: Config, inp: NoticeIn, *, kind: str = "manual") -> Notice:
    ident = f"{kind}-{uuid.uuid4()}"
    return Notice(
        kind=kind,
        identifier=ident,
        sender=config.clarion.publisher_name,
        sent=_now(),
        status=inp.status,
        thread_key=f"{kind}:{ident}",
        link=inp.web,
        infos=[_info(config, inp)],
    )


def follow_up(
    config: Config,
    previous: Notice,
    msg_type: MsgType,
    inp: NoticeIn | None = None,
    note: str | None = None,
) -> Notice:
    """An update (new content) or a cancellation of `previous`, in its thread.

    A follow-up has its story's status: an Actual alert is never updated or cancelled by a
    Test or Exercise message (which needs no approval), and the other way round."""
    if inp is not None and inp.status != previous.status:
        raise FollowUpError(
            f"A follow-up of a {previous.status.value} notice is {previous.status.value} too "
            f"(it was given status {inp.status.value!r})."
        )
    infos = [_info(config, inp)] if inp is not None else list(previous.infos)
    return Notice(
        kind=previous.kind,
        identifier=f"{previous.kind}-{uuid.uuid4()}",
        sender=previous.sender,
        sent=max(_now(), previous.sent),
        status=previous.status,
        msg_type=msg_type,
        references=[
            Reference(
                sender=previous.sender,
                identifier=previous.identifier,
                sent=previous.sent.isoformat(),
            )
        ],
        note=note,
        thread_key=previous.thread_key,
        link=(inp.web if inp is not None else None) or previous.link,
        infos=infos,
    )
