"""The dry-run channel: records exactly what would be posted on X, Mastodon and Bluesky.

It is the embedded default, so Clarion is useful before any credential exists: every notice
shows, per platform, the text that would go out and its length as that platform counts it.
"""

from __future__ import annotations

import functools
from typing import Literal

from clarion.channels.base import (
    ChannelConnector,
    Deps,
    Outgoing,
    Profile,
    Receipt,
    RenderContext,
    Rendered,
)
from clarion.configtypes import ChannelConfigBase
from clarion.model import Notice
from clarion.render.counting import COUNTERS
from clarion.render.text import compose


class PreviewChannelConfig(ChannelConfigBase):
    """Dry run: records what would go out on X, Mastodon and Bluesky, with each one's count."""

    kind: Literal["preview"]


# The platforms previewed; their limits and counting rules are their connectors' profiles.
PREVIEWED = ("x", "mastodon", "bluesky")


@functools.cache  # the previewed platforms' profiles are fixed: read them once
def _previewed() -> dict[str, tuple[int, str]]:
    from clarion import registry

    out = {}
    for kind in PREVIEWED:
        profile = registry.channel(kind).profile
        assert profile.limit is not None and profile.counting is not None
        out[kind] = (profile.limit, profile.counting)
    return out


class PreviewChannel:
    kind = "preview"
    profile = Profile(limit=None, counting=None, threads=True, idempotency=True)

    def __init__(self, name: str, languages: tuple[str, ...] = ()) -> None:
        self.name = name
        self.languages = languages

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        platforms = {}
        for platform, (limit, counting) in _previewed().items():
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
        return Rendered.from_row({"platforms": platforms})

    def close(self) -> None:
        pass

    def send(self, out: Outgoing) -> Receipt:
        # Nothing leaves the machine: the rendered payload in the outbox row is the record.
        return Receipt(
            post_id=f"preview:{out.id}",
            extra={"in_reply_to": out.previous.post_id if out.previous else None},
        )


def _build(cfg: PreviewChannelConfig, deps: Deps) -> PreviewChannel:
    return PreviewChannel(deps.name, deps.languages)


CONNECTOR = ChannelConnector(
    kind="preview", config=PreviewChannelConfig, profile=PreviewChannel.profile, build=_build
)
