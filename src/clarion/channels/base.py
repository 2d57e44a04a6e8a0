"""The contract every channel implements, and the error classification the dispatcher acts on.

`render` is pure (what would go out, stored in the outbox row when the notice is ingested);
`send` is I/O only. A channel declares its platform's facts as data in its `profile`, with the
defaults from PLATFORMS.md; config may override them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol

from clarion.model import Notice


class ErrorKind(StrEnum):
    RETRYABLE = "retryable"  # a timeout, a 5xx, a reset connection: try again later
    RATE_LIMITED = "rate_limited"  # the platform said slow down: wait as long as it says
    AUTH = "auth"  # the credential is wrong, expired or revoked: hold until an operator fixes it
    PERMANENT = "permanent"  # this post will never be accepted as it is: do not retry


class ChannelError(Exception):
    """`maybe_sent`: the request may have reached the platform before the failure (the answer
    timed out, or the connection broke after the request was written). On a platform without
    an idempotency key the dispatcher flags such a delivery instead of sending it again."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        retry_after: float | None = None,
        *,
        maybe_sent: bool = False,
    ) -> None:
        from clarion.redact import redact

        message = redact(message)  # what is stored and shown never holds a secret
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


@dataclass(frozen=True)
class Profile:
    """A platform's rules as data (defaults from PLATFORMS.md)."""

    limit: int | None  # text limit, in the unit `counting` names
    counting: str | None  # graphemes | mastodon | x-weighted | utf8-bytes
    threads: bool = False  # can reply under an earlier post
    edit: bool = False
    delete: bool = False
    idempotency: bool = False  # a key makes a repeated send harmless (safe to resend after a crash)
    rate_limit: tuple[int, float] | None = None  # (requests, per seconds)
    cost_per_post: float = 0.0
    images: bool = False  # carries the alert's images (CAP resources), with alt text
    # Deliveries to one channel sent at once (of different stories: a story's versions always
    # go one after the other). 1 keeps posts in the order their stories came.
    max_in_flight: int = 1


@dataclass(frozen=True)
class ChannelLimits:
    """Caps and budget for one channel; `reserve` is the share kept for severe notices."""

    daily_cap: int | None = None
    monthly_cap: int | None = None
    monthly_budget: float | None = None
    reserve: float = 0.2
    over_limit: str = "wait"  # or "skip"


@dataclass(frozen=True)
class Receipt:
    post_id: str
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outgoing:
    """One outbox row handed to `send`: everything the channel needs, nothing it must look up."""

    id: str  # the delivery id: the idempotency key
    # The notice, or how to read it (the dispatcher passes a loader: most deliveries never
    # need the notice, and reading it from the stored JSON was a tenth of a webhook
    # delivery's time). Channels read `notice`.
    notice_or_loader: Notice | Callable[[], Notice]
    # The rendered payload, or its JSON text as stored (the dispatcher passes the text: a
    # webhook posts it without decoding it). Channels read `payload` (or `payload_json`).
    payload_or_json: dict[str, Any] | str
    previous: Receipt | None  # this channel's latest post in the same thread, if any
    root: Receipt | None  # this channel's first post in the same thread, if any
    attempt: int
    # Parts of a split thread that an earlier attempt already posted, and a way to record each
    # part as it goes out (persisted under the delivery's lease).
    progress: dict[str, Any] | None = None
    checkpoint: Callable[[dict[str, Any]], object] | None = None

    @property
    def rendered(self) -> Rendered:
        """The payload, typed: what `render` returned at ingest."""
        return Rendered.from_row(self.payload)

    @cached_property
    def payload(self) -> dict[str, Any]:
        """The rendered payload (decoded once, when a channel first asks)."""
        given = self.payload_or_json
        if isinstance(given, str):
            given = json.loads(given)
            assert isinstance(given, dict), "a delivery's payload is a JSON object"
        return given

    @property
    def payload_json(self) -> str | None:
        """The payload's JSON text as stored, when that is what was given (else None)."""
        given = self.payload_or_json
        return given if isinstance(given, str) else None

    @cached_property
    def notice(self) -> Notice:
        """The notice being delivered (read once, when a channel first asks)."""
        given = self.notice_or_loader
        return given if isinstance(given, Notice) else given()


@dataclass(frozen=True)
class RenderContext:
    languages: tuple[str, ...]
    permalink: str | None
    template: str | None = None  # the channel's own Jinja2 template, if it has one
    thread_id: int | None = None  # the story's number (the fediverse Note's context)


@dataclass(frozen=True)
class Post:
    """One post: its text, its length as the platform counts it, and its rich-text facets."""

    text: str
    count: int | None = None
    facets: tuple[Any, ...] = ()  # Bluesky's byte-indexed links, mentions, tags


@dataclass(frozen=True)
class Media:
    """An image the post carries (a CAP resource), with its description as alt text."""

    uri: str
    alt: str = ""


# The outbox row's keys that Rendered types; every other key is the platform's own `fields`.
_TYPED = (
    "text",
    "count",
    "facets",
    "thread",
    "limit",
    "language",
    "media",
    "cost",
    "warnings",
    "as_new",
)


@dataclass(frozen=True)
class Rendered:
    """What a channel will send for one notice, decided at ingest (`Channel.render`): the
    posts (the first is the message; more are its numbered replies), what they are measured
    against, the images with alt text, the price, warnings, and the platform's own fields
    (Slack blocks, Discord embeds, an e-mail's subject and HTML, the webhook's JSON, an
    ActivityPub activity). `to_row()` is what the outbox row stores and `send` reads;
    `from_row` reads it back, equal (tests/test_rendered.py).

    `as_new`: True when this rendering words an update as a new alert (nothing of its story
    reached the channel), or the new-alert wording to use instead if, when it is sent, nothing
    of the story was posted there after all."""

    posts: tuple[Post, ...] = ()
    limit: int | None = None
    language: str | None = None
    media: tuple[Media, ...] = ()
    cost: float = 0.0
    warnings: tuple[str, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)
    as_new: bool | Rendered = False

    @property
    def text(self) -> str:
        return self.posts[0].text if self.posts else ""

    @property
    def parts(self) -> int:
        return len(self.posts)

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = dict(self.fields)
        if self.posts:
            first = self.posts[0]
            row["text"] = first.text
            if first.count is not None:
                row["count"] = first.count
            if first.facets:
                row["facets"] = list(first.facets)
        if len(self.posts) > 1:
            row["thread"] = [
                {
                    "text": p.text,
                    "count": p.count,
                    **({"facets": list(p.facets)} if p.facets else {}),
                }
                for p in self.posts[1:]
            ]
        if self.limit is not None:
            row["limit"] = self.limit
        if self.language is not None:
            row["language"] = self.language
        if self.media:
            row["media"] = [{"uri": m.uri, "alt": m.alt} for m in self.media]
        if self.cost:
            row["cost"] = self.cost
        if self.warnings:
            row["warnings"] = list(self.warnings)
        if isinstance(self.as_new, Rendered):
            row["as_new"] = self.as_new.to_row()
        elif self.as_new:
            row["as_new"] = True
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rendered:
        posts: list[Post] = []
        if isinstance(row.get("text"), str):
            posts.append(Post(row["text"], row.get("count"), tuple(row.get("facets") or ())))
            for part in row.get("thread") or []:
                posts.append(Post(part["text"], part.get("count"), tuple(part.get("facets") or ())))
        as_new = row.get("as_new", False)
        return cls(
            posts=tuple(posts),
            limit=row.get("limit"),
            language=row.get("language"),
            media=tuple(Media(m["uri"], m.get("alt") or "") for m in row.get("media") or []),
            cost=float(row.get("cost") or 0.0),
            warnings=tuple(row.get("warnings") or ()),
            fields={k: v for k, v in row.items() if k not in _TYPED},
            as_new=cls.from_row(as_new) if isinstance(as_new, Mapping) else bool(as_new),
        )

    def replace(self, **changes: Any) -> Rendered:
        import dataclasses

        return dataclasses.replace(self, **changes)


class Channel(Protocol):
    name: str
    kind: str
    profile: Profile

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered: ...

    def send(self, out: Outgoing) -> Receipt: ...

    def close(self) -> None: ...


def close_all(channels: dict[str, Channel] | object) -> None:
    """Release every channel's connections (HTTP sessions)."""
    for ch in getattr(channels, "values", lambda: [])():
        ch.close()


@dataclass(frozen=True)
class Deps:
    """What a connector's `build` is handed: everything from outside its own config table.

    `secret(key, ref)` is the resolved secret (a credential stored from the desk wins over the
    config's reference); `guarded` and `fetcher` are HTTP clients that keep to the SSRF guard."""

    name: str
    languages: tuple[str, ...]
    public_url: str | None
    allow: tuple[Any, ...]  # networks that may be reached although not public
    stored: Mapping[str, str]  # this channel's credentials stored from the desk (decrypted)
    publisher: str = ""  # the publisher's name, for the alert card
    timezone: str = "UTC"  # the publisher's time zone, for the alert card's times

    def card(self) -> tuple[Any, str]:
        """What the alert card needs beyond the notice: (time zone, publisher)."""
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone), self.publisher

    def secret(self, key: str, ref: object) -> str:
        from clarion.configtypes import ConfigError, SecretRef

        if key in self.stored:
            return self.stored[key]
        assert isinstance(ref, SecretRef), f"{key} is not a secret reference"
        try:
            return ref.resolve()
        except ValueError as exc:
            raise ConfigError([f"channels.{self.name}.{key}: {exc}"]) from None

    def optional_secret(self, key: str, ref: object | None) -> str | None:
        return self.secret(key, ref) if ref is not None or key in self.stored else None

    def guarded(self, timeout: float, *, follow_redirects: bool = False) -> Any:
        """A client for addresses strangers choose (followers' servers, webhook URLs)."""
        from clarion.net import guarded_client

        return guarded_client(
            list(self.allow),
            timeout=timeout,
            follow_redirects=follow_redirects,
            max_redirects=5,
        )

    def fetcher(self, timeout: float, wanted: bool = True) -> Any:
        """A guarded client for the addresses an alert names (its images, its link's page);
        None when the channel fetches nothing."""
        return self.guarded(timeout, follow_redirects=True) if wanted else None


@dataclass(frozen=True)
class ChannelConnector:
    """A platform, declared by its module: `CONNECTOR = ChannelConnector(...)`.

    `config` is its pydantic model (with `kind: Literal["…"]`); `profile` its platform's facts
    (the defaults a channel starts from); `build(cfg, deps)` the channel; `offline(thread_parts)`
    the same channel with placeholder credentials, for previews (`clarion render`), or None when
    previewing it makes no sense. The registry (`clarion.registry`) assembles the config
    union, the CLI's lists, the preview limits and the docs' table from these."""

    kind: str
    config: type[Any]
    profile: Profile
    build: Callable[[Any, Deps], Channel]
    offline: Callable[[int], Channel] | None = None

    @property
    def summary(self) -> str:
        return " ".join((self.config.__doc__ or "").split())

    @property
    def threadable(self) -> bool:
        return "thread_parts" in self.config.model_fields


class _LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<module {self._name} (imported on first use)>"


def lazy_module(name: str) -> Any:
    """`name`, imported on first attribute use: a platform's SDK is loaded only when a channel
    of it is built or sends, so validating a config or listing the registry loads none.
    (Used under `if not TYPE_CHECKING`, with the real import for the type checker.)"""
    return _LazyModule(name)
