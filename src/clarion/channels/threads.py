"""Threads (Meta), through the Threads Graph API: create a text container, then publish it.

500 characters, where an emoji counts as its UTF-8 bytes (PLATFORMS.md). Updates are replies
(`reply_to_id`). Meta's errors come as `{"error": {"code", "message"}}`: code 190 is an expired
or revoked token; 4, 17, 32 and 613 are rate limits. No idempotency key: a crash mid-send is
flagged for an operator, never resent blindly.
"""

from __future__ import annotations

from typing import Any

import httpx

from clarion.channels.base import ChannelError, ErrorKind, Outgoing, Profile, Receipt, RenderContext
from clarion.channels.http import HttpChannel, classify_http, json_body, request
from clarion.channels.parts import payload_fields, post_parts
from clarion.model import Notice
from clarion.render.counting import COUNTERS
from clarion.render.text import compose_parts

LIMIT = 500
RATE_LIMIT_CODES = {4, 17, 32, 613}


class ThreadsChannel(HttpChannel):
    kind = "threads"
    # PLATFORMS.md: 250 posts and 1,000 replies per 24 h.
    profile = Profile(
        limit=LIMIT, counting="threads", threads=True, delete=True, rate_limit=(250, 86400.0)
    )

    def __init__(
        self,
        name: str,
        user_id: str,
        token: str,
        *,
        api_base: str = "https://graph.threads.net/v1.0",
        timeout: float = 20.0,
        languages: tuple[str, ...] = (),
        http: httpx.Client | None = None,
        thread_parts: int = 1,
    ) -> None:
        super().__init__(name, timeout=timeout, languages=languages, http=http)
        self.thread_parts = thread_parts
        self.user_id = user_id
        self._token = token
        self.base = api_base.rstrip("/")

    def _post(self, path: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        resp = request(
            self._http,
            "POST",
            f"{self.base}/{path}",
            what,
            params={**params, "access_token": self._token},
        )
        data = json_body(resp, what)
        if resp.status_code < 300 and isinstance(data, dict) and data.get("id"):
            return data
        err = data.get("error", {}) if isinstance(data, dict) else {}
        code, message = err.get("code"), str(err.get("message", ""))
        if code == 190:
            raise ChannelError(
                ErrorKind.AUTH, f"{what}: the access token expired or was revoked ({message})"
            )
        if code in RATE_LIMIT_CODES:
            raise ChannelError(ErrorKind.RATE_LIMITED, f"{what}: {message}", 3600.0)
        raise classify_http(resp.status_code, None, what, message)

    def render(self, notice: Notice, ctx: RenderContext) -> dict[str, Any]:
        return payload_fields(
            compose_parts(
                notice,
                limit=LIMIT,
                count=COUNTERS["threads"],
                languages=self.languages or ctx.languages,
                permalink=ctx.permalink,
                template=ctx.template,
                max_parts=self.thread_parts,
            )
        )

    def send(self, out: Outgoing) -> Receipt:
        return post_parts(out, self._post_one)

    def _post_one(self, i: int, text: str, parent: Receipt | None, root: Receipt | None) -> Receipt:
        params: dict[str, Any] = {"media_type": "TEXT", "text": text}
        if parent is not None:
            params["reply_to_id"] = parent.post_id
        container = self._post(f"{self.user_id}/threads", params, "Threads container")
        published = self._post(
            f"{self.user_id}/threads_publish", {"creation_id": container["id"]}, "Threads publish"
        )
        return Receipt(post_id=str(published["id"]))
