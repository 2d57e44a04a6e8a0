"""Web Push to the people who subscribed on the public page (RFC 8030, 8291, 8292).

An outbox row per notice (or, for a story reaching more than `part_size` subscribers, per part
of them, which several workers share) carries the message; at send time it goes to the
subscribers the story reaches on this channel (`subscription_reach`, fixed at ingest), each
encrypted for their browser and sent to their push service, many at once. Each subscriber
reached is recorded (`subscription_sends`) as it goes, so a retry of the delivery goes only to
those not reached yet and nobody gets one version twice. `Topic` is the story's, so an update
replaces the alert at the push service and on the screen; `Urgency: high` for Extreme and
Severe; `TTL` until the notice is over. A push service that says the subscription is gone (404,
410): it is removed. One that asks to slow down (429): its remaining subscribers wait for the
delivery's retry, the others are sent to.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator

from clarion.channels.base import (
    ChannelConnector,
    Deps,
    Outgoing,
    Profile,
    Receipt,
    RenderContext,
    Rendered,
)
from clarion.channels.http import retry_after_seconds
from clarion.configtypes import ChannelConfigBase, ConfigError, Duration, SecretRef
from clarion.model import MsgType, Notice, Severity
from clarion.render.counting import count_graphemes
from clarion.render.text import compose, headline
from clarion.subscriptions.fanout import Outcome, fan_out

log = logging.getLogger(__name__)

BODY_LIMIT = 600  # graphemes: a notification shows a few lines; the link has the rest
TITLE_LIMIT = 100  # characters: what a notification's title shows on a phone, about


class WebPushChannelConfig(ChannelConfigBase):
    """Web Push to the people subscribed on the public page, by area, line or service."""

    kind: Literal["webpush"]
    vapid_private_key: SecretRef  # `clarion subscriptions keys` makes one
    subject: str = Field(pattern=r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$")  # who to contact
    concurrency: int = Field(default=32, ge=1, le=256)  # messages in flight at once
    # …of which at most this many to one push service (FCM, Mozilla, Apple: most subscribers
    # share a few); default: no separate limit.
    per_push_service: int | None = Field(default=None, ge=1, le=256)
    # A story reaching more subscribers than this is queued in parts that several workers
    # share (each part still sends `concurrency` at once).
    part_size: int = Field(default=5000, ge=1, le=1_000_000)
    default_ttl: Duration = 86400.0  # how long a push service keeps a message with no expiry
    timeout: Duration = 10.0

    _check_subject = field_validator("subject")(lambda v: v.strip())


def _urgency(notice_severity: str, msg_type: str) -> str:
    if msg_type in (MsgType.CANCEL.value, MsgType.END.value):
        return "normal"
    return (
        "high" if notice_severity in (Severity.EXTREME.value, Severity.SEVERE.value) else "normal"
    )


class WebPushChannel:
    kind = "webpush"
    subscription_kind = "webpush"  # ingest fixes each story's reach among these subscribers
    profile = Profile(limit=BODY_LIMIT, counting="graphemes", idempotency=True, edit=True)

    def __init__(
        self,
        name: str,
        *,
        vapid: Any,
        http: httpx.Client,
        concurrency: int = 32,
        default_ttl: float = 86400.0,
        part_size: int = 5000,
        per_push_service: int | None = None,
        languages: tuple[str, ...] = (),
        make_http: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self.name = name
        self.vapid = vapid
        self.concurrency = concurrency
        self.part_size = part_size
        self.per_push_service = per_push_service
        self.default_ttl = default_ttl
        self.languages = languages
        self._http = http
        # Each sending thread gets a client (a connection pool) of its own: httpcore's pool,
        # shared by 32 threads, can close a connection it has just handed to a waiting
        # request (encode/httpcore#1110: "Bad file descriptor", the answer lost). A pool that
        # serves one thread never has a waiting request.
        self._make_http = make_http
        self._store: Any = None

    def use_store(self, store: Any) -> None:
        """The dispatcher hands over its store (subscribers live there)."""
        self._store = store

    def close(self) -> None:
        self._http.close()

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        from clarion.subscriptions.webpush import topic

        languages = self.languages or ctx.languages
        r = compose(
            notice,
            limit=BODY_LIMIT,
            count=count_graphemes,
            languages=languages,
            permalink=None,
            template=ctx.template,
        )
        # The title is the text's first line (as an e-mail's subject), short enough for a
        # notification; the body the rest (all of it when the first line had to be cut).
        first, _, rest = r.text.partition("\n")
        title, body = first.strip(), rest.strip()
        if not title:
            title = headline(notice, languages)
        if len(title) > TITLE_LIMIT:
            cut = title[: TITLE_LIMIT - 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
            title, body = cut + "…", r.text
        from clarion.render.card import card_alt

        # An alert with shapes: its card as the notification's image (browsers that show
        # images fetch it from the notice's page; the alt text is the body's own words).
        image = (
            f"{ctx.permalink}/card.png"
            if ctx.permalink and card_alt(notice, languages) is not None
            else None
        )
        return Rendered.from_row(
            {
                "text": r.text,
                "count": r.count,
                "limit": BODY_LIMIT,
                "language": r.language,
                "push": {
                    **({"image": image} if image else {}),
                    "title": title,
                    "body": body,
                    "url": ctx.permalink,
                    "tag": topic(self.name, ctx.thread_id or 0),
                    "type": notice.msg_type.value,
                    "severity": notice.severity.value,
                    "sent": notice.sent.isoformat(),
                    "expires": notice.expires.isoformat() if notice.expires else None,
                },
                "story": ctx.thread_id,
            }
        )

    def _ttl(self, push: dict[str, Any], now: datetime) -> int:
        expires = push.get("expires")
        if not expires:
            return int(self.default_ttl)
        left = (datetime.fromisoformat(expires) - now).total_seconds()
        return int(max(60, min(left, 28 * 86400)))

    def _send_one(
        self, sub: Any, body: bytes, headers: dict[str, str], http: httpx.Client | None = None
    ) -> Outcome:
        from clarion.subscriptions.webpush import encrypt

        try:
            content = encrypt(body, sub.p256dh, sub.auth)
            auth = self.vapid.authorization(sub.address)
        except Exception as exc:  # a stranger's keys and endpoint: any failure
            # One subscriber's keys or endpoint that cannot be signed or encrypted for is that
            # subscriber's refusal, recorded, never the part's: an exception out of here left
            # the whole part unrecorded and sent again to everyone at each retry.
            return Outcome("refused", f"cannot encrypt or sign for it: {type(exc).__name__}: {exc}")
        try:
            resp = (http or self._http).post(
                sub.address,
                content=content,
                headers={
                    **headers,
                    "Authorization": auth,
                    "Content-Encoding": "aes128gcm",
                    "Content-Type": "application/octet-stream",
                },
            )
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.WriteError,
        ) as exc:
            from clarion.net import BlockedAddress

            if isinstance(exc.__cause__, BlockedAddress):  # resolves to a private address
                return Outcome("refused", f"not a public address: {exc}")
            # The request never reached the push service whole: safe to send again.
            return Outcome("failed", f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            # Sent, but the answer was lost: it may have arrived. Sent again with the same
            # Topic, a copy still waiting at the push service is replaced, and one already
            # shown is replaced on the screen (the service worker's tag is the Topic): the
            # person sees the alert once either way, and a message really lost is not.
            return Outcome("failed", f"answer lost, sent again: {type(exc).__name__}: {exc}")
        code = resp.status_code
        if 200 <= code < 300:
            return Outcome("sent")
        if code in (404, 410):
            return Outcome("gone", f"HTTP {code}")
        retry = retry_after_seconds(resp.headers.get("retry-after"))
        if code == 429:
            return Outcome("later", "HTTP 429 (slow down)", retry)
        if code >= 500:
            return Outcome("failed", f"HTTP {code}", retry)
        return Outcome("refused", f"HTTP {code}: {resp.text[:200]}")

    def send_test(self, sub: Any, title: str, body: str, url: str | None) -> str | None:
        """One test message to one subscriber (the desk's "test my subscription"), outside
        any story; None when the push service took it, else what went wrong."""
        payload = {
            "title": title,
            "body": body,
            "url": url,
            "tag": "test",
            "type": "test",
            "severity": "unknown",
        }
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"TTL": "3600", "Topic": "test", "Urgency": "normal"}
        outcome = self._send_one(sub, data, headers)
        return None if outcome.state == "sent" else f"{outcome.state}: {outcome.detail}"

    def send(self, out: Outgoing) -> Receipt:
        push = dict(out.payload["push"])
        body = json.dumps(push, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "TTL": str(self._ttl(push, datetime.now(UTC))),
            "Topic": str(push["tag"]),
            "Urgency": _urgency(str(push["severity"]), str(push["type"])),
        }
        slow: set[str] = set()  # push services that said 429: left for the retry
        lanes: dict[str, threading.BoundedSemaphore] = {}
        lanes_lock = threading.Lock()

        def lane(host: str) -> Any:
            if self.per_push_service is None:
                return contextlib.nullcontext()
            with lanes_lock:
                return lanes.setdefault(host, threading.BoundedSemaphore(self.per_push_service))

        local = threading.local()
        clients: list[httpx.Client] = []

        def client() -> httpx.Client:
            mine: httpx.Client | None = getattr(local, "http", None)
            if mine is None:
                mine = local.http = self._make_http() if self._make_http else self._http
                with lanes_lock:
                    clients.append(mine)
            return mine

        def one(sub: Any) -> Outcome:
            host = urlsplit(sub.address).netloc
            if host in slow:
                return Outcome("later", f"{host} asked to slow down")
            try:
                with lane(host):
                    outcome = self._send_one(sub, body, headers, client())
            except Exception as exc:  # an odd endpoint httpx will not send to
                return Outcome("refused", f"cannot send to it: {type(exc).__name__}: {exc}")
            if outcome.state == "later":
                slow.add(host)
            return outcome

        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                return fan_out(self._store, out, self.name, lambda page: list(pool.map(one, page)))
        finally:
            for c in clients:
                if c is not self._http:
                    c.close()


def _build(cfg: WebPushChannelConfig, deps: Deps) -> WebPushChannel:
    from clarion.subscriptions.webpush import Vapid

    key = deps.secret("vapid_private_key", cfg.vapid_private_key)
    try:
        vapid = Vapid(key, cfg.subject)
    except ValueError as exc:
        raise ConfigError([f"channels.{deps.name}.vapid_private_key: {exc}"]) from None
    return WebPushChannel(
        deps.name,
        vapid=vapid,
        # Push endpoints come from strangers' browsers: guarded like webhooks.
        http=deps.guarded(cfg.timeout),
        concurrency=cfg.concurrency,
        default_ttl=cfg.default_ttl,
        part_size=cfg.part_size,
        per_push_service=cfg.per_push_service,
        languages=deps.languages,
        make_http=lambda: deps.guarded(cfg.timeout),
    )


def _offline(thread_parts: int) -> WebPushChannel:
    from clarion.subscriptions.webpush import Vapid, new_private_key

    return WebPushChannel(
        "webpush",
        vapid=Vapid(new_private_key(), "mailto:preview@clarion.invalid"),
        http=httpx.Client(),
    )


CONNECTOR = ChannelConnector(
    kind="webpush",
    config=WebPushChannelConfig,
    profile=WebPushChannel.profile,
    build=_build,
    offline=_offline,
)
