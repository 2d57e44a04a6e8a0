"""Apprise: any Apprise URL, for the long tail (ntfy, Pushover, Gotify, Teams, SMS gateways…).

Apprise reports success or failure, not why; the failure's log lines (captured, never printed
with the URL, which may hold a secret) become the error. Its HTTP services log the status as
`error=NNN`, which classifies it: 401/403 (and 404, an endpoint that is gone) hold the channel
for re-authorisation, 429 is a rate limit, another 4xx is permanent; anything else (5xx, a
timeout, a refused connection) is retried. Apprise services neither thread, nor edit, nor
deduplicate.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from clarion.channels.base import (
    ChannelConnector,
    ChannelError,
    Deps,
    ErrorKind,
    Outgoing,
    Profile,
    Receipt,
    RenderContext,
    Rendered,
    lazy_module,
)
from clarion.configtypes import ChannelConfigBase, ConfigError, SecretRef
from clarion.model import Notice, Severity
from clarion.render.counting import count_graphemes
from clarion.render.text import compose

if TYPE_CHECKING:
    import apprise
else:
    apprise = lazy_module("apprise")


class AppriseChannelConfig(ChannelConfigBase):
    """Any Apprise URL (ntfy, Pushover, Gotify, Teams…): https://github.com/caronc/apprise/wiki"""

    kind: Literal["apprise"]
    urls: SecretRef  # one or more Apprise URLs, separated by whitespace or commas


LIMIT = 4000
STATUS_RE = re.compile(r"\berror=(\d{3})\b")
NOTIFY_TYPE = {
    Severity.EXTREME: "failure",
    Severity.SEVERE: "failure",
    Severity.MODERATE: "warning",
}


class AppriseChannel:
    kind = "apprise"
    profile = Profile(limit=LIMIT, counting="graphemes")

    def __init__(self, name: str, urls: list[str], *, languages: tuple[str, ...] = ()) -> None:
        self.name = name
        self.languages = languages
        self.apprise = apprise.Apprise()
        for i, url in enumerate(urls):
            if not self.apprise.add(url):
                raise ValueError(f"URL {i + 1} is not an Apprise URL it knows")

    def close(self) -> None:
        pass

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        r = compose(
            notice,
            limit=LIMIT,
            count=count_graphemes,
            languages=self.languages or ctx.languages,
            permalink=ctx.permalink,
            template=ctx.template,
        )
        title, _, body = r.text.partition("\n")
        return Rendered.from_row(
            {
                "title": title,
                "body": body.strip() or title,
                "text": r.text,
                "type": NOTIFY_TYPE.get(notice.severity, "info"),
                "count": r.count,
                "limit": LIMIT,
            }
        )

    def send(self, out: Outgoing) -> Receipt:
        logs: list[str] = []

        def keep(entry: Any, plugin: Any = None) -> None:
            if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL"):
                logs.append(str(getattr(entry, "message", entry)))

        p = out.payload
        ok = self.apprise.notify(
            body=str(p["body"]),
            title=str(p["title"]),
            notify_type=apprise.NotifyType(p["type"]),
            log_callback=keep,
        )
        if not ok:
            detail = "; ".join(logs[-2:]) or "a service refused the notification"
            raise ChannelError(_kind(logs), f"Apprise: {detail}")
        return Receipt(post_id=f"apprise:{out.id}")


def _kind(logs: list[str]) -> ErrorKind:
    statuses = [int(m.group(1)) for line in logs for m in STATUS_RE.finditer(line)]
    if not statuses:
        return ErrorKind.RETRYABLE  # a timeout, a refused connection, a plugin's own failure
    status = statuses[-1]
    if status in (401, 403, 404):
        return ErrorKind.AUTH
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if 400 <= status < 500 and status not in (408, 409, 425):
        return ErrorKind.PERMANENT
    return ErrorKind.RETRYABLE


def _build(cfg: AppriseChannelConfig, deps: Deps) -> AppriseChannel:
    urls = deps.secret("urls", cfg.urls).replace(",", " ").split()
    try:
        return AppriseChannel(deps.name, urls, languages=deps.languages)
    except ValueError as exc:
        raise ConfigError([f"channels.{deps.name}.urls: {exc}"]) from None


CONNECTOR = ChannelConnector(
    kind="apprise",
    config=AppriseChannelConfig,
    profile=AppriseChannel.profile,
    build=_build,
    offline=lambda parts: AppriseChannel("apprise", ["json://localhost/"]),
)
