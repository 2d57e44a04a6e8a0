"""What every HTTP-API channel shares: one request helper that turns transport failures and
error statuses into the dispatcher's error classes, with the platform's own message."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from clarion.channels.base import ChannelError, ErrorKind, Profile, RenderContext, Rendered
from clarion.model import Notice
from clarion.render.counting import COUNTERS
from clarion.render.text import Fitted, compose


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify_http(
    status: int, retry_after: float | None, what: str, detail: str = ""
) -> ChannelError:
    """Map an HTTP error status to what the dispatcher should do about it."""
    msg = f"{what} answered HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429:
        return ChannelError(ErrorKind.RATE_LIMITED, msg, retry_after)
    if status in (401, 403):
        return ChannelError(ErrorKind.AUTH, msg)
    if status in (408, 409, 425) or status >= 500:
        return ChannelError(ErrorKind.RETRYABLE, msg, retry_after)
    return ChannelError(ErrorKind.PERMANENT, msg)


def request(http: httpx.Client, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
    """Send; raise ChannelError(retryable) for transport failures. Statuses are the caller's."""
    try:
        return http.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # No connection was made: nothing reached the platform.
        raise ChannelError(ErrorKind.RETRYABLE, f"{what} unreachable: {exc}") from None
    except httpx.TimeoutException:
        raise ChannelError(
            ErrorKind.RETRYABLE, f"{what} timed out after the request was sent", maybe_sent=True
        ) from None
    except httpx.HTTPError as exc:  # the connection broke mid-way: it may have been posted
        raise ChannelError(
            ErrorKind.RETRYABLE, f"{what}: {type(exc).__name__}: {exc}", maybe_sent=True
        ) from None


def requests_maybe_sent(exc: BaseException) -> bool:
    """For the `requests`-based SDKs (tweepy): did the request possibly reach the platform?
    Only a failure to connect at all says no."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        import urllib3.exceptions

        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        return not isinstance(inner, urllib3.exceptions.NewConnectionError)
    return isinstance(exc, requests.exceptions.RequestException)


def json_body(resp: httpx.Response, what: str) -> Any:
    """The response's JSON, or a retryable error when a proxy answered garbage."""
    try:
        return resp.json()
    except ValueError:
        raise ChannelError(
            ErrorKind.RETRYABLE,
            f"{what} answered HTTP {resp.status_code} with no JSON",
            maybe_sent=resp.is_success,  # a success we cannot read: it was probably posted
        ) from None


class HttpChannel:
    """What the httpx-based channels share: one client, closing it, and fitting the text to
    the channel's profile (its limit, by its own counting rule)."""

    kind = ""
    profile = Profile(limit=None, counting=None)

    def __init__(
        self,
        name: str,
        *,
        timeout: float,
        languages: tuple[str, ...] = (),
        http: httpx.Client | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.languages = languages
        self._http = http or httpx.Client(timeout=timeout, headers=headers or {})

    def close(self) -> None:
        self._http.close()

    def fit(self, notice: Notice, ctx: RenderContext) -> Fitted:
        assert self.profile.limit is not None and self.profile.counting is not None
        return compose(
            notice,
            limit=self.profile.limit,
            count=COUNTERS[self.profile.counting],
            languages=self.languages or ctx.languages,
            permalink=ctx.permalink,
            template=ctx.template,
        )

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        r = self.fit(notice, ctx)
        return Rendered.from_row(
            {"text": r.text, "count": r.count, "limit": r.limit, "language": r.language}
        )
