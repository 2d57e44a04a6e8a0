"""Matrix, through the client-server API (`PUT …/send/m.room.message/{txnId}`), with httpx.

The transaction id is the delivery id, so a resend after a crash returns the event already
sent (Synapse keeps this per access token: keep one token per channel). Updates go in a
thread under the first post (`m.thread`, replying to the previous one), or edit the first post
(`m.replace`) when `edit_on_update` is set. Never parse a server name out of a room id.

The alert's images follow the first post, in its thread: each uploaded to the media repository
(`POST /_matrix/media/v3/upload`) and sent as an `m.image` event whose `body` is the image's
description (what clients show and read out as its alt text), with its own transaction id. An
image that cannot be fetched, uploaded or sent is left out, never the alert.
"""

from __future__ import annotations

import html
import logging
from typing import Any, Literal
from urllib.parse import quote

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
)
from clarion.channels.http import HttpChannel, classify_http, json_body, request
from clarion.channels.images import fetch_images
from clarion.configtypes import ChannelConfigBase, Duration, SecretRef, http_url
from clarion.model import Notice
from clarion.net import guarded_client


class MatrixChannelConfig(ChannelConfigBase):
    """A Matrix room, through a bot account's access token."""

    kind: Literal["matrix"]
    homeserver: str
    room_id: str
    token: SecretRef
    edit_on_update: bool = False
    images: bool = True  # the alert's images as m.image events, descriptions as their body
    # Attach the alert card first: the areas' map, headline, severity and times, drawn by
    # Clarion (docs/subscriptions.md), for alerts with shapes. Needs `images`.
    alert_card: bool = False
    timeout: Duration = 15.0

    _check_url = field_validator("homeserver")(http_url)


LIMIT = 16_000  # well inside the 65,536-byte event limit, even as HTML
MAX_IMAGES = 4
MAX_IMAGE_BYTES = 8 * 1024 * 1024
log = logging.getLogger(__name__)


class MatrixChannel(HttpChannel):
    kind = "matrix"
    profile = Profile(
        limit=LIMIT, counting="graphemes", threads=True, edit=True, idempotency=True, images=True
    )

    def __init__(
        self,
        name: str,
        homeserver: str,
        room_id: str,
        token: str,
        *,
        edit_on_update: bool = False,
        timeout: float = 15.0,
        languages: tuple[str, ...] = (),
        http: httpx.Client | None = None,
        images: bool = True,
        fetch: httpx.Client | None = None,
        card: Any = None,
    ) -> None:
        # Images come from URIs the publisher put in the alert: through the SSRF guard.
        self._card = card  # (time zone, publisher) for the alert card, or None
        self._fetch = (
            (fetch or guarded_client(timeout=timeout, follow_redirects=True)) if images else None
        )
        super().__init__(
            name,
            timeout=timeout,
            languages=languages,
            http=http,
            headers={"Authorization": f"Bearer {token}"},
        )
        self.homeserver = homeserver.rstrip("/")
        self.room_id = room_id
        self.edit_on_update = edit_on_update

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        r = self.fit(notice, ctx)
        head, _, rest = r.text.partition("\n")
        formatted = f"<strong>{html.escape(head)}</strong>" + html.escape(
            "\n" + rest if rest else ""
        ).replace("\n", "<br>")
        return Rendered.from_row(
            {
                "text": r.text,
                "html": formatted,
                "count": r.count,
                "limit": r.limit,
                "language": r.language,
            }
        )

    def send(self, out: Outgoing) -> Receipt:
        content: dict[str, Any] = {
            "msgtype": "m.text",
            "body": out.payload["text"],
            "format": "org.matrix.custom.html",
            "formatted_body": out.payload["html"],
        }
        if out.previous is not None and out.root is not None:
            if self.edit_on_update:
                new = dict(content)
                content = {
                    **content,
                    "body": "* " + str(content["body"]),
                    "m.new_content": new,
                    "m.relates_to": {"rel_type": "m.replace", "event_id": out.root.post_id},
                }
            else:
                content["m.relates_to"] = {
                    "rel_type": "m.thread",
                    "event_id": out.root.post_id,
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": out.previous.post_id},
                }
        event = self._send_event(out.id, content, "Matrix send")
        if out.previous is None:
            self._images(out, event)
        link = f"https://matrix.to/#/{quote(self.room_id, safe='!:')}/{quote(event, safe='$:')}"
        return Receipt(post_id=event, url=link)

    def close(self) -> None:
        super().close()
        if self._fetch is not None:
            self._fetch.close()

    def _images(self, out: Outgoing, thread_root: str) -> None:
        if self._fetch is None:
            return
        images = fetch_images(
            self._fetch,
            out.notice,
            self.languages,
            limit=MAX_IMAGES,
            max_bytes=MAX_IMAGE_BYTES,
            who=self.name,
            card=self._card,
        )
        for i, image in enumerate(images):
            try:
                what = "Matrix media upload"
                resp = request(
                    self._http,
                    "POST",
                    f"{self.homeserver}/_matrix/media/v3/upload",
                    what,
                    content=image.data,
                    headers={"Content-Type": image.mime_type},
                )
                data = json_body(resp, what)
                uri = data.get("content_uri") if isinstance(data, dict) else None
                if resp.status_code != 200 or not uri:
                    raise classify_http(resp.status_code, None, what, str(data)[:200])
                content = {
                    "msgtype": "m.image",
                    "body": image.alt or "image",
                    "url": uri,
                    "info": {"mimetype": image.mime_type, "size": len(image.data)},
                    "m.relates_to": {
                        "rel_type": "m.thread",
                        "event_id": thread_root,
                        "is_falling_back": True,
                        "m.in_reply_to": {"event_id": thread_root},
                    },
                }
                self._send_event(f"{out.id}.image{i}", content, "Matrix image send")
            except ChannelError as exc:
                log.warning("%s: an image was left out: %s", self.name, exc.message)

    def _send_event(self, txn: str, content: dict[str, Any], what: str) -> str:
        url = (
            f"{self.homeserver}/_matrix/client/v3/rooms/{quote(self.room_id, safe='')}"
            f"/send/m.room.message/{quote(txn, safe='')}"
        )
        resp = request(self._http, "PUT", url, what, json=content)
        data = json_body(resp, what)
        if resp.status_code == 200 and isinstance(data, dict) and data.get("event_id"):
            return str(data["event_id"])
        errcode = str(data.get("errcode", "")) if isinstance(data, dict) else ""
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        if errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_FORBIDDEN"):
            raise ChannelError(ErrorKind.AUTH, f"{what}: {errcode}: {error}")
        if errcode == "M_TOO_LARGE":
            raise ChannelError(ErrorKind.PERMANENT, f"{what}: {errcode}: {error}")
        retry_ms = data.get("retry_after_ms") if isinstance(data, dict) else None
        retry = float(retry_ms) / 1000 if isinstance(retry_ms, int | float) else None
        raise classify_http(resp.status_code, retry, what, f"{errcode} {error}".strip())


def _build(cfg: MatrixChannelConfig, deps: Deps) -> MatrixChannel:
    return MatrixChannel(
        deps.name,
        cfg.homeserver,
        cfg.room_id,
        deps.secret("token", cfg.token),
        edit_on_update=cfg.edit_on_update,
        timeout=cfg.timeout,
        languages=deps.languages,
        images=cfg.images,
        card=deps.card() if cfg.alert_card else None,
        fetch=deps.fetcher(cfg.timeout, cfg.images),
    )


CONNECTOR = ChannelConnector(
    kind="matrix",
    config=MatrixChannelConfig,
    profile=MatrixChannel.profile,
    build=_build,
    offline=lambda parts: MatrixChannel("matrix", "https://matrix.invalid", "!room", "-"),
)
