"""Every channel and source kind Clarion knows, in one place.

A platform is one module, `clarion/channels/<kind>.py`, that declares `CONNECTOR` (its config
model, profile, constructor and offline form); an input kind is `clarion/sources/<kind>.py`
the same way. Adding one is that file and a line below. Everything that lists kinds reads it
from here: the config file's model, `clarion render` and `clarion parse`, the preview
channel's limits, the docs' table (`clarion platforms`).

Connector modules import their SDKs (atproto, Mastodon.py, tweepy…) only when a channel is
built or sends, so reading the registry, and so validating a config, loads none of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clarion.channels.base import ChannelConnector, RenderContext
    from clarion.model import Notice
    from clarion.sources.base import SourceConnector

# The order is the order of the docs' table and of error messages.
CHANNEL_KINDS: tuple[str, ...] = (
    "preview",
    "activitypub",
    "mastodon",
    "bluesky",
    "x",
    "threads",
    "telegram",
    "discord",
    "slack",
    "matrix",
    "email",
    "webhook",
    "webpush",
    "apprise",
)
SOURCE_KINDS: tuple[str, ...] = ("cap", "nws", "feed", "gtfsrt", "statuspage", "push")

# Connectors registered at run time (a test's toy platform, a plugin), by kind.
_extra_channels: dict[str, ChannelConnector] = {}
_extra_sources: dict[str, SourceConnector] = {}
# Bumped on every registration, so models built from the registry know to rebuild.
generation = 0


def channels() -> dict[str, ChannelConnector]:
    """Every channel connector, by kind."""
    out = {
        kind: importlib.import_module(f"clarion.channels.{kind}").CONNECTOR
        for kind in CHANNEL_KINDS
    }
    out.update(_extra_channels)
    return out


def sources() -> dict[str, SourceConnector]:
    """Every source connector, by kind."""
    out = {
        kind: importlib.import_module(f"clarion.sources.{kind}").CONNECTOR for kind in SOURCE_KINDS
    }
    out.update(_extra_sources)
    return out


def channel(kind: str) -> ChannelConnector:
    found = channels().get(kind)
    if found is None:
        raise KeyError(f"no channel kind {kind!r}")
    return found


def source(kind: str) -> SourceConnector:
    found = sources().get(kind)
    if found is None:
        raise KeyError(f"no source kind {kind!r}")
    return found


def previewable() -> list[str]:
    """The platforms `clarion render` can show, sorted."""
    return sorted(k for k, c in channels().items() if c.offline is not None)


def threadable() -> list[str]:
    """The platforms that can split a long notice into a thread, sorted."""
    return sorted(k for k, c in channels().items() if c.threadable and c.offline is not None)


@contextmanager
def registered(
    *, channel: ChannelConnector | None = None, source: SourceConnector | None = None
) -> Iterator[None]:
    """Add a connector for the duration of the block (what a plugin's entry would do)."""
    global generation
    if channel is not None:
        if channel.kind in CHANNEL_KINDS or channel.kind in _extra_channels:
            raise ValueError(f"a channel kind {channel.kind!r} is already registered")
        _extra_channels[channel.kind] = channel
    if source is not None:
        if source.kind in SOURCE_KINDS or source.kind in _extra_sources:
            raise ValueError(f"a source kind {source.kind!r} is already registered")
        _extra_sources[source.kind] = source
    generation += 1
    try:
        yield
    finally:
        if channel is not None:
            _extra_channels.pop(channel.kind, None)
        if source is not None:
            _extra_sources.pop(source.kind, None)
        generation += 1


def _yes(flag: bool) -> str:
    return "yes" if flag else "–"


def markdown_tables() -> str:
    """The docs' table of every kind (docs/configuration.md holds this text, checked by a test;
    `clarion platforms` prints it)."""
    lines = [
        "| channel kind | text limit | counted as | threads | edits | images | idempotent "
        "| what it is |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, c in channels().items():
        p = c.profile
        limit = str(p.limit) if p.limit is not None else "–"
        lines.append(
            f"| `{kind}` | {limit} | {p.counting or '–'} | {_yes(p.threads)} | {_yes(p.edit)} "
            f"| {_yes(p.images)} | {_yes(p.idempotency)} | {c.summary} |"
        )
    lines += ["", "| source kind | polled | what it is |", "|---|---|---|"]
    for kind, s in sources().items():
        lines.append(f"| `{kind}` | {_yes(s.build is not None)} | {s.summary} |")
    return "\n".join(lines) + "\n"


def render_for(
    platform: str, notice: Notice, ctx: RenderContext, *, thread_parts: int = 1
) -> dict[str, Any]:
    """What `clarion render` prints: the real channel, built from its connector's offline
    form (placeholder credentials; no constructor makes a network call), asked to render, so
    what is shown is exactly what the dispatcher would queue."""
    connector = channels().get(platform)
    if connector is None or connector.offline is None:
        raise KeyError(f"unknown platform {platform!r}; choose from {', '.join(previewable())}")
    channel = connector.offline(thread_parts)
    try:
        return channel.render(notice, ctx).to_row()
    finally:
        channel.close()
