"""E-mail, through aiosmtplib: multipart plain text and HTML.

Each message's `Message-ID` is derived from the delivery id; updates and cancellations carry
`In-Reply-To` (the previous message) and `References` (the first and the previous), so mail
clients thread them. `List-Unsubscribe` is set when configured. SMTP has no idempotency: after
a crash mid-send the dispatcher flags the delivery rather than mailing it twice.
"""

from __future__ import annotations

import asyncio
import html
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING, Literal

from pydantic import Field

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
from clarion.configtypes import ChannelConfigBase, Duration, SecretRef
from clarion.model import Notice
from clarion.render.counting import count_graphemes
from clarion.render.text import compose, headline

if TYPE_CHECKING:
    import aiosmtplib
else:
    aiosmtplib = lazy_module("aiosmtplib")


class EmailChannelConfig(ChannelConfigBase):
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


LIMIT = 20_000


class EmailChannel:
    kind = "email"
    profile = Profile(limit=LIMIT, counting="graphemes", threads=True)

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        username: str | None = None,
        password: str | None = None,
        security: str = "starttls",
        unsubscribe: str | None = None,
        timeout: float = 30.0,
        languages: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.host, self.port = host, port
        self.sender = sender
        self.recipients = recipients
        self.username, self.password = username, password
        self.security = security
        self.unsubscribe = unsubscribe
        self.timeout = timeout
        self.languages = languages
        self.domain = sender.rpartition("@")[2] or "clarion.invalid"

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
        subject_line = r.text.split("\n", 1)[0]
        paragraphs = "".join(
            f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in r.text.split("\n\n")
        )
        return Rendered.from_row(
            {
                "subject": subject_line[:200],
                "text": r.text,
                "html": paragraphs,
                "language": r.language,
                "headline": headline(notice),
                "count": r.count,
                "limit": LIMIT,
            }
        )

    def message_id(self, delivery_id: str) -> str:
        return f"<{delivery_id}@{self.domain}>"

    def build(self, out: Outgoing) -> EmailMessage:
        p = out.payload
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Subject"] = str(p["subject"])
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = self.message_id(out.id)
        if out.previous is not None:
            msg["In-Reply-To"] = out.previous.post_id
            refs = [r.post_id for r in (out.root, out.previous) if r is not None]
            msg["References"] = " ".join(dict.fromkeys(refs))
        if self.unsubscribe:
            msg["List-Unsubscribe"] = f"<{self.unsubscribe}>"
        if p.get("language"):
            msg["Content-Language"] = str(p["language"])
        msg.set_content(str(p["text"]))
        msg.add_alternative(f"<!doctype html><html><body>{p['html']}</body></html>", subtype="html")
        return msg

    def send(self, out: Outgoing) -> Receipt:
        msg = self.build(out)
        try:
            asyncio.run(
                aiosmtplib.send(
                    msg,
                    hostname=self.host,
                    port=self.port,
                    username=self.username,
                    password=self.password,
                    use_tls=self.security == "tls",
                    start_tls=self.security == "starttls",
                    timeout=self.timeout,
                )
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise ChannelError(
                ErrorKind.AUTH, f"SMTP {self.host} refused the login: {exc}"
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            kind = ErrorKind.RETRYABLE if 400 <= exc.code < 500 else ErrorKind.PERMANENT
            raise ChannelError(
                kind, f"SMTP {self.host} answered {exc.code} {exc.message}"
            ) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError) as exc:
            # No session at all: nothing can have been handed to the server.
            raise ChannelError(ErrorKind.RETRYABLE, f"SMTP {self.host}: {exc}") from None
        except (
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
            ConnectionResetError,
            BrokenPipeError,
        ) as exc:
            # The session broke or went silent, possibly after the server took the message
            # (the reply to DATA is what says so): mail cannot be deduplicated, so flag it.
            raise ChannelError(
                ErrorKind.RETRYABLE, f"SMTP {self.host}: {exc}", maybe_sent=True
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ChannelError(ErrorKind.RETRYABLE, f"SMTP {self.host}: {exc}") from None
        return Receipt(post_id=str(msg["Message-ID"]))


def _build(cfg: EmailChannelConfig, deps: Deps) -> EmailChannel:
    return EmailChannel(
        deps.name,
        host=cfg.host,
        port=cfg.port,
        sender=cfg.sender,
        recipients=cfg.recipients,
        username=cfg.username,
        password=deps.optional_secret("password", cfg.password),
        security=cfg.security,
        unsubscribe=cfg.unsubscribe,
        timeout=cfg.timeout,
        languages=deps.languages,
    )


def _offline(thread_parts: int) -> EmailChannel:
    return EmailChannel(
        "email",
        host="smtp.invalid",
        port=587,
        sender="alerts@example.org",
        recipients=["x@example.org"],
    )


CONNECTOR = ChannelConnector(
    kind="email",
    config=EmailChannelConfig,
    profile=EmailChannel.profile,
    build=_build,
    offline=_offline,
)
