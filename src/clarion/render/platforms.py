"""Render a notice for a platform without any account: what `clarion render` prints.

It builds the real channel object from its connector's offline form (placeholder credentials;
no constructor makes a network call) and asks it to render, so what is shown is exactly what
the dispatcher would queue. The platforms are the registry's.
"""

from __future__ import annotations

from typing import Any

from clarion import registry
from clarion.channels.base import RenderContext
from clarion.model import Notice


def render_for(
    platform: str, notice: Notice, ctx: RenderContext, *, thread_parts: int = 1
) -> dict[str, Any]:
    connector = registry.channels().get(platform)
    if connector is None or connector.offline is None:
        raise KeyError(
            f"unknown platform {platform!r}; choose from {', '.join(registry.previewable())}"
        )
    channel = connector.offline(thread_parts)
    try:
        return channel.render(notice, ctx)
    finally:
        channel.close()
