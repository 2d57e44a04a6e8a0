"""Channels: one module per output, all behind the contract in `base`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clarion.channels.base import (
    Channel,
    ChannelError,
    ChannelLimits,
    ErrorKind,
    Outgoing,
    Profile,
    Receipt,
)
from clarion.config import (
    ActivityPubChannelConfig,
    AppriseChannelConfig,
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
    ThreadsChannelConfig,
    WebhookChannelConfig,
    XChannelConfig,
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


def build_channels(
    config: Config,
    stored: Mapping[str, Mapping[str, str]] | None = None,
    only: str | None = None,
) -> dict[str, Channel]:
    """Instantiate every enabled channel (or `only` that one); secrets are resolved here, a
    credential stored from the desk (`stored`, decrypted) winning over the config's reference.
    No network I/O."""
    from clarion.channels.apprise import AppriseChannel
    from clarion.channels.bluesky import BlueskyChannel
    from clarion.channels.discord import DiscordChannel
    from clarion.channels.email import EmailChannel
    from clarion.channels.mastodon import MastodonChannel
    from clarion.channels.matrix import MatrixChannel
    from clarion.channels.preview import PreviewChannel
    from clarion.channels.slack import SlackChannel
    from clarion.channels.telegram import TelegramChannel
    from clarion.channels.threads import ThreadsChannel
    from clarion.channels.webhook import WebhookChannel
    from clarion.channels.x import XChannel
    from clarion.net import guarded_client

    allow = config.clarion.networks()

    def fetcher(timeout: float, images: bool = True) -> Any:
        """A guarded client for the addresses an alert names (its images, its link's page)."""
        if not images:
            return None
        return guarded_client(allow, timeout=timeout, follow_redirects=True, max_redirects=5)

    def _secret(channel: str, key: str, ref: object) -> str:
        value = (stored or {}).get(channel, {}).get(key)
        return value if value is not None else _resolve(channel, key, ref)

    built: dict[str, Channel] = {}
    problems = []
    for name, cfg in config.channels.items():
        if not cfg.enabled or (only is not None and name != only):
            continue
        langs = tuple(cfg.languages or config.clarion.languages)
        try:
            if isinstance(cfg, PreviewChannelConfig):
                built[name] = PreviewChannel(name, langs)
            elif isinstance(cfg, ActivityPubChannelConfig):
                from clarion.channels.activitypub import ActivityPubChannel

                assert config.clarion.public_url  # the config check requires it
                built[name] = ActivityPubChannel(
                    name,
                    username=cfg.username,
                    base=config.clarion.public_url,
                    # Followers' servers are addresses strangers choose: guarded like webhooks.
                    http=guarded_client(allow, timeout=cfg.timeout, follow_redirects=False),
                    hashtags=cfg.hashtags,
                    on_cancel=cfg.on_cancel,
                    drop_after=cfg.drop_inbox_after,
                    languages=langs,
                )
            elif isinstance(cfg, WebhookChannelConfig):
                secret = _secret(name, "secret", cfg.secret)
                try:
                    built[name] = WebhookChannel(
                        name,
                        cfg.url,
                        secret,
                        cfg.timeout,
                        http=guarded_client(allow, timeout=cfg.timeout, follow_redirects=False),
                    )
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
                    images=cfg.images,
                    thread_parts=cfg.thread_parts,
                    card_thumbnail=cfg.card_thumbnail,
                    fetch=fetcher(cfg.timeout, cfg.images or cfg.card_thumbnail),
                )
            elif isinstance(cfg, ThreadsChannelConfig):
                built[name] = ThreadsChannel(
                    name,
                    cfg.user_id,
                    _secret(name, "token", cfg.token),
                    api_base=cfg.api_base,
                    timeout=cfg.timeout,
                    languages=langs,
                    thread_parts=cfg.thread_parts,
                    token_file=cfg.token.file,
                    token_refresh=cfg.token_refresh,
                )
            elif isinstance(cfg, AppriseChannelConfig):
                urls = _secret(name, "urls", cfg.urls).replace(",", " ").split()
                try:
                    built[name] = AppriseChannel(name, urls, languages=langs)
                except ValueError as exc:
                    raise ConfigError([f"channels.{name}.urls: {exc}"]) from None
            elif isinstance(cfg, XChannelConfig):
                built[name] = XChannel(
                    name,
                    consumer_key=_secret(name, "consumer_key", cfg.consumer_key),
                    consumer_secret=_secret(name, "consumer_secret", cfg.consumer_secret),
                    access_token=_secret(name, "access_token", cfg.access_token),
                    access_token_secret=_secret(
                        name, "access_token_secret", cfg.access_token_secret
                    ),
                    plan=cfg.plan,
                    cost_per_post=cfg.cost_per_post,
                    cost_per_post_with_url=cfg.cost_per_post_with_url,
                    link_policy=cfg.link_policy,
                    timeout=cfg.timeout,
                    languages=langs,
                    thread_parts=cfg.thread_parts,
                    images=cfg.images,
                    fetch=fetcher(cfg.timeout, cfg.images),
                )
            elif isinstance(cfg, EmailChannelConfig):
                built[name] = EmailChannel(
                    name,
                    host=cfg.host,
                    port=cfg.port,
                    sender=cfg.sender,
                    recipients=cfg.recipients,
                    username=cfg.username,
                    password=(
                        _secret(name, "password", cfg.password)
                        if cfg.password or (stored or {}).get(name, {}).get("password")
                        else None
                    ),
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
                    images=cfg.images,
                    fetch=fetcher(cfg.timeout, cfg.images),
                )
            elif isinstance(cfg, MastodonChannelConfig):
                built[name] = MastodonChannel(
                    name,
                    cfg.instance,
                    _secret(name, "token", cfg.token),
                    visibility=cfg.visibility,
                    max_characters=cfg.max_characters,
                    on_cancel=cfg.on_cancel,
                    edit_on_update=cfg.edit_on_update,
                    timeout=cfg.timeout,
                    languages=langs,
                    images=cfg.images,
                    thread_parts=cfg.thread_parts,
                    template=cfg.template,
                    fetch=fetcher(cfg.timeout, cfg.images),
                )
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


def _resolve(channel: str, key: str, ref: object) -> str:
    from clarion.config import SecretRef

    assert isinstance(ref, SecretRef)
    try:
        return ref.resolve()
    except ValueError as exc:
        raise ConfigError([f"channels.{channel}.{key}: {exc}"]) from None


def channel_limits(config: Config) -> dict[str, ChannelLimits]:
    """Each channel's caps and budget, from its config (and, for X, its plan's daily cap)."""
    from clarion.channels.x import PLANS

    out: dict[str, ChannelLimits] = {}
    for name, cfg in config.channels.items():
        daily = cfg.daily_cap
        if isinstance(cfg, XChannelConfig) and daily is None and PLANS[cfg.plan]["daily_cap"]:
            daily = int(PLANS[cfg.plan]["daily_cap"])
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
