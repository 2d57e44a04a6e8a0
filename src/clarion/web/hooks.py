"""`POST /hooks/{source}`: push sources, authenticated with Standard Webhooks signatures.

Refused: an unknown source (404), a body over the source's `max_bytes` (413), a missing or bad
signature, or a timestamp more than 5 minutes off (401). A `webhook-id` already accepted is not
ingested again: the answer is 200 with `"status": "duplicate"`, so a sender that retries after
a lost response stops retrying, and nothing is posted twice. Everything else is ingested in one
transaction and answered 202 with what was stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook
from starlette.concurrency import run_in_threadpool

from clarion.channels.base import Channel
from clarion.config import Config
from clarion.pipeline import ingest
from clarion.sources.base import SourceError
from clarion.sources.push import PushBatch, PushNotice, PushSourceConfig, parse_push
from clarion.store import Store, receipts

log = logging.getLogger(__name__)


class SignatureError(Exception):
    pass


TOLERANCE_SECONDS = 5 * 60


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` + base64), as the library reads it."""
    return bytes(Webhook(secret)._whsecret)


def verify_signature(key: bytes, body: bytes, headers: Mapping[str, str], now: float) -> str:
    """Verify a Standard Webhooks signature over the body's raw bytes; return the webhook-id.

    Hand-written on hmac because `standardwebhooks.Webhook.verify` decodes the body as UTF-8
    before signing it: a CAP document in ISO-8859-1 (which CAP allows, and which the sender
    signed as bytes) could never verify. The scheme is the specification's: HMAC-SHA256 of
    `id.timestamp.body`, base64, in a space-separated list of `v1,` signatures, the timestamp
    within five minutes either way.
    """
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        when = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a whole number of seconds") from None
    if abs(now - when) > TOLERANCE_SECONDS:
        raise SignatureError("webhook-timestamp is more than 5 minutes off")
    expected = hmac.new(key, f"{msg_id}.{when}.".encode() + body, hashlib.sha256).digest()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            continue
        if hmac.compare_digest(expected, given):
            return msg_id
    raise SignatureError("no matching signature")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def hooks_router(store: Store, config: Config, channels: Mapping[str, Channel]) -> APIRouter:
    router = APIRouter()
    verifiers: dict[str, bytes] = {}
    for name, cfg in config.sources.items():
        if isinstance(cfg, PushSourceConfig) and cfg.enabled:
            verifiers[name] = webhook_key(cfg.secret.resolve())

    @router.post(
        "/hooks/{source}",
        status_code=202,
        summary="Push notices to a push source",
        responses={
            200: {"description": "Already received (the same webhook-id): not ingested twice"},
            401: {"description": "Missing, stale or wrong Standard Webhooks signature"},
            404: {"description": "No push source of that name"},
            413: {"description": "The body is larger than the source's max_bytes"},
        },
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                PushNotice.model_json_schema(
                                    ref_template="#/components/schemas/{model}"
                                ),
                                PushBatch.model_json_schema(
                                    ref_template="#/components/schemas/{model}"
                                ),
                            ]
                        }
                    },
                    "application/cap+xml": {"schema": {"type": "string"}},
                }
            }
        },
    )
    async def push(source: str, request: Request) -> Any:
        cfg = config.sources.get(source)
        if not isinstance(cfg, PushSourceConfig) or source not in verifiers:
            return _error(404, f"no push source named {source!r}")
        body = await request.body()
        if len(body) > cfg.max_bytes:
            return _error(413, f"body is {len(body):,} bytes, over {cfg.max_bytes:,}")
        headers = {k.lower(): v for k, v in request.headers.items()}
        # Verifying, parsing and ingesting are CPU and database work: off the event loop, so
        # that a large push never stalls other requests (health checks, the page).
        return await run_in_threadpool(receive, source, body, headers)

    def receive(source: str, body: bytes, headers: dict[str, str]) -> Any:
        try:
            # The raw bytes are what was signed; they are decoded only afterwards, by their
            # declared (or detected) encoding, by the parser.
            webhook_id = verify_signature(verifiers[source], body, headers, time.time())
        except SignatureError as exc:
            return _error(401, f"signature refused: {exc}")
        if receipts.seen(store, source, webhook_id):
            return JSONResponse({"status": "duplicate", "webhook_id": webhook_id})
        try:
            notices = parse_push(
                body, headers.get("content-type", ""), source=source, what=f"push to {source}"
            )
        except SourceError as exc:
            return _error(422, str(exc))
        result = ingest(store, config, channels, notices, source=source)
        receipts.record(store, source, webhook_id, datetime.now(UTC))
        return JSONResponse(
            {
                "status": "accepted",
                "stored": len(result.stored),
                "unchanged": result.unchanged,
                "deliveries": result.deliveries,
            },
            status_code=202,
        )

    return router
