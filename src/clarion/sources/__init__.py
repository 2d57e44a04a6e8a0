"""Sources: one module per input kind, each a pure parser plus a thin fetch."""

from __future__ import annotations

from collections.abc import Callable

from clarion.config import CapSourceConfig, Config, FeedSourceConfig
from clarion.model import Notice
from clarion.sources.base import Source, SourceError

__all__ = ["PARSERS", "Source", "SourceError", "build_sources"]


def _parse_cap(body: bytes, content_type: str) -> list[Notice]:
    from clarion.sources.cap import parse_cap

    return parse_cap(body)


def _parse_feed(body: bytes, content_type: str) -> list[Notice]:
    from clarion.sources.feed import parse_feed

    return parse_feed(body, content_type)


# kind → pure parser (bytes, content type) → notices; used by `clarion parse` and `replay`.
PARSERS: dict[str, Callable[[bytes, str], list[Notice]]] = {
    "cap": _parse_cap,
    "feed": _parse_feed,
}


def build_sources(config: Config) -> dict[str, Source]:
    from clarion.sources.cap import CapSource
    from clarion.sources.feed import FeedSource

    out: dict[str, Source] = {}
    for name, cfg in config.sources.items():
        if not cfg.enabled:
            continue
        if isinstance(cfg, CapSourceConfig):
            out[name] = CapSource(name, cfg.url, cfg.max_bytes, cfg.max_documents)
        elif isinstance(cfg, FeedSourceConfig):
            out[name] = FeedSource(name, cfg.url, cfg.max_bytes, cfg.initial_items)
    return out
