"""The contract every source implements, and the one error type parsers raise.

A source has two halves: `fetch` (I/O only: get bytes, honour conditional GET) and `parse`
(pure: bytes in, notices out). Keeping them apart is what lets every parser be tested on real
payloads without sockets, and lets `clarion parse FILE` show exactly what a poll would ingest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from clarion.decoding import ACCEPT_ENCODING, DecodingError
from clarion.model import Notice
from clarion.net import TooLarge, read_limited


class SourceError(Exception):
    """Bad input from a source: the message says what is wrong in words an operator can act on.

    `retry_after` carries a server's Retry-After (seconds), which the poller honours.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, reason: str = "malformed"
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason  # a short class for counting rejections: invalid_date, malformed…


# What reading one item of a listing raises: a SourceError, or, when the item is not the
# shape its format promises (a number where a link belongs, a string where a list does; a
# pydantic ValidationError is a ValueError), one of the others. Found by mutating one item of
# real NWS, Statuspage and JSON Feed documents: each such item made the whole listing fail,
# every alert in it lost. Caught around each item alone, never around a whole document.
ITEM_ERRORS: tuple[type[Exception], ...] = (
    SourceError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    ValueError,
)


def item_error(exc: Exception, where: str) -> SourceError:
    """`exc`, raised while reading one item (`where`), as the SourceError that rejects that
    item alone: an operator reads which item, and what was wrong with it, in one line."""
    if isinstance(exc, SourceError):
        return exc
    detail = " ".join(str(exc).split())
    if len(detail) > 300:
        detail = detail[:299] + "…"
    return SourceError(
        f"{where}: not in the shape its format promises ({type(exc).__name__}: {detail})"
    )


@dataclass(frozen=True)
class Rejected:
    """One item of a listing that could not be read; the rest of the listing goes through.

    `item` is the item's own id where it could be read (so a live alert whose new version is
    unreadable is not taken for gone), else its place ("feature 3")."""

    item: str
    reason: str
    detail: str


# Dates outside these years are not dates a public notice can carry (a year 9999 is a
# placeholder or an attack); they are refused rather than overflowing arithmetic later.
MIN_YEAR, MAX_YEAR = 1970, 2200
MAX_FETCH_SECONDS = 120  # a whole answer, however slowly it drips


def aware_time(value: Any, what: str) -> datetime | None:
    """An ISO 8601 date-time with a UTC offset, or None for None; else a SourceError naming it.

    `what` names the field where it stands, e.g. "source nws feature 3 [urn:…]: expires".
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise SourceError(f"{what} is not a string", reason="invalid_date")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SourceError(
            f"{what} {value!r} is an invalid timestamp", reason="invalid_date"
        ) from None
    if parsed.tzinfo is None:
        raise SourceError(f"{what} {value!r} has no UTC offset", reason="invalid_date")
    return sane_time(parsed, what)


def sane_time(parsed: datetime, what: str) -> datetime:
    """`parsed` if its year is one a notice can carry, else a SourceError naming the field."""
    try:
        year = parsed.astimezone(UTC).year
    except OverflowError:
        year = parsed.year
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise SourceError(
            f"{what} {parsed.isoformat()!r} is out of range (years {MIN_YEAR}–{MAX_YEAR})",
            reason="invalid_date",
        )
    return parsed


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class FetchState:
    """What a source remembers between polls (stored in the `sources` table)."""

    etag: str | None = None
    last_modified: str | None = None
    cursor: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fetched:
    body: bytes
    content_type: str
    state: FetchState
    url: str = ""
    link_header: str | None = None


@dataclass(frozen=True)
class NotModified:
    state: FetchState


@dataclass(frozen=True)
class PollResult:
    notices: list[Notice]
    state: FetchState
    not_modified: bool = False
    websub: Any = None  # the hub a feed advertises (websub.Advertised), if any
    rejected: list[Rejected] = field(default_factory=list)  # items that could not be read
    # An index source's messages → the key its cursor keeps under "seen" for the entry that
    # brought each (a CAP index: each listed document is fetched once).
    entries: dict[str, str] = field(default_factory=dict)

    @property
    def rejected_ids(self) -> set[str]:
        return {r.item for r in self.rejected}

    def state_retrying(self, identifiers: set[str]) -> FetchState:
        """The state to keep when these messages could not be stored: the answer's validators
        are dropped (else the next poll is a 304 and reads nothing) and the index entries
        that brought them forgotten, so that the next poll reads them again. Kept as they
        were, an unchanged feed or index entry never brought them again, and the alert was
        never posted, even once the cause was gone."""
        if not identifiers:
            return self.state
        keys = {self.entries[i] for i in identifiers if i in self.entries}
        cursor = self.state.cursor
        if keys:
            seen = {k: v for k, v in cursor.get("seen", {}).items() if k not in keys}
            cursor = {**cursor, "seen": seen}
        return FetchState(cursor=cursor)


class PolledSource:
    """What every polled source shares: a name, a URL, a size cap, and a conditional GET.

    A source whose feed lists only what is active (api.weather.gov, GTFS-realtime) sets
    `lists_active`: a thread missing from `end_after` polls in a row has ended.
    """

    kind = ""
    accept = "*/*"
    lists_active = False
    end_after = 3

    def __init__(self, name: str, url: str, max_bytes: int) -> None:
        self.name = name
        self.url = url
        self.max_bytes = max_bytes

    @property
    def what(self) -> str:
        return f"source {self.name}"

    headers: dict[str, str] = {}

    def parse(
        self, body: bytes, content_type: str, rejected: list[Rejected] | None = None
    ) -> list[Notice]:
        """Pure. With a `rejected` list, a bad item is appended there and the rest are read;
        without one, the first bad item raises (as `clarion parse` wants)."""
        raise NotImplementedError

    def poll(self, state: FetchState, http: httpx.Client) -> PollResult:
        """Conditional GET, then the pure parser (sources with more to do override this)."""
        fetched = self.fetch(state, http, headers=self.headers)
        if not isinstance(fetched, Fetched):
            return PollResult([], fetched.state, not_modified=True)
        rejected: list[Rejected] = []
        notices = self.parse(fetched.body, fetched.content_type, rejected)
        return PollResult(notices, fetched.state, rejected=rejected)

    def fetch(
        self, state: FetchState, http: httpx.Client, headers: dict[str, str] | None = None
    ) -> Fetched | NotModified:
        return conditional_get(
            http,
            self.url,
            state,
            what=self.what,
            accept=self.accept,
            max_bytes=self.max_bytes,
            headers=headers,
        )


class Source(Protocol):
    """A configured input. `poll` does the I/O and calls the pure parser."""

    name: str
    kind: str
    url: str
    lists_active: bool
    end_after: int

    def poll(self, state: FetchState, http: httpx.Client) -> PollResult: ...


def conditional_get(
    http: httpx.Client,
    url: str,
    state: FetchState,
    *,
    what: str,
    accept: str,
    max_bytes: int,
    headers: dict[str, str] | None = None,
) -> Fetched | NotModified:
    """GET with If-None-Match / If-Modified-Since; raise SourceError with a clear reason."""
    headers = {**(headers or {}), "Accept": accept, "Accept-Encoding": ACCEPT_ENCODING}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    try:
        with http.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 304:
                return NotModified(state)
            if resp.status_code >= 400:
                raise SourceError(
                    f"{what}: {url} answered HTTP {resp.status_code}",
                    retry_after=_retry_after(resp.headers.get("retry-after")),
                )
            deadline = time.monotonic() + MAX_FETCH_SECONDS
            try:  # decoded as it arrives: a gzip or zstd bomb counts as inflated, 64 KiB a time
                body = read_limited(resp, max_bytes=max_bytes, deadline=deadline, what=url)
            except TooLarge:
                raise SourceError(
                    f"{what}: {url} sent more than {max_bytes:,} bytes; refused"
                ) from None
            except httpx.ReadTimeout:
                raise SourceError(
                    f"{what}: {url} took longer than {MAX_FETCH_SECONDS} s to answer; refused"
                ) from None
            except DecodingError as exc:
                raise SourceError(f"{what}: {url} {exc}; refused") from None
            new_state = FetchState(
                etag=resp.headers.get("etag"),
                last_modified=resp.headers.get("last-modified"),
                cursor=dict(state.cursor),
            )
            return Fetched(
                body=body,
                content_type=resp.headers.get("content-type", ""),
                state=new_state,
                url=str(resp.url),
                link_header=resp.headers.get("link"),
            )
    except httpx.InvalidURL as exc:  # not an HTTPError: an address the client cannot read
        raise SourceError(f"{what}: {url} is not an address that can be fetched: {exc}") from None
    except httpx.TimeoutException:
        raise SourceError(f"{what}: {url} timed out") from None
    except httpx.HTTPError as exc:
        raise SourceError(f"{what}: could not fetch {url}: {exc}") from None


@dataclass(frozen=True)
class SourceConnector:
    """An input kind, declared by its module: `CONNECTOR = SourceConnector(...)`.

    `parse(body, content_type)` is the pure parser (`clarion parse`, replays, the demo);
    `build(name, cfg)` the polled source, or None for a kind that is pushed to Clarion."""

    kind: str
    config: type[Any]
    parse: Callable[[bytes, str], list[Notice]]
    build: Callable[[str, Any], Source] | None = None

    @property
    def summary(self) -> str:
        return " ".join((self.config.__doc__ or "").split())
