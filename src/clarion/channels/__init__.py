"""Channels: one module per output, all behind the contract in `base`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from clarion.channels.base import (
    Channel,
    ChannelError,
    ChannelLimits,
    Deps,
    ErrorKind,
    Outgoing,
    Profile,
    Receipt,
)

if TYPE_CHECKING:
    from clarion.config import Config

__all__ = [
    "Channel",
    "ChannelError",
    "ErrorKind",
    "Outgoing",
    "Profile",
    "Receipt",
    "build_channels",
]


def build_channels(
    config: Config,
    stored: Mapping[str, Mapping[str, str]] | None = None,
    only: str | None = None,
) -> dict[str, Channel]:
    """Instantiate every enabled channel (or `only` that one), each by its connector; secrets
    are resolved here, a credential stored from the desk (`stored`, decrypted) winning over
    the config's reference. No network I/O."""
    from clarion import registry
    from clarion.configtypes import ConfigError

    connectors = registry.channels()
    allow = tuple(config.clarion.networks())
    built: dict[str, Channel] = {}
    problems = []
    for name, cfg in config.channels.items():
        if not cfg.enabled or (only is not None and name != only):
            continue
        deps = Deps(
            name=name,
            languages=tuple(cfg.languages or config.clarion.languages),
            public_url=config.clarion.public_url,
            allow=allow,
            stored=dict((stored or {}).get(name, {})),
            publisher=config.clarion.publisher_name,
            timezone=config.clarion.timezone,
        )
        try:
            built[name] = connectors[cfg.kind].build(cfg, deps)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return built


def lazy_channels(
    config: Config, channels: Mapping[str, Channel] | None
) -> Callable[[], Mapping[str, Channel]]:
    """`channels` if given, else built from the config on first use (a web process that only
    renders, for previews and the API's write endpoints, needs no credentials until then)."""
    built: dict[str, Mapping[str, Channel]] = {}

    def get() -> Mapping[str, Channel]:
        if channels is not None:
            return channels
        if "c" not in built:
            built["c"] = build_channels(config)
        return built["c"]

    return get


def channel_limits(config: Config) -> dict[str, ChannelLimits]:
    """Each channel's caps and budget, from its config (and, for X, its plan's daily cap)."""
    out: dict[str, ChannelLimits] = {}
    for name, cfg in config.channels.items():
        daily = cfg.daily_cap if cfg.daily_cap is not None else cfg.default_daily_cap()
        if daily is None and cfg.monthly_cap is None and cfg.monthly_budget is None:
            continue
        out[name] = ChannelLimits(
            daily_cap=daily,
            monthly_cap=cfg.monthly_cap,
            monthly_budget=cfg.monthly_budget,
            reserve=cfg.budget_reserve,
            over_limit=cfg.over_limit,
        )
    return out
