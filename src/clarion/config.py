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
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# Re-exported: what the rest of Clarion (and connector authors) import from here.
from clarion.configtypes import ChannelConfigBase as ChannelConfigBase
from clarion.configtypes import ConfigError as ConfigError
from clarion.configtypes import Duration as Duration
from clarion.configtypes import SecretRef as SecretRef
from clarion.configtypes import SourceConfigBase as SourceConfigBase
from clarion.configtypes import SourceConfigCommon as SourceConfigCommon
from clarion.configtypes import (
    StrictModel,
    http_url,
)
from clarion.configtypes import Threadable as Threadable
from clarion.model import MsgType, Severity, Status

DEFAULT_CONFIG_PATH = "clarion.toml"
ENV_PREFIX = "CLARION_"


def _time_zone(v: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{v!r} is not a time zone (examples: UTC, America/Denver)") from None
    return v


class FollowLink(StrictModel):
    """One of the publisher's official accounts, for the page's "where to follow us"."""

    label: str = Field(min_length=1, max_length=80)  # "Mastodon", "Bluesky", "Telegram"…
    url: str

    _check_url = field_validator("url")(http_url)


class Settings(StrictModel):
    """The `[clarion]` table. Each key can be overridden by `CLARION_<KEY>` in the environment."""

    database_url: str = "sqlite:///clarion.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    publisher_name: str = "Clarion"
    # The publisher's time zone: the times the public page shows ("in effect until 6:00 PM
    # MDT"); feeds and the API stay in UTC.
    timezone: str = "UTC"
    # The public page's language: "en", or a language Clarion has a catalogue for ("fr").
    page_language: str = "en"
    languages: list[str] = Field(default_factory=lambda: ["en"])
    drop_expired: bool = True
    lease_seconds: Duration = 60.0
    # Deliveries one worker sends at once, over all its channels (each channel also has its own
    # `max_in_flight`).
    max_in_flight: int = Field(default=32, ge=1, le=256)
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

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _time_zone(v)

    @field_validator("page_language")
    @classmethod
    def _page_language(cls, v: str) -> str:
        from clarion.web.i18n import LANGUAGES

        if v not in LANGUAGES:
            raise ValueError(f"{v!r}: the page speaks {', '.join(LANGUAGES)}")
        return v

    @field_validator("allow_networks")
    @classmethod
    def _networks_parse(cls, v: list[str]) -> list[str]:
        from clarion.net import parse_networks

        parse_networks(v)
        return v

    def networks(self) -> list[Any]:
        from clarion.net import parse_networks

        return list(parse_networks(self.allow_networks))


def _union(connectors: list[Any]) -> Any:
    models = tuple(c.config for c in connectors)
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007


def _channel_union() -> Any:
    from clarion import registry

    return _union(list(registry.channels().values()))


def _source_union() -> Any:
    from clarion import registry

    return _union(list(registry.sources().values()))


# The config file's `[sources.*]` and `[channels.*]` tables: one model per kind, assembled from
# the registry (each connector module declares its own model).
if TYPE_CHECKING:  # what every kind has; isinstance narrows to one kind's model
    SourceConfig = SourceConfigCommon
    ChannelConfig = ChannelConfigBase
else:
    SourceConfig = _source_union()
    ChannelConfig = _channel_union()


class RouteRule(StrictModel):
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


class ApiSettings(StrictModel):
    """The `[api]` table: the public REST API's access tiers (requests per hour)."""

    anonymous_per_hour: int = Field(default=60, ge=0)  # per client IP address
    key_per_hour: int = Field(default=5000, ge=0)  # per API key; "public service" keys: no limit
    # Behind a reverse proxy, the client is the address the proxy appended to X-Forwarded-For.
    trust_proxy: bool = False
    stream_poll: Duration = 1.0  # how often /api/v1/stream looks for new notices


class ExportSettings(StrictModel):
    """The `[export]` table: keep a static copy of the public surface (`clarion export`)."""

    # A directory, or s3://bucket/prefix on any S3-compatible store; unset: no export.
    target: str | None = None
    interval: Duration = 30.0  # how often workers look for changes to export
    endpoint_url: str | None = None  # an S3-compatible store's address (else AWS's)

    @field_validator("target")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("s3://") and not v.removeprefix("s3://").strip("/"):
            raise ValueError("s3://… needs a bucket: s3://bucket or s3://bucket/prefix")
        return v


class SubscriptionSettings(StrictModel):
    """The `[subscriptions]` table: what people who subscribe on the public page can follow
    beyond the alerts' own shapes (docs/subscriptions.md)."""

    # A GeoJSON FeatureCollection of the areas your alerts name by code (NWS zones, counties,
    # transit districts…): a subscriber's point then also follows the codes of the areas it
    # lies in, so alerts that name areas without drawing a polygon reach them.
    areas: Path | None = None
    area_code_property: str = "code"  # the feature property that holds the area's code
    area_name_property: str = "name"  # …and its name, shown to the subscriber


class DeskSettings(StrictModel):
    """The `[desk]` table: the operator's desk at /desk (accounts: `clarion users`)."""

    enabled: bool = True
    # Actual notices at or above this severity need a second person (role approver) to approve
    # them before they go out; "off" lets editors send alone. The author never approves.
    approval_min_severity: Severity | Literal["off"] = Severity.UNKNOWN
    timezone: str = "UTC"
    # The public page's language: "en", or a language Clarion has a catalogue for ("fr").
    page_language: str = "en"  # the desk's clock: scheduled sending and every time it shows
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
        return _time_zone(v)

    def needs_approval(self, status: Status, severity: Severity) -> bool:
        if status is not Status.ACTUAL or self.approval_min_severity == "off":
            return False
        assert isinstance(self.approval_min_severity, Severity)
        return severity.rank >= self.approval_min_severity.rank


class Config(StrictModel):
    clarion: Settings = Field(default_factory=lambda: Settings())
    api: ApiSettings = Field(default_factory=lambda: ApiSettings())
    desk: DeskSettings = Field(default_factory=lambda: DeskSettings())
    export: ExportSettings = Field(default_factory=lambda: ExportSettings())
    subscriptions: SubscriptionSettings = Field(default_factory=lambda: SubscriptionSettings())
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
        for n, c in self.channels.items():
            if (c.kind == "webpush" or getattr(c, "subscribers", False)) and not (
                self.clarion.public_url
            ):
                problems.append(
                    f"channels.{n}: subscriptions need clarion.public_url (people subscribe on "
                    "the public page, and every message links back to it)"
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


_models: dict[int, type[Config]] = {}


def config_model() -> type[Config]:
    """The model of the whole file for the connectors registered now: `Config` itself, or,
    once a connector was added at run time (a plugin, a test's toy platform), a subclass whose
    tables take its kind too."""
    from pydantic import create_model

    from clarion import registry

    if registry.generation == 0:
        return Config
    if registry.generation not in _models:
        _models.clear()
        _models[registry.generation] = create_model(
            "Config",
            __base__=Config,
            sources=(dict[str, _source_union()], Field(default_factory=dict)),  # type: ignore[misc,arg-type]
            channels=(dict[str, _channel_union()], Field(default_factory=dict)),  # type: ignore[misc,arg-type]
        )
    return _models[registry.generation]


def __getattr__(name: str) -> Any:
    """`clarion.config.XChannelConfig` and the like: each kind's model, which its connector
    module declares (kept so that older imports keep working)."""
    from clarion import registry

    models = [c.config for c in registry.channels().values()]
    models += [c.config for c in registry.sources().values()]
    for model in models:
        if model.__name__ == name:
            return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_config() -> Config:
    """What Clarion runs with when there is no clarion.toml: a preview channel for everything."""
    from clarion.channels.preview import PreviewChannelConfig

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
        return config_model().model_validate(data)
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
        return config_model().model_validate(data)
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
