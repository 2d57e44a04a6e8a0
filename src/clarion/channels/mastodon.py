"""Mastodon (and compatible servers), through Mastodon.py.

- The text limit is read from the instance (`/api/v2/instance`, then v1) once and cached; the
  config may override it. URLs count 23 and remote mentions count as `@user`.
- Every status is posted with `Idempotency-Key` = the delivery id, so a resend after a crash
  returns the status already created instead of posting twice (Mastodon keeps keys for 1 h).
- Updates and cancellations are replies under the channel's previous post in the thread; on
  cancel the original can also be edited or deleted (`on_cancel`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator

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
from clarion.channels.images import fetch_images
from clarion.channels.parts import part_key, part_texts, payload_fields, post_parts, thread_start
from clarion.configtypes import Duration, SecretRef, Threadable, http_url
from clarion.model import MsgType, Notice
from clarion.net import guarded_client
from clarion.render.counting import count_mastodon
from clarion.render.text import compose_parts

if TYPE_CHECKING:
    import mastodon
    import requests
else:
    mastodon = lazy_module("mastodon")
    requests = lazy_module("requests")


class MastodonChannelConfig(Threadable):
    """A Mastodon (or compatible) account, posting with an access token."""

    kind: Literal["mastodon"]
    instance: str
    token: SecretRef
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    max_characters: int | None = Field(default=None, ge=50)
    on_cancel: Literal["reply", "reply_and_edit", "reply_and_delete"] = "reply"
    edit_on_update: bool = False  # edit the post in place instead of replying
    images: bool = True  # attach the alert's images (CAP resources), their descriptions as alt text
    # Attach the alert card first: the areas' map, headline, severity and times, drawn by
    # Clarion (docs/subscriptions.md), for alerts with shapes. Needs `images`.
    alert_card: bool = False
    timeout: Duration = 20.0

    _check_url = field_validator("instance")(http_url)

    @model_validator(mode="after")
    def _one_post_to_edit(self) -> MastodonChannelConfig:
        if self.edit_on_update and self.thread_parts > 1:
            raise ValueError(
                "edit_on_update edits one post in place; it cannot be combined with "
                "thread_parts > 1 (set one of them)"
            )
        return self


DEFAULT_LIMIT = 500
MAX_IMAGES = 4
MAX_IMAGE_BYTES = 8 * 1024 * 1024

log = logging.getLogger(__name__)


# Mastodon's documented default: 300 requests per 5 minutes per account.
PROFILE = Profile(
    limit=DEFAULT_LIMIT,
    counting="mastodon",
    threads=True,
    edit=True,
    delete=True,
    idempotency=True,
    rate_limit=(300, 300.0),
    images=True,
)


class MastodonChannel:
    kind = "mastodon"

    def __init__(
        self,
        name: str,
        instance: str,
        token: str,
        *,
        visibility: str = "public",
        max_characters: int | None = None,
        on_cancel: str = "reply",
        edit_on_update: bool = False,
        timeout: float = 20.0,
        languages: tuple[str, ...] = (),
        session: requests.Session | None = None,
        images: bool = True,
        fetch: httpx.Client | None = None,
        card: Any = None,
        thread_parts: int = 1,
        template: str | None = None,
    ) -> None:
        self.name = name
        self.thread_parts = thread_parts
        self.template = template
        self.instance = instance.rstrip("/")
        self.visibility = visibility
        self.on_cancel = on_cancel
        self.edit_on_update = edit_on_update
        # Images are fetched from the URIs the publisher put in the alert (through the SSRF
        # guard: build_channels passes one that knows clarion.allow_networks).
        self._card = card  # (time zone, publisher) for the alert card, or None
        self._fetch = (
            (fetch or guarded_client(timeout=timeout, follow_redirects=True)) if images else None
        )
        self.languages = languages
        self._limit_override = max_characters
        self._limit: int | None = max_characters
        self.api = mastodon.Mastodon(
            access_token=token,
            api_base_url=self.instance,
            ratelimit_method="throw",
            request_timeout=timeout,
            version_check_mode="none",
            session=session,
            user_agent="Clarion/0.1",
        )
        self.profile = dataclasses.replace(PROFILE, limit=max_characters or DEFAULT_LIMIT)

    # --- pure -----------------------------------------------------------------------------

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        return Rendered.from_row(
            self._render(
                notice, ctx.languages, ctx.permalink, self._limit or DEFAULT_LIMIT, ctx.template
            )
        )

    def _render(
        self,
        notice: Notice,
        languages: tuple[str, ...],
        permalink: str | None,
        limit: int,
        template: str | None,
    ) -> dict[str, Any]:
        parts = compose_parts(
            notice,
            limit=limit,
            count=count_mastodon,
            languages=self.languages or languages,
            permalink=permalink,
            template=template,
            max_parts=self.thread_parts,
        )
        return {**payload_fields(parts), "permalink": permalink}

    # --- I/O ------------------------------------------------------------------------------

    def instance_limit(self) -> int:
        """The instance's own limit (read once), unless config overrides it."""
        if self._limit is not None and (self._limit_override or self._limit_read):
            return self._limit
        limit = None
        try:
            info = self._call(self.api.instance_v2)
            limit = info.get("configuration", {}).get("statuses", {}).get("max_characters")
        except ChannelError as exc:
            if exc.kind is not ErrorKind.PERMANENT:
                raise
        if limit is None:  # pre-4.0 servers, and forks that only serve v1
            info = self._call(self.api.instance_v1)
            statuses = (info.get("configuration") or {}).get("statuses") or {}
            limit = statuses.get("max_characters") or info.get("max_toot_chars")
        self._limit = int(limit) if limit else DEFAULT_LIMIT
        self._limit_read = True
        return self._limit

    _limit_read = False

    def close(self) -> None:
        self.api.session.close()
        if self._fetch is not None:
            self._fetch.close()

    def send(self, out: Outgoing) -> Receipt:
        limit = self.instance_limit()
        if any(count_mastodon(t) > limit for t in part_texts(out.payload)):
            # The instance allows less than we rendered for: render again for its limit.
            payload = self._render(
                out.notice, (), out.payload.get("permalink"), limit, self.template
            )
            out = dataclasses.replace(out, payload_or_json={**out.payload, **payload})
        if self.edit_on_update and out.previous is not None:
            # Mastodon shows the edit history; followers see one post that stays current.
            # (Config refuses edit_on_update with thread_parts > 1: one post to edit.)
            text = str(out.payload["text"])
            edited = self._call(self.api.status_update, out.previous.post_id, text)
            return Receipt(post_id=str(edited["id"]), url=edited.get("url"))
        language = _language(out.payload.get("language"))

        def post_one(i: int, text: str, parent: Receipt | None, root: Receipt | None) -> Receipt:
            media_ids = self._media(out.notice) if i == 0 and out.previous is None else []
            status = self._call(
                self.api.status_post,
                text,
                media_ids=media_ids or None,
                in_reply_to_id=parent.post_id if parent else None,
                visibility=self.visibility,
                language=language,
                idempotency_key=part_key(out.id, i),
            )
            return Receipt(post_id=str(status["id"]), url=status.get("url"))

        receipt = post_parts(out, post_one)
        if out.notice.msg_type is MsgType.CANCEL and out.root is not None:
            original_id = thread_start(out.root).post_id
            if self.on_cancel == "reply_and_delete":
                try:
                    self._call(self.api.status_delete, original_id)
                except ChannelError as exc:
                    if exc.kind is not ErrorKind.PERMANENT:  # already gone is fine
                        raise
            elif self.on_cancel == "reply_and_edit":
                original = self._call(self.api.status, original_id)
                old = _plain(original.get("content", ""))
                if not old.startswith("CANCELLED"):
                    self._call(
                        self.api.status_update,
                        original_id,
                        _cut(f"CANCELLED — see reply. {old}", limit),
                    )
        return receipt

    def _media(self, notice: Notice) -> list[str]:
        """Upload the notice's images (CAP resources) with their descriptions as alt text.

        An image that cannot be fetched or uploaded is left out, never the alert: the post goes
        on without it. Mastodon allows four images a post.
        """
        if self._fetch is None:
            return []
        ids: list[str] = []
        for image in fetch_images(
            self._fetch,
            notice,
            self.languages,
            limit=MAX_IMAGES,
            max_bytes=MAX_IMAGE_BYTES,
            who=self.name,
            card=self._card,
        ):
            try:
                media = self._call(
                    self.api.media_post,
                    image.data,
                    mime_type=image.mime_type,
                    description=image.alt[:1500],
                )
            except ChannelError as exc:
                log.warning("%s: an image upload failed, posting without it: %s", self.name, exc)
                continue
            ids.append(str(media["id"]))
        return ids

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except mastodon.MastodonRatelimitError:
            reset = getattr(self.api, "ratelimit_reset", None)
            wait = max(1.0, float(math.ceil(reset - time.time()))) if reset else None
            raise ChannelError(
                ErrorKind.RATE_LIMITED, f"{self.instance} rate limit reached", wait
            ) from None
        except mastodon.MastodonUnauthorizedError as exc:
            raise ChannelError(
                ErrorKind.AUTH, f"{self.instance} refused the access token: {_api_message(exc)}"
            ) from None
        except mastodon.MastodonServerError as exc:
            raise ChannelError(
                ErrorKind.RETRYABLE, f"{self.instance} server error: {_api_message(exc)}"
            ) from None
        except mastodon.MastodonNetworkError as exc:
            raise ChannelError(ErrorKind.RETRYABLE, f"{self.instance} unreachable: {exc}") from None
        except mastodon.MastodonNotFoundError as exc:
            raise ChannelError(
                ErrorKind.PERMANENT, f"{self.instance}: not found: {_api_message(exc)}"
            ) from None
        except mastodon.MastodonAPIError as exc:
            code = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
            if code == 403:
                raise ChannelError(
                    ErrorKind.AUTH, f"{self.instance} forbade the post (403): {_api_message(exc)}"
                ) from None
            if code is None:  # an unparseable answer (garbage, HTML from a proxy): try again
                raise ChannelError(
                    ErrorKind.RETRYABLE, f"{self.instance} answered garbage: {str(exc)[:200]}"
                ) from None
            if code in (408, 409, 425):
                raise ChannelError(
                    ErrorKind.RETRYABLE, f"{self.instance} answered {code}"
                ) from None
            raise ChannelError(
                ErrorKind.PERMANENT,
                f"{self.instance} rejected the post ({code}): {_api_message(exc)}",
            ) from None


def _api_message(exc: Exception) -> str:
    args = exc.args
    if len(args) >= 4 and args[3]:
        return str(args[3])
    if len(args) >= 3:
        return f"HTTP {args[1]} {args[2]}"
    return str(exc)


def _language(lang: Any) -> str | None:
    if not lang:
        return None
    return str(lang).split("-")[0].lower()  # Mastodon takes ISO 639 codes: en, fr


def _plain(html: str) -> str:
    import lxml.html

    if not html:
        return ""
    return " ".join(lxml.html.fromstring(f"<div>{html}</div>").text_content().split())


def _cut(text: str, limit: int) -> str:
    return text if count_mastodon(text) <= limit else text[: max(0, limit - 1)] + "…"


def _build(cfg: MastodonChannelConfig, deps: Deps) -> MastodonChannel:
    return MastodonChannel(
        deps.name,
        cfg.instance,
        deps.secret("token", cfg.token),
        visibility=cfg.visibility,
        max_characters=cfg.max_characters,
        on_cancel=cfg.on_cancel,
        edit_on_update=cfg.edit_on_update,
        timeout=cfg.timeout,
        languages=deps.languages,
        images=cfg.images,
        card=deps.card() if cfg.alert_card else None,
        thread_parts=cfg.thread_parts,
        template=cfg.template,
        fetch=deps.fetcher(cfg.timeout, cfg.images),
    )


CONNECTOR = ChannelConnector(
    kind="mastodon",
    config=MastodonChannelConfig,
    profile=PROFILE,
    build=_build,
    offline=lambda parts: MastodonChannel(
        "mastodon", "https://mastodon.invalid", "-", thread_parts=parts
    ),
)
