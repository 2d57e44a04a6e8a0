"""Outbound webhooks, signed per Standard Webhooks (https://www.standardwebhooks.com).

Headers `webhook-id` (the delivery id, the same on every retry, so a receiver can drop
duplicates), `webhook-timestamp` and `webhook-signature` (v1, HMAC-SHA256 over
`id.timestamp.body`), signed by the `standardwebhooks` library. A `410 Gone` disables the
endpoint, as the spec asks.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import httpx
from pydantic import field_validator

from clarion.channels.base import (
    ChannelConnector,
    ChannelError,
    Deps,
    ErrorKind,
    Outgoing,
    Profile,
    Receipt,
    RenderContext,
    Rendered,
    lazy_module,
)
from clarion.channels.http import classify_http, request, retry_after_seconds
from clarion.configtypes import ChannelConfigBase, ConfigError, Duration, SecretRef, http_url
from clarion.model import MsgType, Notice
from clarion.net import guarded_client

if TYPE_CHECKING:
    from standardwebhooks import webhooks
else:
    webhooks = lazy_module("standardwebhooks.webhooks")


class WebhookChannelConfig(ChannelConfigBase):
    """A signed POST (Standard Webhooks) of each notice as JSON to a URL of yours."""

    kind: Literal["webhook"]
    url: str
    secret: SecretRef
    timeout: Duration = 10.0

    _check_url = field_validator("url")(http_url)


EVENT_TYPES = {
    MsgType.ALERT: "notice.created",
    MsgType.UPDATE: "notice.updated",
    MsgType.CANCEL: "notice.cancelled",
    MsgType.END: "notice.ended",
    MsgType.ACK: "notice.acknowledged",
    MsgType.ERROR: "notice.error",
}


def check_secret(secret: str) -> bytes:
    """The decoded secret; raises ValueError unless it is whsec_-style base64 of 24+ bytes."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "==", validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (expected whsec_ followed by base64)") from None
    if len(key) < 24:
        raise ValueError(f"decodes to {len(key)} bytes; Standard Webhooks needs at least 24")
    return key


class WebhookChannel:
    kind = "webhook"
    # A receiver is a server of yours: several requests at once (each signed, idempotent).
    profile = Profile(limit=None, counting=None, idempotency=True, max_in_flight=8)

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        check_secret(secret)
        self.name = name
        self.url = url
        self._signer = webhooks.Webhook(
            secret if secret.startswith("whsec_") else "whsec_" + secret
        )
        self._http = http or guarded_client(timeout=timeout, follow_redirects=False)

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        return Rendered.from_row(
            {
                "type": EVENT_TYPES[notice.msg_type],
                "data": {**notice.to_json_dict(), "permalink": ctx.permalink},
            }
        )

    def close(self) -> None:
        self._http.close()

    def send(self, out: Outgoing) -> Receipt:
        now = datetime.now(UTC)
        body = with_fields(
            out,
            {
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "in_reply_to": out.previous.post_id if out.previous else None,
            },
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": out.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(out.id, now, body),
        }
        what = f"webhook {self.url}"
        resp = request(self._http, "POST", self.url, what, content=body.encode(), headers=headers)
        if resp.status_code == 410:
            raise ChannelError(
                ErrorKind.AUTH,
                f"{what} answered 410 Gone: the endpoint is disabled "
                "until an operator re-enables it",
            )
        if resp.status_code >= 300:
            retry_after = retry_after_seconds(resp.headers.get("retry-after"))
            raise classify_http(resp.status_code, retry_after, what)
        return Receipt(post_id=out.id)


def with_fields(out: Outgoing, fields: dict[str, object]) -> str:
    """The JSON body: the payload's members and then `fields`.

    Given the payload's stored JSON text (an object of its own keys), the fields are written
    after its members as they are, without decoding it and encoding it again; if one of the
    names occurs as a string in it (a key of the payload's own), the payload is decoded and
    the fields replace its keys."""
    extra = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    text = (out.payload_json or "").strip()
    if (
        text.startswith("{")
        and text.endswith("}")
        and not any(f'"{name}"' in text for name in fields)
    ):
        members = text[1:-1].strip()
        return "{" + members + ("," if members else "") + extra[1:]
    return json.dumps({**out.payload, **fields}, separators=(",", ":"), ensure_ascii=False)


def _build(cfg: WebhookChannelConfig, deps: Deps) -> WebhookChannel:
    secret = deps.secret("secret", cfg.secret)
    try:
        return WebhookChannel(
            deps.name, cfg.url, secret, cfg.timeout, http=deps.guarded(cfg.timeout)
        )
    except ValueError as exc:
        raise ConfigError([f"channels.{deps.name}.secret: {exc}"]) from None


def _offline(thread_parts: int) -> WebhookChannel:
    return WebhookChannel(
        "webhook", "https://hooks.invalid/", "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    )


CONNECTOR = ChannelConnector(
    kind="webhook",
    config=WebhookChannelConfig,
    profile=WebhookChannel.profile,
    build=_build,
    offline=_offline,
)
