"""The building blocks of the configuration that every connector's own `Config` uses.

A channel or source module declares its config model from these (`ChannelConfigBase`,
`SourceConfigBase`, `SecretRef`, `Duration`); `clarion.config` assembles the whole file's
model from the registry. Nothing here imports a connector, so a connector module can import it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from clarion.model import Status


class ConfigError(Exception):
    """The configuration is wrong. `problems` holds one `key: what is wrong` line each."""

    def __init__(self, problems: list[str], path: str | None = None) -> None:
        self.problems = problems
        self.path = path
        where = f" in {path}" if path else ""
        super().__init__(f"{len(problems)} problem(s){where}:\n  " + "\n  ".join(problems))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> Any:
    """Accept 90, 90.0, "90s", "5m", "1h": seconds as a float."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration (examples: 30s, 5m, 1h)")
        return float(m.group(1)) * _UNITS[m.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(StrictModel):
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


def http_url(value: str) -> str:
    """A field validator: an http(s) URL with a host, as the HTTP client reads it (an IPv4
    address in another form than four decimal numbers, `0177.0.0.1`, is refused by name)."""
    import httpx

    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    try:
        httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{value!r} is not an address that can be fetched: {exc}") from None
    return value


class SourceConfigCommon(StrictModel):
    """What every source's table has, polled or pushed."""

    kind: str  # each kind narrows it to its own Literal: the tag of the config union
    enabled: bool = True
    # Sources whose stories this one may continue (a CAP feed and its push twin): references
    # are followed only within a source and those it names here (see docs/stories.md).
    stories_with: list[str] = Field(default_factory=list)


class SourceConfigBase(SourceConfigCommon):
    """A polled source's table."""

    url: str
    interval: Duration = 120.0
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    # A message that would open a new story but is older than this is stored, never posted
    # as new (0: no limit).
    max_age: Annotated[float, BeforeValidator(parse_duration), Field(ge=0)] = 7 * 86400.0

    _check_url = field_validator("url")(http_url)


class ChannelConfigBase(StrictModel):
    kind: str  # each kind narrows it to its own Literal: the tag of the config union
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
    # Deliveries sent to this channel at once, of different stories (a story's versions always
    # go one after the other); default the platform's: 8 for webhooks, 1 elsewhere.
    max_in_flight: int | None = Field(default=None, ge=1, le=64)

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
        seconds = float(
            parse_duration(per.strip() if per.strip()[:1].isdigit() else "1" + per.strip())
        )
        return int(count), seconds

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            from clarion.render.text import check_template

            check_template(v)
        return v

    def default_daily_cap(self) -> int | None:
        """The platform's own daily cap when the config sets none (X's plans have one)."""
        return None


class Threadable(ChannelConfigBase):
    # A notice too long for one post goes out as up to this many numbered replies ("(1/3)");
    # 1 keeps one post, cut at a word with the link kept.
    thread_parts: int = Field(default=1, ge=1, le=25)
