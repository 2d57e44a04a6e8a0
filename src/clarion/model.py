"""The canonical model: one `Notice`, shaped after CAP 1.2, that every input maps onto.

Pure data. Nothing here does I/O, and nothing here knows about the database or any platform.

Why CAP: it is the international standard for public warnings (OASIS CAP 1.2, ITU-T X.1303),
and the other inputs (feeds, transit alerts, status incidents) are simpler special cases of it.
Field names follow CAP's own names in snake_case so that a reader of the CAP spec finds them.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Status(StrEnum):
    """CAP `status`: who the message is meant for."""

    ACTUAL = "actual"
    EXERCISE = "exercise"
    SYSTEM = "system"
    TEST = "test"
    DRAFT = "draft"


class MsgType(StrEnum):
    """CAP `msgType`: what the message does to its thread."""

    ALERT = "alert"
    UPDATE = "update"
    CANCEL = "cancel"
    ACK = "ack"
    ERROR = "error"
    # Clarion's own, not CAP's: the story ended without a message saying so (it left a feed
    # that lists only what is active, such as api.weather.gov or GTFS-realtime). Parsers never
    # produce it; the pipeline does, after the source's debounce.
    END = "end"

    @property
    def closes(self) -> bool:
        """A cancel or an end: the thread is over, whatever the severity."""
        return self in (MsgType.CANCEL, MsgType.END)


# Inputs whose messages are CAP messages (in XML or JSON): identifier and sent are frozen, and
# the message itself says whether it is an alert, an update or a cancellation.
CAP_KINDS = frozenset({"cap", "nws"})

CAP_MSG_TYPES = (MsgType.ALERT, MsgType.UPDATE, MsgType.CANCEL, MsgType.ACK, MsgType.ERROR)


class Severity(StrEnum):
    """CAP `severity`. `rank` orders them so routing can ask for "at least severe"."""

    UNKNOWN = "unknown"
    MINOR = "minor"
    MODERATE = "moderate"
    SEVERE = "severe"
    EXTREME = "extreme"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.UNKNOWN: 0,
    Severity.MINOR: 1,
    Severity.MODERATE: 2,
    Severity.SEVERE: 3,
    Severity.EXTREME: 4,
}


class Urgency(StrEnum):
    IMMEDIATE = "immediate"
    EXPECTED = "expected"
    FUTURE = "future"
    PAST = "past"
    UNKNOWN = "unknown"


class Certainty(StrEnum):
    OBSERVED = "observed"
    LIKELY = "likely"
    POSSIBLE = "possible"
    UNLIKELY = "unlikely"
    UNKNOWN = "unknown"


class SignatureState(StrEnum):
    """Whether the original bytes carried a signature, and whether it verified."""

    UNSIGNED = "unsigned"
    VALID = "valid"
    INVALID = "invalid"
    UNCHECKED = "unchecked"  # signed, but no trusted certificate was configured to check it


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def web_link(value: str | None) -> str | None:
    """A link the public may follow: http(s) only. `javascript:`, `data:`, `file:` and the
    like from a source never reach a page, a feed or a post."""
    if value is None:
        return None
    value = value.strip()
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    return value if scheme in ("http", "https") and "://" in value else None


class NameValue(_Data):
    """A CAP `valueName`/`value` pair: geocodes (SAME, UGC, FIPS…), event codes, parameters."""

    name: str
    value: str


class Circle(_Data):
    lat: float
    lon: float
    radius_km: float


MAX_RING_POINTS = 2000  # more than a page or an image can show of one area


def ring_ok(ring: list[tuple[float, float]]) -> bool:
    return all(
        math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
        for lat, lon in ring
    )


def simplify_ring(
    ring: list[tuple[float, float]], limit: int = MAX_RING_POINTS
) -> list[tuple[float, float]]:
    """At most `limit` points of `ring`, evenly taken, its first and last kept (so a closed
    ring stays closed). Linear: a 320,000-point polygon no longer makes a page never answer."""
    if len(ring) <= limit:
        return ring
    step = (len(ring) - 1) / (limit - 1)
    return [ring[round(i * step)] for i in range(limit)]


# An area's name and an info block's areas, as much as any page, post or card can use (CAP
# and the feeds set no bound: six names of 60,000 characters made the alert card take minutes).
MAX_AREA_NAME = 1000
MAX_AREAS = 1000


class Area(_Data):
    description: str
    polygons: list[list[tuple[float, float]]] = Field(default_factory=list)  # (lat, lon) rings
    circles: list[Circle] = Field(default_factory=list)
    geocodes: list[NameValue] = Field(default_factory=list)
    altitude: float | None = None
    ceiling: float | None = None

    @field_validator("description")
    @classmethod
    def _named(cls, value: str) -> str:
        return cut(value, MAX_AREA_NAME)

    @field_validator("polygons")
    @classmethod
    def _bounded(cls, rings: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        """Shapes as a page can show them, once, when the notice is made: a ring with a point
        that is no place on Earth (NaN, 1e999, latitude 200) is left out (the area keeps its
        description and geocodes), and a ring too detailed to draw is thinned."""
        return [simplify_ring(r) for r in rings if len(r) >= 3 and ring_ok(r)]

    @field_validator("circles")
    @classmethod
    def _placed(cls, circles: list[Circle]) -> list[Circle]:
        """A circle that is no place on Earth (a CAP `<circle>` of "inf,0 5" or "nan,nan 1")
        is left out, as a ring is: stored, its NaN or infinity was no JSON that PostgreSQL
        takes, and the whole poll it came in failed, every other alert of it with it."""
        return [
            c
            for c in circles
            if ring_ok([(c.lat, c.lon)]) and math.isfinite(c.radius_km) and c.radius_km >= 0
        ]

    @field_validator("altitude", "ceiling")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None


class Resource(_Data):
    """A CAP `resource`: a file that goes with the message (a map, an image, a document).
    `description` is what a reader who cannot see it should be told (it becomes alt text)."""

    description: str
    mime_type: str
    uri: str | None = None
    size: int | None = None
    digest: str | None = None  # SHA-1, as CAP defines it

    _link = field_validator("uri")(classmethod(lambda cls, v: web_link(v)))


class Entity(_Data):
    """Something affected that is not a place: a transit route or stop, a status component."""

    kind: str  # agency | route | route_type | stop | trip | component | …
    id: str
    name: str | None = None


# How long a message's identifier, sender and story key may be (the store's columns hold 512
# characters; a stored key is prefixed with its source's name). CAP and feeds set no bound,
# and on PostgreSQL one longer than the column failed the whole poll it came in.
MAX_NAME = 500
MAX_THREAD_KEY = 300


def storable(text: str) -> str:
    """`text` as every database, encoder and page can hold it: a NUL or half a surrogate pair
    (an emoji cut in two by a publisher counting UTF-16 units) becomes U+FFFD, as a browser
    shows it."""
    if text.isascii() and "\x00" not in text:
        return text
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text.replace("\x00", "\ufffd")


def bounded(value: str, limit: int) -> str:
    """`value`, or, when longer than `limit`, its start and its SHA-256: the same name always
    gives the same bounded one (a reference to a message finds it), two names differing only
    after the cut do not collide, and a bounded name is its own bound."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{value[: limit - 72]}#sha256={digest}"


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters cut at a space, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    return (head.rsplit(" ", 1)[0] if " " in head[limit // 2 :] else head).rstrip() + "…"


class Reference(_Data):
    """One earlier message this one refers to (CAP `references`: sender,identifier,sent)."""

    sender: str
    identifier: str
    sent: str  # kept as written: it identifies, it is not compared as a time

    @field_validator("sender", "identifier")
    @classmethod
    def _bounded(cls, value: str) -> str:
        return bounded(value, MAX_NAME)


class Info(_Data):
    """One CAP `info` block: the message in one language."""

    language: str = "en-US"
    categories: list[str] = Field(default_factory=list)
    event: str = ""
    response_types: list[str] = Field(default_factory=list)
    urgency: Urgency = Urgency.UNKNOWN
    severity: Severity = Severity.UNKNOWN
    certainty: Certainty = Certainty.UNKNOWN
    audience: str | None = None
    event_codes: list[NameValue] = Field(default_factory=list)
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    parameters: list[NameValue] = Field(default_factory=list)
    resources: list[Resource] = Field(default_factory=list)
    areas: list[Area] = Field(default_factory=list)

    _link = field_validator("web")(classmethod(lambda cls, v: web_link(v)))
    _few_areas = field_validator("areas")(classmethod(lambda cls, v: v[:MAX_AREAS]))


# Parameters that carry the end of the event (not of the message): api.weather.gov's `ends`
# (kept as a parameter by the nws parser) and NWS CAP's `eventEndingTime`.
END_PARAMETERS = ("ends", "eventendingtime")


def info_ends(info: Info, names: tuple[str, ...] = END_PARAMETERS) -> datetime | None:
    """The event's end, by the first of `names` present (`ends`, the API's own field, wins
    over `eventEndingTime`)."""
    for name in names:
        for p in info.parameters:
            if p.name.lower() == name and p.value.strip():
                try:
                    t = datetime.fromisoformat(p.value.strip())
                except ValueError:
                    continue
                if t.tzinfo is not None:
                    return t
    return None


class Notice(_Data):
    """One version of one story, from any source.

    `thread_key` ties every version of a story together; `version` orders them (1, 2, …) and is
    assigned by the store, not by parsers. `original` keeps the bytes exactly as received, so a
    signed CAP message can be republished byte for byte.
    """

    kind: str  # which parser made it: cap | feed | manual | …
    source: str = ""  # the configured source name; set by the pipeline
    identifier: str
    sender: str
    sent: datetime
    status: Status = Status.ACTUAL
    msg_type: MsgType = MsgType.ALERT
    scope: str = "public"
    references: list[Reference] = Field(default_factory=list)
    note: str | None = None
    codes: list[str] = Field(default_factory=list)
    incidents: list[str] = Field(default_factory=list)
    infos: list[Info] = Field(default_factory=list)
    entities: list[Entity] = Field(default_factory=list)
    # Keys starting "local:" are unique only within one source (a GTFS-rt entity id, a
    # Statuspage incident id); the pipeline makes them "local:SOURCE:…" on ingest.
    thread_key: str
    version: int = 0
    link: str | None = None

    _link = field_validator("link")(classmethod(lambda cls, v: web_link(v)))

    @field_validator("sender", "identifier")
    @classmethod
    def _bounded(cls, value: str) -> str:
        return bounded(value, MAX_NAME)

    @field_validator("thread_key")
    @classmethod
    def _bounded_key(cls, value: str) -> str:
        return bounded(value, MAX_THREAD_KEY)

    # True when the source gives no time of its own for the message (a GTFS-rt alert without
    # an edit stamp): `sent` is then when Clarion read it, and is no part of what it says.
    sent_estimated: bool = False
    original: bytes | None = Field(default=None, repr=False)
    original_content_type: str | None = None
    signature: SignatureState = SignatureState.UNSIGNED

    # --- derived views -------------------------------------------------------------------

    def info(self, languages: tuple[str, ...] = ()) -> Info | None:
        """The info block to show: the first whose language matches a preference, else the first.

        A preference `en` matches `en-US` and `en-CA`; `fr-CA` matches only `fr-CA`.
        """
        for wanted in languages:
            w = wanted.lower()
            for info in self.infos:
                lang = info.language.lower()
                if lang == w or lang.split("-")[0] == w:
                    return info
        return self.infos[0] if self.infos else None

    @property
    def severity(self) -> Severity:
        if not self.infos:
            return Severity.UNKNOWN
        return max((i.severity for i in self.infos), key=lambda s: s.rank)

    @property
    def expires(self) -> datetime | None:
        times = [i.expires for i in self.infos if i.expires is not None]
        return max(times) if times else None

    @property
    def ends(self) -> datetime | None:
        """When the event itself ends, where the message says (api.weather.gov `ends`, NWS CAP
        `eventEndingTime`): a message may expire (be due for re-issue) while its hazard goes on."""
        names = ("ends",) if self.kind == "nws" else END_PARAMETERS
        times = [t for i in self.infos if (t := info_ends(i, names)) is not None]
        return max(times) if times else None

    @property
    def over_at(self) -> datetime | None:
        """When the alert is over by the clock: each info's event end when it has one, else its
        message's expiry (weather.gov's own rule: `ends ?? expires`). None: no end is known."""
        times = []
        # api.weather.gov: its `ends` property alone (weather.gov's own code reads no other);
        # its parameters may carry an eventEndingTime that the property supersedes.
        names = ("ends",) if self.kind == "nws" else END_PARAMETERS
        for info in self.infos:
            t = info_ends(info, names) or info.expires
            if t is None:
                return None  # one language with no end: the message says nothing of an end
            times.append(t)
        return max(times) if times else None

    @property
    def categories(self) -> set[str]:
        return {c.lower() for i in self.infos for c in i.categories}

    @property
    def geocodes(self) -> set[tuple[str, str]]:
        return {(g.name.upper(), g.value) for i in self.infos for a in i.areas for g in a.geocodes}

    @property
    def headline(self) -> str:
        info = self.info()
        if info is None:
            return f"{self.msg_type.value.capitalize()} from {self.sender}"
        return info.headline or info.event or self.identifier

    def content_hash(self) -> str:
        """A fingerprint of what the notice says, for "is this re-fetch a change?".

        Excludes what the pipeline assigns (source, version) and the raw bytes, whose
        whitespace or signature may change while the message does not.
        """
        exclude = {"source", "version", "original", "thread_key"}
        if self.sent_estimated:
            exclude.add("sent")
        body = self.model_dump_json(exclude=exclude)
        return hashlib.sha256(body.encode()).hexdigest()

    def to_json_dict(self) -> dict[str, object]:
        """The model as JSON-ready data, without the raw bytes (which go in their own column)."""
        return self.model_dump(mode="json", exclude={"original"})
