"""The public REST API, `/api/v1`: the publisher's notices for anyone, free and fair.

Reading needs no key: anonymous clients get `[api] anonymous_per_hour` requests an hour per IP
address (60), keyed clients `key_per_hour` per key (5,000), and keys of the `public_service`
tier have no limit. Every answer says where the client stands (`RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset`, `RateLimit-Policy`); over the limit is `429` with
`Retry-After`. Writing (create, update, cancel a notice) needs a key with the `write` scope.

Limits are counted in each process (one `clarion web`); several replicas behind a balancer
each count their own (the scale-out work, issue 7, moves them to PostgreSQL).

`GET /api/v1/stream` streams new notices as server-sent events (`id:` is the notice id, so a
client reconnecting with `Last-Event-ID` misses nothing).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clarion.channels.base import Channel
from clarion.config import Config
from clarion.desk import drafts
from clarion.desk.accounts import User
from clarion.keys import ApiKey, touch, verify
from clarion.manual import CancelIn, FollowUpError, NoticeIn, follow_up, new_alert
from clarion.model import MsgType, Notice
from clarion.status import channel_statuses
from clarion.store import Store, public
from clarion.web.outputs import Filter, base_url
from clarion.web.query import MAX_ID, NoticeFilter, ThreadId, public_error

WINDOW = 3600.0
PREFIX = "/api/v1"


# --- rate limits -----------------------------------------------------------------------------


class HourlyLimiter:
    """`limit` requests per clock hour per client, counted in the database: the limit holds
    across every `clarion web` replica (a per-process count would give N replicas N times it)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def hit(self, who: str, limit: int) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until the window resets)."""
        from clarion.store.limits import api_hit

        return api_hit(self.store, who, limit, self.clock())


def _client_ip(request: Request, trust_proxy: bool) -> str:
    if trust_proxy:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]  # the address our own proxy saw
    return request.client.host if request.client else "unknown"


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


class ApiAccess:
    """Pure ASGI middleware for `/api/v1`: resolves the API key, applies the tier's limit, adds
    the RateLimit headers. Every other path passes straight through, untouched (the feeds and
    the page pay nothing for it; Starlette's `BaseHTTPMiddleware` would also wrap streams)."""

    def __init__(self, app: ASGIApp, store: Store, config: Config, limiter: HourlyLimiter) -> None:
        self.app = app
        self.store = store
        self.config = config
        self.limiter = limiter
        self.last_touch: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = _token(request)
        key: ApiKey | None = None
        if token:
            key = await asyncio.to_thread(verify, self.store, token)
            if key is None:
                refused = JSONResponse(
                    {"detail": "unknown or revoked API key"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await refused(scope, receive, send)
                return
            now = time.monotonic()
            if now - self.last_touch.get(key.id, -1e9) > 60:  # a write a minute per key at most
                self.last_touch[key.id] = now
                await asyncio.to_thread(touch, self.store, key.id, datetime.now(UTC))
        scope.setdefault("state", {})["api_key"] = key
        if key is not None and key.tier == "public_service":
            headers = {"RateLimit-Policy": "unlimited"}
        else:
            if key is not None:
                who, limit = f"key:{key.id}", self.config.api.key_per_hour
            else:
                who = f"ip:{_client_ip(request, self.config.api.trust_proxy)}"
                limit = self.config.api.anonymous_per_hour
            allowed, remaining, reset = await asyncio.to_thread(self.limiter.hit, who, limit)
            headers = {
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(math.ceil(reset)),
                "RateLimit-Policy": f"{limit};w={int(WINDOW)}",
            }
            if not allowed:
                what = "this API key" if key is not None else "anonymous clients (per address)"
                too_many = JSONResponse(
                    {
                        "detail": f"rate limit of {limit} requests an hour for {what} reached; "
                        "an API key raises it"
                        + ("" if key is None else " (public-service keys have none)")
                    },
                    status_code=429,
                    headers={**headers, "Retry-After": str(math.ceil(reset))},
                )
                await too_many(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_rate_limits(app: FastAPI, store: Store, config: Config, limiter: HourlyLimiter) -> None:
    app.add_middleware(ApiAccess, store=store, config=config, limiter=limiter)


# --- response models ---------------------------------------------------------------------------


class VersionOut(BaseModel):
    id: int
    version: int
    msg_type: str
    status: str
    severity: str
    headline: str
    sent: datetime
    received_at: datetime
    cap_url: str
    # This message's branch of the story: "live" (in effect, unless over by the clock),
    # "replaced" by a later message that references it, or "closed" (cancelled or ended).
    branch: str
    # When it is over by the clock: its event's end when it has one, else its expiry.
    in_effect_until: datetime | None
    notice: dict[str, Any]


class DeliveryOut(BaseModel):
    id: str
    channel: str
    version: int
    state: str
    attempts: int
    post_id: str | None
    url: str | None
    # Why it is not sent yet, in plain words (never the platform's own message, which may
    # hold the channel's configuration).
    last_error: str | None
    sent_at: datetime | None
    cost: float


class ThreadOut(BaseModel):
    id: int
    url: str
    source: str
    state: str
    headline: str
    severity: str
    status: str
    created_at: datetime
    updated_at: datetime
    # The versions in effect now: one, or several for a story that branched (the segments of
    # an NWS product for different zones); none once every branch is over.
    live_versions: list[int]
    versions: list[VersionOut]
    deliveries: list[DeliveryOut]


class ThreadPage(BaseModel):
    items: list[ThreadOut]
    next_cursor: int | None


class SourceOut(BaseModel):
    name: str
    kind: str
    enabled: bool
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    items_seen: int
    notices_ingested: int


class ChannelOut(BaseModel):
    name: str
    kind: str
    enabled: bool
    state: str
    state_reason: str | None
    sent_count: int
    failed_count: int
    last_sent_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: int | None


# --- helpers -------------------------------------------------------------------------------


def _delivery(d: Any) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        channel=d.channel,
        version=d.version,
        state=d.state,
        attempts=d.attempts,
        post_id=d.receipt_id,
        url=d.receipt_url,
        last_error=public_error(d.error_kind, d.state),
        sent_at=d.sent_at,
        cost=float(d.cost or 0.0),
    )


def _threads_out(conn: Any, rows: Sequence[Any], base: str) -> list[ThreadOut]:
    now = datetime.now(UTC)
    ids = [r.id for r in rows]
    if not ids:
        return []
    versions: dict[int, list[VersionOut]] = {i: [] for i in ids}
    for n in public.versions(conn, ids):
        versions[n.thread_id].append(
            VersionOut(
                id=n.id,
                version=n.version,
                msg_type=n.msg_type,
                status=n.status,
                severity=n.severity,
                headline=n.headline,
                sent=n.sent,
                received_at=n.received_at,
                cap_url=f"{base}/notices/{n.thread_id}/v{n.version}.cap",
                branch=n.branch,
                in_effect_until=n.over_at,
                notice=n.data,
            )
        )
    sent: dict[int, list[DeliveryOut]] = {i: [] for i in ids}
    for d in public.deliveries_of(conn, ids):
        sent[d.thread_id].append(_delivery(d))
    return [
        ThreadOut(
            id=r.id,
            url=f"{base}/notices/{r.id}",
            source=r.source,
            state=r.state,
            headline=r.headline,
            severity=r.severity,
            status=r.status,
            created_at=r.created_at,
            updated_at=r.updated_at,
            live_versions=[
                v.version
                for v in versions[r.id]
                if v.branch == "live"
                and v.msg_type not in ("cancel", "end")
                and (v.in_effect_until is None or v.in_effect_until > now)
            ],
            versions=versions[r.id],
            deliveries=sent[r.id],
        )
        for r in rows
    ]


def _require_write(request: Request) -> ApiKey:
    key: ApiKey | None = getattr(request.state, "api_key", None)
    if key is None:
        raise HTTPException(401, "writing needs an API key", headers={"WWW-Authenticate": "Bearer"})
    if not key.can_write:
        raise HTTPException(403, "this API key may read, not write (create one with --write)")
    return key


Writer = Annotated[ApiKey, Depends(_require_write)]

# A page's `next_cursor` is the id to continue below (notices and deliveries come newest
# first): plain, stable, and checked like any other number.
Cursor = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="`next_cursor` of the page before")
]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Held for approval at the desk (the key is not trusted automation and "
        "the notice needs a second person): the draft's id and address"
    },
    400: {"description": "The body is not JSON"},
    409: {"description": "Nothing new, or the notice is already cancelled or ended"},
    401: {"description": "No API key, or an unknown one"},
    403: {"description": "The key has no write scope, or the notice belongs to another source"},
}


# --- the router ----------------------------------------------------------------------------


def api_router(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel] | None,
) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["api"])
    from clarion.channels import lazy_channels

    the_channels = lazy_channels(config, channels)

    def thread_or_404(conn: Any, thread_id: int) -> Any:
        row = public.thread(conn, thread_id)
        if row is None:
            raise HTTPException(404, f"no notice {thread_id}")
        return row

    @router.get(
        "/notices",
        response_model=ThreadPage,
        summary="Notices, newest first",
    )
    def list_notices(
        request: Request,
        flt: Filter,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> ThreadPage:
        """Each notice is a thread: every version (with the notice as Clarion's model holds it)
        and every delivery. Filters match a thread when any of its versions matches."""
        after = cursor
        with store.read() as conn:
            rows = public.threads_before(conn, flt.where(), after, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            items = _threads_out(conn, rows, base_url(config, request))
        return ThreadPage(items=items, next_cursor=rows[-1].id if more and rows else None)

    @router.get(
        "/notices/{thread_id}",
        response_model=ThreadOut,
        responses={404: {"description": "No such notice"}},
        summary="One notice, with its versions and deliveries",
    )
    def get_notice(request: Request, thread_id: ThreadId) -> ThreadOut:
        with store.read() as conn:
            row = thread_or_404(conn, thread_id)
            return _threads_out(conn, [row], base_url(config, request))[0]

    @router.get("/sources", response_model=list[SourceOut], summary="Sources and their health")
    def list_sources() -> list[SourceOut]:
        from clarion.status import public_error as public_source_error
        from clarion.status import source_statuses

        return [
            SourceOut(
                name=h.name,
                kind=h.kind,
                enabled=h.enabled,
                last_polled_at=h.last_polled_at,
                last_success_at=h.last_success_at,
                last_error=public_source_error(h.last_error),
                consecutive_failures=h.consecutive_failures,
                items_seen=h.items_seen,
                notices_ingested=h.notices_ingested,
            )
            for h in source_statuses(store, config, sample=20)
        ]

    @router.get("/channels", response_model=list[ChannelOut], summary="Channels and their state")
    def list_channels() -> list[ChannelOut]:
        return [
            ChannelOut(
                name=ch.name,
                kind=ch.kind,
                enabled=ch.enabled,
                state=ch.state,
                state_reason=ch.state_reason,
                sent_count=ch.sent_count,
                failed_count=ch.failed_count,
                last_sent_at=ch.last_sent_at,
            )
            for ch in channel_statuses(store, config, datetime.now(UTC))
        ]

    @router.get(
        "/deliveries",
        response_model=DeliveryPage,
        summary="Deliveries, newest first",
    )
    def list_deliveries(
        channel: Annotated[str | None, Query()] = None,
        state: Annotated[str | None, Query(max_length=16)] = None,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
    ) -> DeliveryPage:
        after = cursor
        with store.read() as conn:
            rows = public.deliveries_before(conn, channel, state, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        # A page ends between notices, never inside one: its other deliveries follow.
        if more and rows:
            last = rows[-1].notice_id
            if any(r.notice_id != last for r in rows):
                rows = [r for r in rows if r.notice_id != last]
                nxt: int | None = last + 1
            else:
                nxt = last
        else:
            nxt = None
        return DeliveryPage(
            items=[_delivery(r) for r in rows],
            next_cursor=nxt,
        )

    def _held(
        request: Request,
        key: ApiKey,
        action: str,
        body: NoticeIn,
        thread_id: int | None,
        previous: Notice | None,
    ) -> JSONResponse | None:
        """A notice from a key that is not trusted automation follows the desk's approval
        policy: when it needs a second person, it waits at the desk as a draft (202)."""
        if key.trusted:
            return None
        severity = body.severity
        if previous is not None and previous.severity.rank > severity.rank:
            severity = previous.severity  # cancelling a severe warning weighs as much as it
        status = previous.status if previous is not None else body.status
        if not config.desk.needs_approval(status, severity):
            return None
        now = datetime.now(UTC)
        author = User(0, f"{drafts.API_AUTHOR}{key.name}", "editor", now, None, None)
        try:
            d = drafts.submit(
                store, config, the_channels(), author, action, body, thread_id=thread_id,
                send_at=None, now=now, ip=_client_ip(request, config.api.trust_proxy),
            )  # fmt: skip
        except drafts.DeskError as exc:
            raise HTTPException(409, str(exc)) from None
        return JSONResponse(
            {
                "draft": d.id,
                "state": d.state,
                "detail": "held for approval at the desk: the key is not trusted automation",
                "url": f"{base_url(config, request)}/desk/drafts/{d.id}",
            },
            status_code=202,
        )

    def _ingest(
        request: Request, notice: Notice, follow: int | None = None, *, key: ApiKey
    ) -> ThreadOut:
        from clarion.desk import audit
        from clarion.pipeline import ingest

        def recorded(conn: Any, result: Any) -> None:
            if key.trusted and result.stored:
                audit.record(
                    conn, datetime.now(UTC), f"api:{key.name}", "api_publish",
                    f"notice {result.stored[0]}",
                    f"{notice.msg_type.value} by trusted automation (no approval asked)", None,
                )  # fmt: skip

        result = ingest(
            store,
            config,
            the_channels(),
            [notice],
            source="api",
            follow=follow,
            within=recorded,
        )
        if not result.stored:
            raise HTTPException(409, "nothing new: this notice says what its thread already says")
        with store.read() as conn:
            thread_id = public.thread_of_notice(conn, result.stored[0])
            row = thread_or_404(conn, thread_id)
            return _threads_out(conn, [row], base_url(config, request))[0]

    def _latest(thread_id: int) -> Notice:
        with store.read() as conn:
            thread = thread_or_404(conn, thread_id)
            if thread.source != "api":
                # A story belongs to its source: a write key changes only what the API wrote.
                raise HTTPException(
                    403,
                    f"notice {thread_id} belongs to source {thread.source!r}: only that source "
                    "(or an operator at the desk) can change it",
                )
            if thread.state != "active":
                raise HTTPException(409, f"notice {thread_id} is already {thread.state}")
            n = public.notice_data(conn, thread.latest_notice_id)
        return Notice.model_validate(n)

    @router.post(
        "/notices",
        response_model=ThreadOut,
        status_code=201,
        responses=WRITE_RESPONSES,
        summary="Publish a new notice (write scope)",
    )
    def create_notice(request: Request, body: NoticeIn, key: Writer) -> Any:
        held = _held(request, key, "alert", body, None, None)
        if held is not None:
            return held
        return _ingest(request, new_alert(config, body, kind="api"), key=key)

    @router.post(
        "/notices/{thread_id}/update",
        response_model=ThreadOut,
        responses={
            **WRITE_RESPONSES,
            404: {"description": "No such notice"},
            409: {
                "description": "The update's status is not its story's (an Actual story is "
                "never updated by a Test or Exercise message, nor the other way round)"
            },
        },
        summary="Publish an update of a notice (write scope)",
    )
    def update_notice(request: Request, thread_id: ThreadId, body: NoticeIn, key: Writer) -> Any:
        previous = _latest(thread_id)
        try:
            notice = follow_up(config, previous, MsgType.UPDATE, body)
        except FollowUpError as exc:  # a valid request that conflicts with the story
            raise HTTPException(409, str(exc)) from None
        held = _held(request, key, "update", body, thread_id, previous)
        if held is not None:
            return held
        return _ingest(request, notice, follow=thread_id, key=key)

    @router.post(
        "/notices/{thread_id}/cancel",
        response_model=ThreadOut,
        responses={**WRITE_RESPONSES, 404: {"description": "No such notice"}},
        summary="Cancel a notice (write scope)",
    )
    def cancel_notice(request: Request, thread_id: ThreadId, body: CancelIn, key: Writer) -> Any:
        previous = _latest(thread_id)
        draft = drafts.prefill("cancel", previous)
        if body.note:
            draft = draft.model_copy(update={"description": body.note})
        held = _held(request, key, "cancel", draft, thread_id, previous)
        if held is not None:
            return held
        notice = follow_up(config, previous, MsgType.CANCEL, note=body.note)
        return _ingest(request, notice, follow=thread_id, key=key)

    @router.get(
        "/stream",
        summary="New notices as server-sent events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        flt: Filter,
        last_event_id: Annotated[
            str | None, Query(alias="last_event_id", description="Resume after this notice id")
        ] = None,
    ) -> StreamingResponse:
        """Each new notice version is one event, `event: notice`, whose `data` is JSON and
        whose `id` is the notice id: reconnect with `Last-Event-ID` to miss nothing."""
        resume = request.headers.get("last-event-id") or last_event_id
        try:
            start = int(resume) if resume else None
        except ValueError:
            raise HTTPException(400, "Last-Event-ID is a notice id this stream gave") from None
        base = base_url(config, request)
        return StreamingResponse(
            _events(store, flt, start, base, config.api.stream_poll, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


async def _events(
    store: Store,
    flt: NoticeFilter,
    after: int | None,
    base: str,
    poll: float,
    request: Request,
) -> AsyncIterator[bytes]:
    def newest() -> int:
        with store.read() as conn:
            return public.newest_notice_id(conn)

    def since(last: int, wait: bool) -> tuple[list[Any], int, bool]:
        """The matching notices after `last` that are settled (no lower id can still be
        committed: see `public.settled_after`), and how far the stream may move."""
        with store.read() as conn:
            settled, held = public.settled_after(conn, last, wait=wait)
            rows = public.notices_after(conn, last, flt.where(), 100, upto=settled)
        return rows, (rows[-1].id if len(rows) == 100 else settled), held

    last = after if after is not None else await asyncio.to_thread(newest)
    held_since: float | None = None  # since when a missing id holds the stream back
    yield b": connected\nretry: 3000\n\n"
    idle = 0.0
    while True:
        if await request.is_disconnected():
            return
        wait = held_since is None or time.monotonic() - held_since < public.STREAM_GAP_WAIT
        rows, settled, held = await asyncio.to_thread(since, last, wait)
        if not held:
            held_since = None
        elif held_since is None or settled != last:
            held_since = time.monotonic()
        for r in rows:
            payload = {
                "id": r.id,
                "thread": r.thread_id,
                "version": r.version,
                "msg_type": r.msg_type,
                "headline": r.headline,
                "severity": r.severity,
                "url": f"{base}/notices/{r.thread_id}#v{r.version}",
                "cap_url": f"{base}/notices/{r.thread_id}/v{r.version}.cap",
                "notice": r.data,
            }
            data = json.dumps(payload, ensure_ascii=False, default=str)
            yield f"id: {r.id}\nevent: notice\ndata: {data}\n\n".encode()
        moved, last = settled > last, settled
        if rows or moved:
            idle = 0.0
            continue
        await asyncio.sleep(poll)
        idle += poll
        if idle >= 15:  # a comment now and then keeps proxies from closing an idle stream
            idle = 0.0
            yield b": keep-alive\n\n"
