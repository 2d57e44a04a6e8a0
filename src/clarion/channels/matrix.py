"""Matrix, through the client-server API (`PUT …/send/m.room.message/{txnId}`), with httpx.

The transaction id is the delivery id, so a resend after a crash returns the event already
sent (Synapse keeps this per access token: keep one token per channel). Updates go in a
thread under the first post (`m.thread`, replying to the previous one), or edit the first post
(`m.replace`) when `edit_on_update` is set. Never parse a server name out of a room id.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

import httpx

from clarion.channels.base import ChannelError, ErrorKind, Outgoing, Profile, Receipt, RenderContext
from clarion.channels.http import HttpChannel, classify_http, json_body, request
from clarion.model import Notice

LIMIT = 16_000  # well inside the 65,536-byte event limit, even as HTML


class MatrixChannel(HttpChannel):
    kind = "matrix"
    profile = Profile(limit=LIMIT, counting="graphemes", threads=True, edit=True, idempotency=True)

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
    ) -> None:
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

    def render(self, notice: Notice, ctx: RenderContext) -> dict[str, Any]:
        r = self.fit(notice, ctx)
        head, _, rest = r.text.partition("\n")
        formatted = f"<strong>{html.escape(head)}</strong>" + html.escape(
            "\n" + rest if rest else ""
        ).replace("\n", "<br>")
        return {
            "text": r.text,
            "html": formatted,
            "count": r.count,
            "limit": r.limit,
            "language": r.language,
        }

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
        url = (
            f"{self.homeserver}/_matrix/client/v3/rooms/{quote(self.room_id, safe='')}"
            f"/send/m.room.message/{quote(out.id, safe='')}"
        )
        what = "Matrix send"
        resp = request(self._http, "PUT", url, what, json=content)
        data = json_body(resp, what)
        if resp.status_code == 200 and isinstance(data, dict) and data.get("event_id"):
            event = str(data["event_id"])
            link = f"https://matrix.to/#/{quote(self.room_id, safe='!:')}/{quote(event, safe='$:')}"
            return Receipt(post_id=event, url=link)
        errcode = str(data.get("errcode", "")) if isinstance(data, dict) else ""
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        if errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_FORBIDDEN"):
            raise ChannelError(ErrorKind.AUTH, f"{what}: {errcode}: {error}")
        if errcode == "M_TOO_LARGE":
            raise ChannelError(ErrorKind.PERMANENT, f"{what}: {errcode}: {error}")
        retry_ms = data.get("retry_after_ms") if isinstance(data, dict) else None
        retry = float(retry_ms) / 1000 if isinstance(retry_ms, int | float) else None
        raise classify_http(resp.status_code, retry, what, f"{errcode} {error}".strip())
