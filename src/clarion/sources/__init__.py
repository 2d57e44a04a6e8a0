"""Sources: one module per input kind, each a pure parser plus a thin fetch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from clarion.config import (
    CapSourceConfig,
    Config,
    FeedSourceConfig,
    GtfsRtSourceConfig,
    NwsSourceConfig,
    StatuspageSourceConfig,
)
from clarion.model import Notice
from clarion.sources.base import Source, SourceError

__all__ = ["PARSERS", "Source", "SourceError", "build_sources"]


def _parse_cap(body: bytes, content_type: str) -> list[Notice]:
    from clarion.sources.cap import parse_cap

    return parse_cap(body)


def _parse_feed(body: bytes, content_type: str) -> list[Notice]:
    from clarion.sources.feed import parse_feed

    return parse_feed(body, content_type)


def _parse_nws(body: bytes, content_type: str) -> list[Notice]:
    from clarion.sources.nws import parse_nws

    return parse_nws(body, content_type)


def _parse_gtfsrt(body: bytes, content_type: str) -> list[Notice]:
    from clarion.sources.gtfsrt import parse_gtfsrt

    return parse_gtfsrt(body, content_type)


def _parse_statuspage(body: bytes, content_type: str) -> list[Notice]:
    from clarion.sources.statuspage import parse_statuspage

    return parse_statuspage(body, content_type)


def _parse_push(body: bytes, content_type: str) -> list[Notice]:
    from clarion.sources.push import parse_push

    return parse_push(body, content_type, source="push")


# kind → pure parser (bytes, content type) → notices; used by `clarion parse` and `replay`.
PARSERS: dict[str, Callable[[bytes, str], list[Notice]]] = {
    "cap": _parse_cap,
    "feed": _parse_feed,
    "nws": _parse_nws,
    "gtfsrt": _parse_gtfsrt,
    "statuspage": _parse_statuspage,
    "push": _parse_push,
}


def build_sources(config: Config) -> dict[str, Source]:
    from clarion.sources.cap import CapSource
    from clarion.sources.feed import FeedSource
    from clarion.sources.gtfsrt import GtfsRtSource
    from clarion.sources.nws import NwsSource
    from clarion.sources.statuspage import StatuspageSource

    out: dict[str, Source] = {}
    for name, cfg in config.sources.items():
        if not cfg.enabled:
            continue
        if isinstance(cfg, CapSourceConfig):
            out[name] = CapSource(
                name,
                cfg.url,
                cfg.max_bytes,
                cfg.max_documents,
                _certificates(name, cfg.trusted_certificates),
                cfg.concurrency,
            )
        elif isinstance(cfg, FeedSourceConfig):
            out[name] = FeedSource(name, cfg.url, cfg.max_bytes, cfg.initial_items)
        elif isinstance(cfg, NwsSourceConfig):
            filters = {
                k: v
                for k in ("area", "zone", "event", "severity", "urgency", "certainty")
                if (v := getattr(cfg, k))
            }
            out[name] = NwsSource(
                name,
                cfg.url,
                cfg.max_bytes,
                user_agent=cfg.user_agent,
                filters=filters,
                end_after=cfg.end_after,
            )
        elif isinstance(cfg, GtfsRtSourceConfig):
            out[name] = GtfsRtSource(
                name, cfg.url, cfg.max_bytes, cfg.end_after, cfg.resolved_headers()
            )
        elif isinstance(cfg, StatuspageSourceConfig):
            out[name] = StatuspageSource(name, cfg.url, cfg.max_bytes, cfg.end_after)
    return out


def _certificates(source: str, paths: list[Path]) -> list[x509.Certificate]:
    from clarion.config import ConfigError
    from clarion.sources.capsig import load_certificates

    certs: list[x509.Certificate] = []
    for i, path in enumerate(paths):
        key = f"sources.{source}.trusted_certificates[{i}]"
        try:
            certs.extend(load_certificates([path.read_bytes()]))
        except OSError as exc:
            raise ConfigError([f"{key}: cannot read {path}: {exc.strerror}"]) from None
        except ValueError:
            raise ConfigError([f"{key}: {path} holds no PEM certificate"]) from None
    return certs
