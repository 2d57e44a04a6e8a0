"""Sources: one module per input kind, each a pure parser plus a thin fetch, declared to the
registry by its `CONNECTOR` (`clarion.registry`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from clarion.sources.base import Source, SourceError

if TYPE_CHECKING:
    from clarion.config import Config
    from clarion.model import Notice

__all__ = ["Source", "SourceError", "build_sources", "parsers"]


def build_sources(config: Config) -> dict[str, Source]:
    """Every enabled polled source, each built by its connector (a pushed kind has none)."""
    from clarion import registry

    connectors = registry.sources()
    out: dict[str, Source] = {}
    for name, cfg in config.sources.items():
        build = connectors[cfg.kind].build
        if cfg.enabled and build is not None:
            out[name] = build(name, cfg)
    return out


def parsers() -> dict[str, Callable[[bytes, str], list[Notice]]]:
    """kind → the pure parser (bytes, content type) → notices: `clarion parse`, replays."""
    from clarion import registry

    return {kind: c.parse for kind, c in registry.sources().items()}
