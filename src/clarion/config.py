"""Typed configuration: `clarion.toml` plus `CLARION_*` environment overrides.

Everything is validated before anything runs (`load_config`, `clarion check`): unknown keys are
errors, every problem names its exact key, and secrets are references to environment variables
(or files), resolved and checked here but never printed. The pydantic models below are the single
source for validation and for the reference in docs/configuration.md.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from clarion.model import MsgType, Severity, Status

DEFAULT_CONFIG_PATH = "clarion.toml"
ENV_PREFIX = "CLARION_"


class ConfigError(Exception):
    """The configuration is wrong. `problems` holds one `key: what is wrong` line each."""

    def __init__(self, problems: list[str], path: str | None = None) -> None:
        self.problems = problems
        self.path = path
        where = f" in {path}" if path else ""
        super().__init__(f"{len(problems)} problem(s){where}:\n  " + "\n  ".join(problems))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _duration(value: Any) -> Any:
    """Accept 90, 90.0, "90s", "5m", "1h": seconds as a float."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration (examples: 30s, 5m, 1h)")
        return float(m.group(1)) * _UNITS[m.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """A secret named, not written: `{ env = "NAME" }` or `{ file = "/run/secrets/name" }`."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError('give exactly one of env = "VAR" or file = "/path"')
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def resolve(self) -> str:
        """The secret's value; raises ValueError saying what is missing (never the value)."""
        from clarion.redact import register

        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set")
        else:
            assert self.file is not None
            try:
                value = self.file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read secret file {self.file}: {exc.strerror}") from None
        register(value)  # never in a log line or a stored error from here on
        return value

    def __str__(self) -> str:
        return f"<secret from {self.describe()}>"


def _url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


class FollowLink(_Strict):
    """One of the publisher's official accounts, for the page's "where to follow us"."""

    label: str = Field(min_length=1, max_length=80)  # "Mastodon", "Bluesky", "Telegram"…
    url: str

    _check_url = field_validator("url")(_url)


class Settings(_Strict):
    """The `[clarion]` table. Each key can be overridden by `CLARION_<KEY>` in the environment."""

    database_url: str = "sqlite:///clarion.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    publisher_name: str = "Clarion"
    languages: list[str] = Field(default_factory=lambda: ["en"])
    drop_expired: bool = True
    lease_seconds: Duration = 60.0
    heartbeat_seconds: Duration = 15.0
    poll_interval_min: Duration = 15.0
    per_host_gap: Duration = 1.0
    user_agent: str = "Clarion/0.1 (+https://github.com/clarion-relay/clarion)"
    # The publisher's official accounts: listed on the page with rel="me" (which is how
    # Mastodon verifies a profile link), so readers know where the real ones are.
    follow: list[FollowLink] = Field(default_factory=list)
    # A DID served at /.well-known/atproto-did: your Bluesky handle becomes your own domain.
    atproto_did: str | None = Field(default=None, pattern=r"^did:(plc|web):[A-Za-z0-9._:%-]+$")
    # The largest request body the web server reads (a push source's own max_bytes may raise it).
    max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # A WebSub hub the feeds advertise, and that Clarion pings on every new notice.
    websub_hub: str | None = None
    # Networks that sources, webhooks, images and link cards may reach although they are not
    # public (all others private, loopback, link-local are refused): ["10.20.0.0/16"].
    allow_networks: list[str] = Field(default_factory=list)
    # Fernet keys (newest first) that encrypt credentials entered in the desk; set it to allow
    # that. `clarion secrets keygen` makes one. Also CLARION_SECRET_KEYS in the environment.
    secret_keys: SecretRef | None = None

    @field_validator("allow_networks")
    @classmethod
    def _networks_parse(cls, v: list[str]) -> list[str]:
        from clarion.net import parse_networks

        parse_networks(v)
        return v

    def networks(self) -> list[Any]:
        from clarion.net import parse_networks

        return list(parse_networks(self.allow_networks))


class _SourceBase(_Strict):
    enabled: bool = True
    url: str
    interval: Duration = 120.0
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    # Sources whose stories this one may continue (a CAP feed and its push twin): references
    # are followed only within a source and those it names here (see docs/stories.md).
    stories_with: list[str] = Field(default_factory=list)
    # A message that would open a new story but is older than this is stored, never posted
    # as new (0: no limit).
    max_age: Annotated[float, BeforeValidator(_duration), Field(ge=0)] = 7 * 86400.0

    _check_url = field_validator("url")(_url)


class CapSourceConfig(_SourceBase):
    """A CAP document URL, or an Atom/RSS index of CAP documents (NWS, Environment Canada…)."""

    kind: Literal["cap"]
    max_documents: int = Field(default=200, ge=1)
    trusted_certificates: list[Path] = Field(default_factory=list)  # PEM files
    concurrency: int = Field(default=4, ge=1, le=32)  # index documents fetched at once


class FeedSourceConfig(_SourceBase):
    """An RSS, Atom or JSON Feed (WordPress and every blog)."""

    kind: Literal["feed"]
    interval: Duration = 300.0
    initial_items: int = Field(default=1, ge=0)
    on_edit: Literal["update", "ignore"] = "update"  # an edited item: post an update, or not
    websub: bool = True  # subscribe to the hub the feed advertises (needs clarion.public_url)
    websub_lease: Duration = 7 * 86400.0
    websub_poll_interval: Duration = 3600.0  # polling while subscribed: a safety net


class NwsSourceConfig(_SourceBase):
    """api.weather.gov `/alerts/active` (GeoJSON), with the API's own filters."""

    kind: Literal["nws"]
    url: str = "https://api.weather.gov/alerts/active"
    interval: Duration = 60.0
    user_agent: str = Field(min_length=5, description="who you are and how to reach you")
    area: list[str] | None = None  # state/territory codes: ["MT", "WA"]
    zone: list[str] | None = None  # zone ids: ["MTZ014"]
    event: list[str] | None = None  # ["Flood Warning"]
    severity: list[str] | None = None
    urgency: list[str] | None = None
    certainty: list[str] | None = None
    end_after: int = Field(default=3, ge=1)


class GtfsRtSourceConfig(_SourceBase):
    """A GTFS-realtime Service Alerts feed (protobuf, or its JSON form)."""

    kind: Literal["gtfsrt"]
    interval: Duration = 60.0
    end_after: int = Field(default=3, ge=1)
    # Extra request headers; a value may be a secret reference (an API key):
    # headers = { "x-api-key" = { env = "MTA_KEY" } }
    headers: dict[str, str | SecretRef] = Field(default_factory=dict)

    def resolved_headers(self) -> dict[str, str]:
        return {k: v.resolve() if isinstance(v, SecretRef) else v for k, v in self.headers.items()}


class StatuspageSourceConfig(_SourceBase):
    """An Atlassian Statuspage: its `/api/v2/summary.json` or `/api/v2/incidents.json`."""

    kind: Literal["statuspage"]
    interval: Duration = 60.0
    end_after: int = Field(default=3, ge=1)


class PushSourceConfig(_Strict):
    """Notices pushed to Clarion: `POST /hooks/NAME`, signed per Standard Webhooks."""

    kind: Literal["push"]
    enabled: bool = True
    secret: SecretRef
    max_bytes: int = Field(default=1024 * 1024, ge=1024)
    stories_with: list[str] = Field(default_factory=list)  # as for polled sources


SourceConfig = Annotated[
    CapSourceConfig
    | FeedSourceConfig
    | NwsSourceConfig
    | GtfsRtSourceConfig
    | StatuspageSourceConfig
    | PushSourceConfig,
    Field(discriminator="kind"),
]


class _ChannelBase(_Strict):
    enabled: bool = True
    statuses: list[Status] = Field(default_factory=lambda: [Status.ACTUAL])
    languages: list[str] | None = None
    # Caps and money. When one binds, severe and extreme notices still go (they may use the
    # `budget_reserve` share kept for them); the rest wait for the next period or are skipped.
    daily_cap: int | None = Field(default=None, ge=0)
    monthly_cap: int | None = Field(default=None, ge=0)
    monthly_budget: float | None = Field(default=None, ge=0)
    budget_reserve: float = Field(default=0.2, ge=0, le=1)
    over_limit: Literal["wait", "skip"] = "wait"
    template: str | None = None  # a Jinja2 template for the post's text (see docs)
    # The write limit to keep to, shared by every worker: "300/3h", "5/2s"; default the
    # platform's documented one; "off" for none (your own server without limits).
    rate_limit: str | None = None

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(off|\d+\s*/\s*\d*\.?\d*\s*(ms|s|m|h|d)?)$", v):
            raise ValueError(f'{v!r} is not a rate limit (examples: "300/3h", "5/2s", "off")')
        return v

    def write_limit(self) -> tuple[int, float] | Literal["default"] | None:
        """(requests, per seconds), None for no limit, or "default" (the platform's own)."""
        if self.rate_limit is None:
            return "default"
        if self.rate_limit == "off":
            return None
        count, _, per = self.rate_limit.partition("/")
        seconds = float(_duration(per.strip() if per.strip()[:1].isdigit() else "1" + per.strip()))
        return int(count), seconds

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            from clarion.render.text import check_template

            check_template(v)
        return v


class _Threadable(_ChannelBase):
    # A notice too long for one post goes out as up to this many numbered replies ("(1/3)");
    # 1 keeps one post, cut at a word with the link kept.
    thread_parts: int = Field(default=1, ge=1, le=25)


class PreviewChannelConfig(_ChannelBase):
    """Dry run: records what would go out on X, Mastodon and Bluesky, with each one's count."""

    kind: Literal["preview"]


class WebhookChannelConfig(_ChannelBase):
    """A signed POST (Standard Webhooks) of each notice as JSON to a URL of yours."""

    kind: Literal["webhook"]
    url: str
    secret: SecretRef
    timeout: Duration = 10.0

    _check_url = field_validator("url")(_url)


class MastodonChannelConfig(_Threadable):
    """A Mastodon (or compatible) account, posting with an access token."""

    kind: Literal["mastodon"]
    instance: str
    token: SecretRef
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    max_characters: int | None = Field(default=None, ge=50)
    on_cancel: Literal["reply", "reply_and_edit", "reply_and_delete"] = "reply"
    edit_on_update: bool = False  # edit the post in place instead of replying
    images: bool = True  # attach the alert's images (CAP resources), their descriptions as alt text
    timeout: Duration = 20.0

    _check_url = field_validator("instance")(_url)

    @model_validator(mode="after")
    def _one_post_to_edit(self) -> MastodonChannelConfig:
        if self.edit_on_update and self.thread_parts > 1:
            raise ValueError(
                "edit_on_update edits one post in place; it cannot be combined with "
                "thread_parts > 1 (set one of them)"
            )
        return self


class TelegramChannelConfig(_ChannelBase):
    """A Telegram channel or group, through a bot (Bot API)."""

    kind: Literal["telegram"]
    token: SecretRef
    chat_id: str  # "@public_channel" or a numeric chat id
    api_base: str = "https://api.telegram.org"
    edit_on_update: bool = False
    timeout: Duration = 15.0

    _check_url = field_validator("api_base")(_url)


class DiscordChannelConfig(_ChannelBase):
    """A Discord channel, through an incoming webhook (its URL is the secret)."""

    kind: Literal["discord"]
    webhook_url: SecretRef
    edit_on_update: bool = False
    timeout: Duration = 15.0


class SlackChannelConfig(_ChannelBase):
    """A Slack channel, through an incoming webhook (its URL is the secret)."""

    kind: Literal["slack"]
    webhook_url: SecretRef
    timeout: Duration = 15.0


class BlueskyChannelConfig(_Threadable):
    """A Bluesky account (any AT Protocol PDS), with an app password."""

    kind: Literal["bluesky"]
    handle: str
    app_password: SecretRef
    service: str = "https://bsky.social"
    images: bool = True  # attach the alert's images (CAP resources), with alt text
    card_thumbnail: bool = True  # the link card's image: the linked page's og:image
    timeout: Duration = 20.0

    _check_url = field_validator("service")(_url)


class XChannelConfig(_Threadable):
    """An X account (API v2, OAuth 1.0a user context), with X's per-post prices."""

    kind: Literal["x"]
    consumer_key: SecretRef
    consumer_secret: SecretRef
    access_token: SecretRef
    access_token_secret: SecretRef
    plan: Literal["pay_per_use", "public_utility", "legacy_free"] = "pay_per_use"
    cost_per_post: float | None = Field(default=None, ge=0)
    cost_per_post_with_url: float | None = Field(default=None, ge=0)
    link_policy: Literal["keep", "drop_when_costly"] = "keep"
    images: bool = True  # attach the alert's images (CAP resources), with alt text
    timeout: Duration = 20.0


class ThreadsChannelConfig(_Threadable):
    """A Threads profile, through the Threads Graph API (a long-lived Meta token)."""

    kind: Literal["threads"]
    user_id: str
    token: SecretRef
    api_base: str = "https://graph.threads.net/v1.0"
    # How often to refresh the 60-day token (0 never); saved back when the token is a file.
    token_refresh: Annotated[float, BeforeValidator(_duration), Field(ge=0)] = 7 * 86400.0
    timeout: Duration = 20.0

    _check_url = field_validator("api_base")(_url)


class AppriseChannelConfig(_ChannelBase):
    """Any Apprise URL (ntfy, Pushover, Gotify, Teams…): https://github.com/caronc/apprise/wiki"""

    kind: Literal["apprise"]
    urls: SecretRef  # one or more Apprise URLs, separated by whitespace or commas


class EmailChannelConfig(_ChannelBase):
    """E-mail through an SMTP server."""

    kind: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretRef | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: list[str] = Field(min_length=1)
    unsubscribe: str | None = None  # "mailto:…" or an https URL, for List-Unsubscribe
    timeout: Duration = 30.0


class MatrixChannelConfig(_ChannelBase):
    """A Matrix room, through a bot account's access token."""

    kind: Literal["matrix"]
    homeserver: str
    room_id: str
    token: SecretRef
    edit_on_update: bool = False
    images: bool = True  # the alert's images as m.image events, descriptions as their body
    timeout: Duration = 15.0

    _check_url = field_validator("homeserver")(_url)


class ActivityPubChannelConfig(_ChannelBase):
    """A fediverse account that Clarion itself is: @USERNAME@your-host, followed directly from
    Mastodon, Misskey, Pixelfed… (needs `clarion.public_url`, reachable from the internet)."""

    kind: Literal["activitypub"]
    username: str = Field(pattern=r"^[a-z0-9_]{1,30}$")
    display_name: str | None = None  # default: the publisher's name
    summary: str = Field(default="", max_length=2000)
    icon: str | None = None  # the avatar: an image URL
    manually_approves_followers: bool = False  # hold follow requests for an operator
    on_cancel: Literal["edit", "delete"] = "edit"  # edit the post to say CANCELLED, or delete it
    hashtags: list[str] = Field(default_factory=list)
    drop_inbox_after: Duration = 7 * 86400.0  # an inbox failing this long is dropped, reported
    timeout: Duration = 15.0

    _check_icon = field_validator("icon")(lambda v: _url(v) if v is not None else v)


ChannelConfig = Annotated[
    ActivityPubChannelConfig
    | PreviewChannelConfig
    | WebhookChannelConfig
    | MastodonChannelConfig
    | TelegramChannelConfig
    | DiscordChannelConfig
    | SlackChannelConfig
    | MatrixChannelConfig
    | BlueskyChannelConfig
    | EmailChannelConfig
    | XChannelConfig
    | AppriseChannelConfig
    | ThreadsChannelConfig,
    Field(discriminator="kind"),
]


class RouteRule(_Strict):
    """Send notices that match every condition given here to `channels`."""

    name: str | None = None
    channels: list[str] = Field(min_length=1)
    sources: list[str] | None = None
    statuses: list[Status] | None = None
    msg_types: list[MsgType] | None = None
    min_severity: Severity | None = None
    categories: list[str] | None = None
    geocodes: list[str] | None = None  # "UGC:MTZ009", "SAME:030013", or a bare value
    entities: list[str] | None = None  # "route:A", "component:Packages", or a bare id
    signature: Literal["valid"] | None = None  # only notices whose signature verified

    @field_validator("min_severity", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


# Notices that come from no configured source: the REST API's write endpoints and the desk.
BUILTIN_SOURCES = ("api", "desk")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ApiSettings(_Strict):
    """The `[api]` table: the public REST API's access tiers (requests per hour)."""

    anonymous_per_hour: int = Field(default=60, ge=0)  # per client IP address
    key_per_hour: int = Field(default=5000, ge=0)  # per API key; "public service" keys: no limit
    # Behind a reverse proxy, the client is the address the proxy appended to X-Forwarded-For.
    trust_proxy: bool = False
    stream_poll: Duration = 1.0  # how often /api/v1/stream looks for new notices


class DeskSettings(_Strict):
    """The `[desk]` table: the operator's desk at /desk (accounts: `clarion users`)."""

    enabled: bool = True
    # Actual notices at or above this severity need a second person (role approver) to approve
    # them before they go out; "off" lets editors send alone. The author never approves.
    approval_min_severity: Severity | Literal["off"] = Severity.UNKNOWN
    timezone: str = "UTC"  # the desk's clock: scheduled sending and every time it shows
    session_lifetime: Duration = 12 * 3600.0
    login_max_failures: int = Field(default=5, ge=1)  # per user name and per address…
    login_window: Duration = 15 * 60.0  # …within this window; then logins wait
    schedule_check: Duration = 5.0  # how often workers look for scheduled notices now due

    @field_validator("approval_min_severity", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone (examples: UTC, America/Denver)") from None
        return v

    def needs_approval(self, status: Status, severity: Severity) -> bool:
        if status is not Status.ACTUAL or self.approval_min_severity == "off":
            return False
        assert isinstance(self.approval_min_severity, Severity)
        return severity.rank >= self.approval_min_severity.rank


class Config(_Strict):
    clarion: Settings = Field(default_factory=lambda: Settings())
    api: ApiSettings = Field(default_factory=lambda: ApiSettings())
    desk: DeskSettings = Field(default_factory=lambda: DeskSettings())
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    routes: list[RouteRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_check(self) -> Config:
        problems = []
        for table in ("sources", "channels"):
            for name in getattr(self, table):
                if not _NAME.match(name):
                    problems.append(
                        f"{table}.{name}: names are lower-case letters, digits, '-' and '_'"
                    )
        for name in self.sources:
            if name in BUILTIN_SOURCES:
                problems.append(
                    f"sources.{name}: the name is reserved for notices written in Clarion "
                    f"({' and '.join(BUILTIN_SOURCES)}); choose another"
                )
        fedi = [n for n, c in self.channels.items() if c.kind == "activitypub"]
        if fedi and not self.clarion.public_url:
            problems.append(
                f"channels.{fedi[0]}: an ActivityPub account needs clarion.public_url (the "
                "address other servers reach it at)"
            )
        names = [getattr(self.channels[n], "username", "") for n in fedi]
        if len(set(names)) != len(names):
            problems.append("channels: two ActivityPub channels have the same username")
        for name, src_cfg in self.sources.items():
            for other in src_cfg.stories_with:
                if other not in self.sources:
                    problems.append(
                        f"sources.{name}.stories_with: no source named {other!r} (stories are "
                        "shared only between configured sources)"
                    )
        for i, rule in enumerate(self.routes):
            for ch in rule.channels:
                if ch not in self.channels:
                    problems.append(f"routes[{i}].channels: no channel named {ch!r}")
            for src in rule.sources or []:
                if src not in self.sources and src not in BUILTIN_SOURCES:
                    problems.append(f"routes[{i}].sources: no source named {src!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def default_config() -> Config:
    """What Clarion runs with when there is no clarion.toml: a preview channel for everything."""
    return Config(
        channels={"preview": PreviewChannelConfig(kind="preview")},
        routes=[RouteRule(name="everything", channels=["preview"])],
    )


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
            continue
        # Discriminated unions put the tag ("cap", "mastodon"…) in the location; drop it.
        if i == 2 and loc[0] in ("sources", "channels"):
            continue
        parts.append(str(item))
    return ".".join(parts) or "(top level)"


def _format_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = _format_loc(tuple(err["loc"]))
        kind = err["type"]
        if kind == "extra_forbidden":
            out.append(f"{loc}: unknown key")
        elif kind == "union_tag_invalid":
            out.append(
                f"{loc}.kind: {err['ctx'].get('tag')!r} is not a known kind "
                f"(expected one of {err['ctx'].get('expected_tags')})"
            )
        elif kind == "union_tag_not_found":
            out.append(f"{loc}.kind: missing; say which kind this is")
        elif kind == "missing":
            out.append(f"{loc}: required, but missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            out.append(f"{loc}: {msg}")
    return out


def _env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    settings = dict(data.get("clarion", {}))
    for key in Settings.model_fields:
        env_key = ENV_PREFIX + key.upper()
        if env_key in environ and key == "secret_keys":
            settings[key] = {"env": env_key}  # the keys themselves stay in the environment
        elif env_key in environ:
            raw = environ[env_key]
            settings[key] = (
                [s.strip() for s in raw.split(",") if s.strip()]
                if key in ("languages", "allow_networks")
                else raw
            )
    if settings:
        data = {**data, "clarion": settings}
    return data


def parse_config(
    text: str, *, path: str | None = None, environ: dict[str, str] | None = None
) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path) from None
    data = _env_overrides(data, dict(os.environ if environ is None else environ))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), path) from None


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(explicit: str | None = None, *, environ: dict[str, str] | None = None) -> Config:
    """Read the config file (or the embedded default when there is none) and validate it."""
    path = config_path(explicit)
    if not path.exists():
        if explicit:
            raise ConfigError([f"config file {path} does not exist"], str(path))
        env = dict(os.environ if environ is None else environ)
        base = default_config().model_dump(mode="json", exclude_none=True)
        data = _env_overrides(base, env)
        return Config.model_validate(data)
    return parse_config(path.read_text(), path=str(path), environ=environ)


def check_secrets(config: Config, stored: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Every secret that cannot be resolved, as `key: problem` lines (a credential stored from
    the desk, in `stored`, stands in for its field)."""
    problems = []
    tables: list[tuple[str, dict[str, Any]]] = [
        ("sources", dict(config.sources)),
        ("channels", dict(config.channels)),
    ]
    for table, items in tables:
        for name, item in items.items():
            if not item.enabled:
                continue
            for field_name in type(item).model_fields:
                value = getattr(item, field_name)
                if table == "channels" and field_name in (stored or {}).get(name, {}):
                    continue
                refs = [(field_name, value)] if isinstance(value, SecretRef) else []
                if isinstance(value, dict):  # a table of values, some of them secret
                    refs = [
                        (f"{field_name}.{k}", v)
                        for k, v in value.items()
                        if isinstance(v, SecretRef)
                    ]
                for key, ref in refs:
                    try:
                        ref.resolve()
                    except ValueError as exc:
                        problems.append(f"{table}.{name}.{key}: {exc}")
    return problems


def validate_all(config: Config, stored: dict[str, dict[str, str]] | None = None) -> None:
    problems = check_secrets(config, stored)
    if problems:
        raise ConfigError(problems)


EXAMPLE_CONFIG = """\
# clarion.toml — what Clarion reads, where it posts, and which notices go where.
# Check it with `clarion check`. Every key is documented in docs/configuration.md.
# Any key of [clarion] can be overridden from the environment as CLARION_<KEY>,
# e.g. CLARION_DATABASE_URL=postgresql+psycopg://clarion@db/clarion

[clarion]
database_url = "sqlite:///clarion.db"   # PostgreSQL: "postgresql+psycopg://user@host/db"
host = "127.0.0.1"                       # where the public page, feeds and API listen
port = 8080
publisher_name = "Example Emergency Management"
languages = ["en"]                       # preferred languages when a notice has several
drop_expired = true                      # never post an alert that has already expired
user_agent = "Clarion/0.1 (ops@example.org)"  # some sources (api.weather.gov) require contact info

# --- Sources: where notices come from --------------------------------------------------

[sources.nws_mt]
kind = "cap"                             # a CAP document, or an Atom/RSS index of CAP documents
url = "https://alerts.example.gov/cap/mt.atom"
interval = "2m"

[sources.blog]
kind = "feed"                            # RSS, Atom or JSON Feed
url = "https://www.example.org/feed/"
interval = "5m"
initial_items = 1                        # on first poll, publish only the newest item

# --- Channels: where notices go ---------------------------------------------------------

[channels.preview]
kind = "preview"                         # dry run: shows what would be posted, posts nothing

[channels.mastodon_main]
kind = "mastodon"
instance = "https://mastodon.example"
token = { env = "MASTODON_TOKEN" }       # secrets are references, never written here
visibility = "public"
on_cancel = "reply"                      # or "reply_and_edit", "reply_and_delete"

[channels.partners]
kind = "webhook"                         # Standard Webhooks signed POST
url = "https://partner.example/hooks/clarion"
secret = { env = "PARTNER_WEBHOOK_SECRET" }   # whsec_… base64, at least 24 bytes

# Channels take Actual notices only; add "test" or "exercise" to statuses to opt in:
# statuses = ["actual", "test"]

# --- Routes: which notices go to which channels -----------------------------------------

[[routes]]
name = "everything to preview"
channels = ["preview"]

[[routes]]
name = "severe weather"
sources = ["nws_mt"]
min_severity = "severe"                  # extreme > severe > moderate > minor > unknown
channels = ["mastodon_main", "partners"]

[[routes]]
name = "blog posts"
sources = ["blog"]
channels = ["mastodon_main"]
"""
