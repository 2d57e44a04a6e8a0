"""Slack, through an incoming webhook: Block Kit blocks with a plain-text fallback; the alert's
images (https only, which Slack fetches itself) as image blocks with their alt text.

Incoming webhooks cannot reply, edit or deduplicate, and answer plain-text error codes
(`invalid_payload`, `no_service`, `channel_is_archived`…) that are mapped here.
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
from clarion.channels.http import HttpChannel, classify_http, request, retry_after_seconds
from clarion.channels.images import image_resources, with_card
from clarion.configtypes import ChannelConfigBase, Duration, SecretRef
from clarion.model import Notice


class SlackChannelConfig(ChannelConfigBase):
    """A Slack channel, through an incoming webhook (its URL is the secret)."""

    kind: Literal["slack"]
    webhook_url: SecretRef
    # Show the alert card first (Clarion serves it; the platform fetches it by URL), for
    # alerts with shapes.
    alert_card: bool = False
    timeout: Duration = 15.0


LIMIT = 3000  # one section block's text; Slack truncates messages past 40,000
GONE = (
    "no_service",
    "channel_not_found",
    "channel_is_archived",
    "invalid_token",
    "no_team",
    "team_disabled",
    "action_prohibited",
)


def _mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(HttpChannel):
    kind = "slack"
    profile = Profile(limit=LIMIT, counting="graphemes", rate_limit=(1, 1.0), images=True)

    def __init__(
        self,
        name: str,
        webhook_url: str,
        *,
        timeout: float = 15.0,
        languages: tuple[str, ...] = (),
        http: httpx.Client | None = None,
        card: Any = None,
    ) -> None:
        super().__init__(name, timeout=timeout, languages=languages, http=http)
        self._card = card  # (time zone, publisher) for the alert card, or None
        self.url = webhook_url

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        r = self.fit(notice, ctx)
        head, _, rest = r.text.partition("\n")
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": head[:150]}}
        ]
        if rest.strip():
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": _mrkdwn_escape(rest.strip())},
                }
            )
        # Slack fetches the image itself; `alt_text` is required (at most 2,000 characters).
        langs = self.languages or ctx.languages
        shown = with_card(
            image_resources(notice, langs, 4), notice, langs, ctx.permalink, self._card, 4
        )
        for uri, alt in shown:
            blocks.append({"type": "image", "image_url": uri, "alt_text": (alt or "image")[:2000]})
        return Rendered.from_row(
            {
                "text": r.text,
                "blocks": blocks,
                "count": r.count,
                "limit": r.limit,
                "language": r.language,
            }
        )

    def send(self, out: Outgoing) -> Receipt:
        what = "Slack webhook"
        resp = request(
            self._http,
            "POST",
            self.url,
            what,
            json={"text": out.payload["text"], "blocks": out.payload["blocks"]},
        )
        if resp.status_code == 200:
            return Receipt(post_id=f"slack:{out.id}")
        code = resp.text.strip()[:100]
        if code in GONE:
            raise ChannelError(ErrorKind.AUTH, f"{what}: {code} (the webhook needs replacing)")
        raise classify_http(
            resp.status_code, retry_after_seconds(resp.headers.get("retry-after")), what, code
        )


def _build(cfg: SlackChannelConfig, deps: Deps) -> SlackChannel:
    return SlackChannel(
        deps.name,
        deps.secret("webhook_url", cfg.webhook_url),
        timeout=cfg.timeout,
        languages=deps.languages,
        card=deps.card() if cfg.alert_card else None,
    )


CONNECTOR = ChannelConnector(
    kind="slack",
    config=SlackChannelConfig,
    profile=SlackChannel.profile,
    build=_build,
    offline=lambda parts: SlackChannel("slack", "https://hooks.slack.invalid/services/-"),
)
