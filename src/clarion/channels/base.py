"""The contract every channel implements, and the error classification the dispatcher acts on.

`render` is pure (what would go out, stored in the outbox row when the notice is ingested);
`send` is I/O only. A channel declares its platform's facts as data in its `profile`, with the
defaults from PLATFORMS.md; config may override them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
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
    notice: Notice
    payload: dict[str, Any]
    previous: Receipt | None  # this channel's latest post in the same thread, if any
    root: Receipt | None  # this channel's first post in the same thread, if any
    attempt: int
    # Parts of a split thread that an earlier attempt already posted, and a way to record each
    # part as it goes out (persisted under the delivery's lease).
    progress: dict[str, Any] | None = None
    checkpoint: Callable[[dict[str, Any]], object] | None = None


@dataclass(frozen=True)
class RenderContext:
    languages: tuple[str, ...]
    permalink: str | None
    template: str | None = None  # the channel's own Jinja2 template, if it has one


class Channel(Protocol):
    name: str
    kind: str
    profile: Profile

    def render(self, notice: Notice, ctx: RenderContext) -> dict[str, Any]: ...

    def send(self, out: Outgoing) -> Receipt: ...

    def close(self) -> None: ...


def close_all(channels: dict[str, Channel] | object) -> None:
    """Release every channel's connections (HTTP sessions)."""
    for ch in getattr(channels, "values", lambda: [])():
        ch.close()
