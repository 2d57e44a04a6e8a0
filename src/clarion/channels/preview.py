"""The dry-run channel: records exactly what would be posted on X, Mastodon and Bluesky.

It is the embedded default, so Clarion is useful before any credential exists: every notice
shows, per platform, the text that would go out and its length as that platform counts it.
"""

from __future__ import annotations

from typing import Any

from clarion.channels.base import Outgoing, Profile, Receipt, RenderContext
from clarion.model import Notice
from clarion.render.counting import COUNTERS
from clarion.render.text import compose

# The platforms previewed, with PLATFORMS.md's defaults: (limit, counting rule).
PREVIEWED = {
    "x": (280, "x-weighted"),
    "mastodon": (500, "mastodon"),
    "bluesky": (300, "graphemes"),
}


class PreviewChannel:
    kind = "preview"
    profile = Profile(limit=None, counting=None, threads=True, idempotency=True)

    def __init__(self, name: str, languages: tuple[str, ...] = ()) -> None:
        self.name = name
        self.languages = languages

    def render(self, notice: Notice, ctx: RenderContext) -> dict[str, Any]:
        platforms = {}
        for platform, (limit, counting) in PREVIEWED.items():
            r = compose(
                notice,
                limit=limit,
                count=COUNTERS[counting],
                languages=self.languages or ctx.languages,
                permalink=ctx.permalink,
                template=ctx.template,
            )
            platforms[platform] = {
                "text": r.text,
                "count": r.count,
                "limit": r.limit,
                "counting": counting,
                "language": r.language,
            }
        return {"platforms": platforms}

    def close(self) -> None:
        pass

    def send(self, out: Outgoing) -> Receipt:
        # Nothing leaves the machine: the rendered payload in the outbox row is the record.
        return Receipt(
            post_id=f"preview:{out.id}",
            extra={"in_reply_to": out.previous.post_id if out.previous else None},
        )
