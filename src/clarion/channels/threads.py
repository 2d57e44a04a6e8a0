"""Threads (Meta), through the Threads Graph API: create a text container, then publish it.

Long-lived Threads tokens last 60 days and can be refreshed once at least a day old
(`GET /refresh_access_token?grant_type=th_refresh_token`), each refresh good for 60 more days.
A relay meant to run for years refreshes by itself: before a send, when `token_refresh` has
passed since the last try (and at the first send after a start). The new token is written back
to the token's file (`token = { file = … }`), atomically and readable by its owner only, so a
restart keeps it; a token from the environment can only be kept in memory, which is logged. A
refresh that fails (a token under a day old, Meta unreachable) is logged and tried again later:
it never holds a post back, and an expired token still marks the channel `needs_reauth`.

500 characters, where an emoji counts as its UTF-8 bytes (PLATFORMS.md). Updates are replies
(`reply_to_id`). Meta's errors come as `{"error": {"code", "message"}}`: code 190 is an expired
or revoked token; 4, 17, 32 and 613 are rate limits. No idempotency key: a crash mid-send is
flagged for an operator, never resent blindly.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BeforeValidator, Field, field_validator

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
from clarion.channels.parts import payload_fields, post_parts
from clarion.configtypes import Duration, SecretRef, Threadable, http_url, parse_duration
from clarion.model import Notice
from clarion.render.counting import COUNTERS
from clarion.render.text import compose_parts


class ThreadsChannelConfig(Threadable):
    """A Threads profile, through the Threads Graph API (a long-lived Meta token)."""

    kind: Literal["threads"]
    user_id: str
    token: SecretRef
    api_base: str = "https://graph.threads.net/v1.0"
    # How often to refresh the 60-day token (0 never); saved back when the token is a file.
    token_refresh: Annotated[float, BeforeValidator(parse_duration), Field(ge=0)] = 7 * 86400.0
    timeout: Duration = 20.0

    _check_url = field_validator("api_base")(http_url)


LIMIT = 500
DEFAULT_REFRESH = 7 * 86400.0
log = logging.getLogger(__name__)
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
        token_file: Path | None = None,
        token_refresh: float = DEFAULT_REFRESH,  # 0: never refresh
        clock: Any = time.time,
    ) -> None:
        super().__init__(name, timeout=timeout, languages=languages, http=http)
        self.thread_parts = thread_parts
        self.user_id = user_id
        self._token = token
        self.base = api_base.rstrip("/")
        self.token_file = token_file
        self.token_refresh = token_refresh
        self.clock = clock
        self._refresh_tried_at: float | None = None
        self.token_expires_at: float | None = None  # known after a refresh

    def refresh_token(self) -> bool:
        """Exchange the long-lived token for a fresh one; True when it was refreshed."""
        self._refresh_tried_at = self.clock()
        parts = urlsplit(self.base)
        url = f"{parts.scheme}://{parts.netloc}/refresh_access_token"
        what = "Threads token refresh"
        try:
            resp = request(
                self._http,
                "GET",
                url,
                what,
                params={"grant_type": "th_refresh_token", "access_token": self._token},
            )
            data = json_body(resp, what)
        except ChannelError as exc:
            log.warning("%s: %s; will try again later", self.name, exc.message)
            return False
        token = data.get("access_token") if isinstance(data, dict) else None
        if resp.status_code >= 300 or not token:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            log.warning(
                "%s: %s answered HTTP %s: %s; will try again later (a token must be a day "
                "old to be refreshed)",
                self.name,
                what,
                resp.status_code,
                err.get("message", "") or str(data)[:200],
            )
            return False
        self._token = str(token)
        if data.get("expires_in"):
            self.token_expires_at = self.clock() + float(data["expires_in"])
        if self.token_file is not None:
            _write_secret(self.token_file, self._token)
            log.info("%s: access token refreshed and saved to %s", self.name, self.token_file)
        else:
            log.warning(
                "%s: access token refreshed, but it came from the environment and cannot be "
                "saved: give it as token = { file = ... } so a restart keeps the fresh one",
                self.name,
            )
        return True

    def _maybe_refresh(self) -> None:
        if self.token_refresh <= 0:
            return
        last = self._refresh_tried_at
        if last is None or self.clock() - last >= self.token_refresh:
            self.refresh_token()

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

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        return Rendered.from_row(
            payload_fields(
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
        )

    def send(self, out: Outgoing) -> Receipt:
        self._maybe_refresh()
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


def _write_secret(path: Path, value: str) -> None:
    """Replace the file's content atomically (a crash leaves the old token or the new one,
    never half of one), readable by its owner only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build(cfg: ThreadsChannelConfig, deps: Deps) -> ThreadsChannel:
    return ThreadsChannel(
        deps.name,
        cfg.user_id,
        deps.secret("token", cfg.token),
        api_base=cfg.api_base,
        timeout=cfg.timeout,
        languages=deps.languages,
        thread_parts=cfg.thread_parts,
        token_file=cfg.token.file,
        token_refresh=cfg.token_refresh,
    )


CONNECTOR = ChannelConnector(
    kind="threads",
    config=ThreadsChannelConfig,
    profile=ThreadsChannel.profile,
    build=_build,
    offline=lambda parts: ThreadsChannel("threads", "0", "-", thread_parts=parts),
)
