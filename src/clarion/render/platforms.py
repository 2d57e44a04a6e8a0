"""Render a notice for a platform without any account: what `clarion render` prints.

It builds the real channel object with placeholder credentials (no constructor makes a network
call) and asks it to render, so what is shown is exactly what the dispatcher would queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clarion.channels.base import Channel, RenderContext
from clarion.model import Notice

THREADABLE = ("bluesky", "mastodon", "threads", "x")


def _factories(thread_parts: int = 1) -> dict[str, Callable[[], Channel]]:
    from clarion.channels.apprise import AppriseChannel
    from clarion.channels.bluesky import BlueskyChannel
    from clarion.channels.discord import DiscordChannel
    from clarion.channels.email import EmailChannel
    from clarion.channels.mastodon import MastodonChannel
    from clarion.channels.matrix import MatrixChannel
    from clarion.channels.slack import SlackChannel
    from clarion.channels.telegram import TelegramChannel
    from clarion.channels.threads import ThreadsChannel
    from clarion.channels.webhook import WebhookChannel
    from clarion.channels.x import XChannel

    secret = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    return {
        "x": lambda: XChannel(
            "x",
            consumer_key="-",
            consumer_secret="-",
            access_token="-",
            access_token_secret="-",
            thread_parts=thread_parts,
        ),
        "mastodon": lambda: MastodonChannel(
            "mastodon", "https://mastodon.invalid", "-", thread_parts=thread_parts
        ),
        "bluesky": lambda: BlueskyChannel(
            "bluesky", "handle.invalid", "-", thread_parts=thread_parts
        ),
        "telegram": lambda: TelegramChannel("telegram", "0:-", "@channel"),
        "discord": lambda: DiscordChannel("discord", "https://discord.invalid/api/webhooks/0/-"),
        "slack": lambda: SlackChannel("slack", "https://hooks.slack.invalid/services/-"),
        "matrix": lambda: MatrixChannel("matrix", "https://matrix.invalid", "!room", "-"),
        "email": lambda: EmailChannel(
            "email",
            host="smtp.invalid",
            port=587,
            sender="alerts@example.org",
            recipients=["x@example.org"],
        ),
        "webhook": lambda: WebhookChannel("webhook", "https://hooks.invalid/", secret),
        "apprise": lambda: AppriseChannel("apprise", ["json://localhost/"]),
        "threads": lambda: ThreadsChannel("threads", "0", "-", thread_parts=thread_parts),
    }


PLATFORMS = sorted(_factories())


def render_for(
    platform: str, notice: Notice, ctx: RenderContext, *, thread_parts: int = 1
) -> dict[str, Any]:
    factories = _factories(thread_parts)
    if platform not in factories:
        raise KeyError(f"unknown platform {platform!r}; choose from {', '.join(PLATFORMS)}")
    channel = factories[platform]()
    try:
        return channel.render(notice, ctx)
    finally:
        channel.close()
