"""Channels: one module per output, all behind the contract in `base`."""

from __future__ import annotations

from clarion.channels.base import Channel, ChannelError, ErrorKind, Outgoing, Profile, Receipt
from clarion.config import (
    BlueskyChannelConfig,
    Config,
    ConfigError,
    DiscordChannelConfig,
    EmailChannelConfig,
    MastodonChannelConfig,
    MatrixChannelConfig,
    PreviewChannelConfig,
    SlackChannelConfig,
    TelegramChannelConfig,
    WebhookChannelConfig,
)

__all__ = [
    "Channel",
    "ChannelError",
    "ErrorKind",
    "Outgoing",
    "Profile",
    "Receipt",
    "build_channels",
]


def build_channels(config: Config) -> dict[str, Channel]:
    """Instantiate every enabled channel; secrets are resolved here. No network I/O."""
    from clarion.channels.bluesky import BlueskyChannel
    from clarion.channels.discord import DiscordChannel
    from clarion.channels.email import EmailChannel
    from clarion.channels.mastodon import MastodonChannel
    from clarion.channels.matrix import MatrixChannel
    from clarion.channels.preview import PreviewChannel
    from clarion.channels.slack import SlackChannel
    from clarion.channels.telegram import TelegramChannel
    from clarion.channels.webhook import WebhookChannel

    built: dict[str, Channel] = {}
    problems = []
    for name, cfg in config.channels.items():
        if not cfg.enabled:
            continue
        langs = tuple(cfg.languages or config.clarion.languages)
        try:
            if isinstance(cfg, PreviewChannelConfig):
                built[name] = PreviewChannel(name, langs)
            elif isinstance(cfg, WebhookChannelConfig):
                secret = _secret(name, "secret", cfg.secret)
                try:
                    built[name] = WebhookChannel(name, cfg.url, secret, cfg.timeout)
                except ValueError as exc:
                    raise ConfigError([f"channels.{name}.secret: {exc}"]) from None
            elif isinstance(cfg, TelegramChannelConfig):
                built[name] = TelegramChannel(
                    name,
                    _secret(name, "token", cfg.token),
                    cfg.chat_id,
                    api_base=cfg.api_base,
                    edit_on_update=cfg.edit_on_update,
                    timeout=cfg.timeout,
                    languages=langs,
                )
            elif isinstance(cfg, DiscordChannelConfig):
                built[name] = DiscordChannel(
                    name,
                    _secret(name, "webhook_url", cfg.webhook_url),
                    edit_on_update=cfg.edit_on_update,
                    timeout=cfg.timeout,
                    languages=langs,
                )
            elif isinstance(cfg, SlackChannelConfig):
                built[name] = SlackChannel(
                    name,
                    _secret(name, "webhook_url", cfg.webhook_url),
                    timeout=cfg.timeout,
                    languages=langs,
                )
            elif isinstance(cfg, BlueskyChannelConfig):
                built[name] = BlueskyChannel(
                    name,
                    cfg.handle,
                    _secret(name, "app_password", cfg.app_password),
                    service=cfg.service,
                    timeout=cfg.timeout,
                    languages=langs,
                )
            elif isinstance(cfg, EmailChannelConfig):
                built[name] = EmailChannel(
                    name,
                    host=cfg.host,
                    port=cfg.port,
                    sender=cfg.sender,
                    recipients=cfg.recipients,
                    username=cfg.username,
                    password=_secret(name, "password", cfg.password) if cfg.password else None,
                    security=cfg.security,
                    unsubscribe=cfg.unsubscribe,
                    timeout=cfg.timeout,
                    languages=langs,
                )
            elif isinstance(cfg, MatrixChannelConfig):
                built[name] = MatrixChannel(
                    name,
                    cfg.homeserver,
                    cfg.room_id,
                    _secret(name, "token", cfg.token),
                    edit_on_update=cfg.edit_on_update,
                    timeout=cfg.timeout,
                    languages=langs,
                )
            elif isinstance(cfg, MastodonChannelConfig):
                built[name] = MastodonChannel(
                    name,
                    cfg.instance,
                    _secret(name, "token", cfg.token),
                    visibility=cfg.visibility,
                    max_characters=cfg.max_characters,
                    on_cancel=cfg.on_cancel,
                    timeout=cfg.timeout,
                    languages=langs,
                )
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return built


def _secret(channel: str, key: str, ref: object) -> str:
    from clarion.config import SecretRef

    assert isinstance(ref, SecretRef)
    try:
        return ref.resolve()
    except ValueError as exc:
        raise ConfigError([f"channels.{channel}.{key}: {exc}"]) from None
