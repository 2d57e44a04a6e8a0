"""The public surface served from memory: the page, notice pages, feeds and CAP documents.

The first GET of a path (with its query, normalised) is answered by the app and kept: its
body, and its headers as they went out (security headers, ETag, Cache-Control), prebuilt. Every
later GET or HEAD of it is answered from here, in the event loop, without a database round trip
or a thread-pool hop, and `If-None-Match` / `If-Modified-Since` get their 304 from the same
entry. An answer without an ETag (a page) is given one, a digest of its body.

An entry is good while what it was built from is unchanged (`clarion.store.changes`: a notice
stored, for everything; a delivery's state, for notice pages) and for at most `max_age`
seconds (what is "in effect" moves with the clock). On PostgreSQL, while the notifications that
carry other processes' changes may be missed (the connection is down), nothing is cached.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clarion.store import Store
from clarion.store.changes import NOTICES, POSTS

# Path → which changes make its answer stale.
_CACHED: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(r"^/$"), (NOTICES,)),
    (re.compile(r"^/feeds/.+"), (NOTICES,)),
    (re.compile(r"^/notices/\d+(/v\d+)?\.cap$"), (NOTICES,)),
    (re.compile(r"^/notices/\d+$"), (NOTICES, POSTS)),
    (re.compile(r"^/notices/\d+/card\.png$"), (NOTICES,)),
    (re.compile(r"^/sources/[^/]+$"), (NOTICES,)),
    (re.compile(r"^/publishers/[^/]+$"), (NOTICES,)),
    (re.compile(r"^/(robots\.txt|sitemap\.xml|favicon\.ico)$"), (NOTICES,)),
]
# Headers an entry keeps and a 304 repeats (RFC 9110 §15.4.5): validators and caching.
_NOT_MODIFIED_KEEPS = {b"etag", b"cache-control", b"last-modified", b"link", b"vary", b"date"}


@dataclass
class Entry:
    status: int
    headers: list[tuple[bytes, bytes]]  # as sent, content-length included
    body: bytes
    etag: bytes
    last_modified: float | None  # seconds since the epoch
    version: tuple[Any, ...]
    built: float  # time.monotonic()


class Snapshot:
    """An LRU of public answers, bounded in entries and in bytes: every filter spelling a
    stranger can send is an entry (a feed of 150 kB each), so the bytes are what must be
    capped."""

    def __init__(self, size: int = 4096, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self.lock = threading.Lock()
        self.entries: OrderedDict[tuple[str, str, str], Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str, str]) -> Entry | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None:
                self.entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str, str], entry: Entry) -> None:
        if len(entry.body) > self.max_bytes // 8:  # one answer may not crowd out the rest
            return
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.bytes -= len(old.body)
            self.entries[key] = entry
            self.bytes += len(entry.body)
            while len(self.entries) > self.size or self.bytes > self.max_bytes:
                _, gone = self.entries.popitem(last=False)
                self.bytes -= len(gone.body)


def _kinds(path: str) -> tuple[str, ...] | None:
    for pattern, kinds in _CACHED:
        if pattern.match(path):
            return kinds
    return None


def _normal_query(raw: bytes) -> str:
    """The query with its parameters in a stable order (?b=1&a=2 is ?a=2&b=1)."""
    if not raw:
        return ""
    return urlencode(sorted(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)))


class SnapshotMiddleware:
    def __init__(
        self, app: ASGIApp, *, store: Store, by_host: bool = True, max_age: float = 30.0
    ) -> None:
        self.app = app
        self.store = store
        # Without a configured public URL the answers name the host they were asked on; with
        # one they do not, and any Host a client sends is the same entry.
        self.by_host = by_host
        self.max_age = max_age
        self.snapshot = Snapshot()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        kinds = _kinds(scope["path"])
        headers = dict(scope.get("headers") or [])
        changes = self.store.changes
        if kinds is None or b"authorization" in headers or not changes.reliable:
            await self.app(scope, receive, send)
            return
        key = (
            headers.get(b"host", b"").decode("latin-1") if self.by_host else "",
            scope["path"],
            _normal_query(scope.get("query_string", b"")),
        )
        version = changes.version(kinds)
        entry = self.snapshot.get(key)
        if (
            entry is not None
            and entry.version == version
            and time.monotonic() - entry.built < self.max_age
        ):
            self.snapshot.hits += 1
            await self._answer(entry, headers, scope["method"] == "HEAD", send)
            return
        self.snapshot.misses += 1
        await self._build(scope, receive, send, key, version, headers)

    async def _answer(
        self, entry: Entry, request: dict[bytes, bytes], head: bool, send: Send
    ) -> None:
        if _not_modified(entry, request):
            kept = [(k, v) for k, v in entry.headers if k in _NOT_MODIFIED_KEEPS]
            await send({"type": "http.response.start", "status": 304, "headers": kept})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(
            {"type": "http.response.start", "status": entry.status, "headers": entry.headers}
        )
        await send({"type": "http.response.body", "body": b"" if head else entry.body})

    async def _build(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: tuple[str, str, str],
        version: tuple[Any, ...],
        request: dict[bytes, bytes],
    ) -> None:
        """Answer through the app (as a GET, whatever was asked, and without the client's
        validators, so that the whole answer can be kept), then keep what it answered."""
        started = time.monotonic()
        head = scope["method"] == "HEAD"
        inner = {
            **scope,
            "method": "GET",
            "headers": [
                (k, v)
                for k, v in scope.get("headers") or []
                if k not in (b"if-none-match", b"if-modified-since")
            ],
        }
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(inner, receive, capture)
        assert start is not None
        body = b"".join(chunks)
        status = int(start["status"])
        raw = [(bytes(k).lower(), bytes(v)) for k, v in start.get("headers", [])]
        if status == 200:
            raw = [(k, v) for k, v in raw if k != b"content-length"]
            etag = dict(raw).get(b"etag")
            if etag is None:
                etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
                raw.append((b"etag", etag))
            raw.append((b"content-length", str(len(body)).encode()))
            modified = dict(raw).get(b"last-modified")
            entry = Entry(
                status=status,
                headers=raw,
                body=body,
                etag=etag,
                last_modified=_date(modified),
                version=version,
                built=started,
            )
            self.snapshot.put(key, entry)
            await self._answer(entry, request, head, send)
            return
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if head else body})


def _date(value: bytes | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError):
        return None


def _not_modified(entry: Entry, request: dict[bytes, bytes]) -> bool:
    inm = request.get(b"if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix(b"W/") for t in inm.split(b",")}
        return entry.etag in tags or inm.strip() == b"*"
    ims = request.get(b"if-modified-since")
    if ims and entry.last_modified is not None:
        since = _date(ims)
        return since is not None and int(entry.last_modified) <= since
    return False
