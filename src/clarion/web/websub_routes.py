"""WebSub subscriber endpoints: `/websub/{source}` (see `clarion.sources.websub`).

GET answers the hub's verification of intent: the challenge is echoed only for a subscription
Clarion asked for (same topic), and the lease it grants is recorded. POST takes the content the
hub distributes: with a valid `X-Hub-Signature` it is parsed and ingested as if polled;
otherwise it is ignored (and, as the recommendation allows, still acknowledged with 202, so a
forger learns nothing).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from clarion.channels.base import Channel
from clarion.config import Config
from clarion.pipeline import ingest_listing
from clarion.seen import record_rejections, sort_items
from clarion.sources.base import Rejected, SourceError
from clarion.sources.feed import FeedSourceConfig, parse_feed
from clarion.sources.websub import callback_token, signature_ok
from clarion.store import Store
from clarion.websub_subscriber import count_received, subscription, update_subscription

log = logging.getLogger(__name__)
MAX_LEASE = 366 * 86400


def websub_router(store: Store, config: Config, channels: Mapping[str, Channel]) -> APIRouter:
    router = APIRouter()

    def _row(source: str) -> Any:
        return subscription(store, source)

    @router.get(
        "/websub/{source}/{token}",
        response_class=PlainTextResponse,
        summary="WebSub verification of intent (the hub calls this)",
        responses={
            400: {"description": "A malformed verification"},
            404: {"description": "No subscription of that source is pending or active"},
        },
    )
    def verify(source: str, token: str, request: Request) -> Response:
        q = request.query_params
        mode, topic = q.get("hub.mode"), q.get("hub.topic")
        row = _row(source)
        # Only the hub knows the callback's token (it came with our subscription request):
        # anyone else's "verification" changes nothing.
        if (
            row is None
            or topic != row.topic
            or not hmac.compare_digest(token, callback_token(row.secret))
        ):
            return PlainTextResponse("no such subscription", status_code=404)
        now = datetime.now(UTC)
        if mode == "denied":
            update_subscription(
                store,
                source,
                state="denied",
                last_error=f"hub denied: {q.get('hub.reason', 'no reason')}",
            )
            return PlainTextResponse("ok")
        if mode != "subscribe" or row.state not in ("requested", "active"):
            return PlainTextResponse("not requested", status_code=404)
        raw_lease = q.get("hub.lease_seconds", "0")
        if not raw_lease.isdigit() or len(raw_lease) > 12:
            return PlainTextResponse("bad hub.lease_seconds", status_code=400)
        lease = min(int(raw_lease), MAX_LEASE)  # renewed before it runs out in any case
        update_subscription(
            store,
            source,
            state="active",
            verified_at=now,
            lease_seconds=lease or None,
            lease_expires_at=now + timedelta(seconds=lease) if lease else None,
            last_error=None,
        )
        return PlainTextResponse(q.get("hub.challenge", ""))

    @router.post(
        "/websub/{source}/{token}",
        status_code=202,
        summary="WebSub content distribution (the hub calls this)",
        responses={
            404: {"description": "No subscription of that source"},
            413: {"description": "Larger than the source's max_bytes"},
        },
    )
    async def receive_at_callback(source: str, token: str, request: Request) -> Response:
        return await receive(source, request)

    @router.post(
        "/websub/{source}",
        status_code=202,
        summary="WebSub content distribution, for subscriptions made before callbacks had a "
        "token (the content is signed either way)",
        responses={
            404: {"description": "No subscription of that source"},
            413: {"description": "Larger than the source's max_bytes"},
        },
    )
    async def receive(source: str, request: Request) -> Response:
        cfg = config.sources.get(source)
        row = _row(source)
        if not isinstance(cfg, FeedSourceConfig) or row is None:
            return PlainTextResponse("no such subscription", status_code=404)
        body = await request.body()
        if len(body) > cfg.max_bytes:
            return PlainTextResponse("too large", status_code=413)
        if not signature_ok(row.secret, body, request.headers.get("x-hub-signature")):
            log.warning("websub %s: content with a missing or wrong signature ignored", source)
            return Response(status_code=202)
        ctype = request.headers.get("content-type", "")
        return await run_in_threadpool(ingest_pushed, source, cfg, body, ctype)

    def ingest_pushed(source: str, cfg: FeedSourceConfig, body: bytes, ctype: str) -> Response:
        rejected: list[Rejected] = []
        now = datetime.now(UTC)
        try:
            notices = parse_feed(
                body,
                ctype,
                what=f"source {source} (WebSub)",
                rejected=rejected,
                base_url=cfg.url,  # the hub pushes the feed's own content
            )
        except SourceError as exc:
            log.warning("%s", exc)
            return Response(status_code=202)
        record_rejections(store, source, rejected, now)
        # What the hub pushes is judged as a poll is: seen is forever, old items stay old.
        ordered = sort_items(
            store,
            source,
            notices,
            now,
            initial_items=cfg.initial_items,
            max_age=cfg.max_age,
            on_edit=cfg.on_edit,
        )
        _, unstorable = ingest_listing(
            store,
            config,
            channels,
            ordered.new,
            source=source,
            now=now,
            edits=cfg.on_edit,
            max_age=cfg.max_age,
            seen=ordered.record,  # seen only with what is stored
        )
        record_rejections(store, source, unstorable, now)
        count_received(store, source)
        return Response(status_code=202)

    return router
