"""Discord, through an incoming webhook (`POST {webhook}?wait=true`), with httpx.

The message is the headline (what a notification shows) and one embed with the details: the
title linking to the notice, the areas, instructions and description, a colour by severity,
the time it was sent, and the alert's first image (Discord fetches it itself; an embed image
has no alt text in Discord's API, so its description goes in the embed footer).

`nonce` + `enforce_nonce` make a repeated send within Discord's window return the message
already created (the nonce is the delivery id, cut to Discord's 25 characters). `?wait=true`
returns the message, so an update can edit it (`edit_on_update`) via
`PATCH {webhook}/messages/{id}`; otherwise it is posted as a new message, since webhooks cannot
reply. Mentions are never parsed: an alert must not ping @everyone.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

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
from clarion.channels.http import (
    HttpChannel,
    classify_http,
    json_body,
    request,
    retry_after_seconds,
)
from clarion.channels.images import image_resources, with_card
from clarion.configtypes import ChannelConfigBase, Duration, SecretRef
from clarion.model import Notice, Severity
from clarion.render.counting import count_graphemes
from clarion.render.text import cut, notice_link


class DiscordChannelConfig(ChannelConfigBase):
    """A Discord channel, through an incoming webhook (its URL is the secret)."""

    kind: Literal["discord"]
    webhook_url: SecretRef
    # Show the alert card first (Clarion serves it; the platform fetches it by URL), for
    # alerts with shapes.
    alert_card: bool = False
    edit_on_update: bool = False
    timeout: Duration = 15.0


LIMIT = 4096  # an embed's description; the message itself is the headline (2,000 at most)
COLOURS = {
    Severity.EXTREME: 0x8B0000,
    Severity.SEVERE: 0xD32F2F,
    Severity.MODERATE: 0xF57C00,
    Severity.MINOR: 0xFBC02D,
    Severity.UNKNOWN: 0x607D8B,
}


def nonce_for(delivery_id: str) -> str:
    return delivery_id.replace("-", "")[:25]


class DiscordChannel(HttpChannel):
    kind = "discord"
    profile = Profile(
        limit=LIMIT,
        counting="graphemes",
        edit=True,
        delete=True,
        idempotency=True,
        rate_limit=(5, 2.0),
        images=True,  # by URL, in the embed: Discord fetches it
    )

    def __init__(
        self,
        name: str,
        webhook_url: str,
        *,
        edit_on_update: bool = False,
        timeout: float = 15.0,
        languages: tuple[str, ...] = (),
        http: httpx.Client | None = None,
        card: Any = None,
    ) -> None:
        super().__init__(name, timeout=timeout, languages=languages, http=http)
        self._card = card  # (time zone, publisher) for the alert card, or None
        self.url = webhook_url.rstrip("/")
        self.edit_on_update = edit_on_update

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        r = self.fit(notice, ctx)
        link = notice_link(notice, ctx.permalink)
        head, _, rest = r.text.partition("\n\n")
        if link and rest.endswith(link):  # the title links there already
            rest = rest[: -len(link)].rstrip()
        embed: dict[str, Any] = {
            "title": cut(head, 256, count_graphemes),
            "color": COLOURS[notice.severity],
            "timestamp": notice.sent.isoformat(),
        }
        if rest:
            embed["description"] = rest
        if link:
            embed["url"] = link
        info = notice.info(self.languages or ctx.languages)
        if info is not None and info.sender_name:
            embed["author"] = {"name": info.sender_name[:256]}
        langs = self.languages or ctx.languages
        images = with_card(
            image_resources(notice, langs, 1), notice, langs, ctx.permalink, self._card, 1
        )
        if images:
            uri, alt = images[0]
            embed["image"] = {"url": uri}
            if alt:
                embed["footer"] = {"text": f"Image: {alt}"[:2048]}
        return Rendered.from_row(
            {
                "text": head[:2000],
                "embeds": [embed],
                "count": r.count,
                "limit": r.limit,
                "language": r.language,
            }
        )

    def _check(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        if resp.status_code < 300:
            data = json_body(resp, what)
            return dict(data) if isinstance(data, dict) else {}
        detail = ""
        retry_after = retry_after_seconds(resp.headers.get("retry-after"))
        try:
            data = resp.json()
            detail = str(data.get("message", ""))
            if data.get("retry_after") is not None:  # seconds, as a float, in the body
                retry_after = float(data["retry_after"])
        except ValueError:
            pass
        if resp.status_code == 404:  # the webhook was deleted: a credential problem
            raise ChannelError(ErrorKind.AUTH, f"{what}: webhook not found ({detail})")
        raise classify_http(resp.status_code, retry_after, what, detail)

    def send(self, out: Outgoing) -> Receipt:
        text = str(out.payload["text"])
        if self.edit_on_update and out.previous is not None:
            what = "Discord webhook edit"
            resp = request(
                self._http,
                "PATCH",
                f"{self.url}/messages/{out.previous.post_id}",
                what,
                json={
                    "content": text,
                    "embeds": out.payload.get("embeds") or [],
                    "allowed_mentions": {"parse": []},
                },
            )
        else:
            what = "Discord webhook"
            resp = request(
                self._http,
                "POST",
                self.url,
                what,
                params={"wait": "true"},
                json={
                    "content": text,
                    "embeds": out.payload.get("embeds") or [],
                    "nonce": nonce_for(out.id),
                    "enforce_nonce": True,
                    "allowed_mentions": {"parse": []},
                },
            )
        message = self._check(resp, what)
        if not message.get("id"):
            raise ChannelError(ErrorKind.RETRYABLE, f"{what} answered without a message id")
        guild = message.get("guild_id") or "@me"
        url = f"https://discord.com/channels/{guild}/{message.get('channel_id')}/{message['id']}"
        return Receipt(post_id=str(message["id"]), url=url)


def _build(cfg: DiscordChannelConfig, deps: Deps) -> DiscordChannel:
    return DiscordChannel(
        deps.name,
        deps.secret("webhook_url", cfg.webhook_url),
        edit_on_update=cfg.edit_on_update,
        timeout=cfg.timeout,
        languages=deps.languages,
        card=deps.card() if cfg.alert_card else None,
    )


CONNECTOR = ChannelConnector(
    kind="discord",
    config=DiscordChannelConfig,
    profile=DiscordChannel.profile,
    build=_build,
    offline=lambda parts: DiscordChannel("discord", "https://discord.invalid/api/webhooks/0/-"),
)
