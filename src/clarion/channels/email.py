"""E-mail, through aiosmtplib: multipart plain text and HTML.

Each message's `Message-ID` is derived from the delivery id; updates and cancellations carry
`In-Reply-To` (the previous message) and `References` (the first and the previous), so mail
clients thread them. `List-Unsubscribe` is set when configured. SMTP has no idempotency: after
a crash mid-send the dispatcher flags the delivery rather than mailing it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

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
from clarion.subscriptions.fanout import Outcome, fan_out

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
    recipients: list[str] = Field(default_factory=list)
    # Instead of fixed recipients: the people who subscribed on the public page (each gets
    # their own mail, with a one-click unsubscribe), confirmed by a link first.
    subscribers: bool = False
    part_size: int = Field(default=5000, ge=1, le=1_000_000)  # subscribers per outbox row
    # With `subscribers`: each mail's envelope sender is `sender` with `+b-` and the
    # subscriber's key added (VERP), so a bounce that comes back later names who bounced; route
    # that address's mail to `clarion subscriptions bounce` (docs/subscriptions.md).
    verp: bool = False
    unsubscribe: str | None = None  # "mailto:…" or an https URL, for List-Unsubscribe
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _someone(self) -> EmailChannelConfig:
        if bool(self.recipients) == self.subscribers:
            raise ValueError(
                "give either `recipients` (fixed addresses) or `subscribers = true` (the "
                "people who subscribe on the public page), one of the two"
            )
        return self


LIMIT = 20_000


def deliver(
    msg: EmailMessage,
    *,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    security: str,
    timeout: float,
    recipients: list[str] | None = None,
) -> None:
    """One message, in an SMTP session of its own; raises aiosmtplib's errors or OSError.
    `recipients`, when given, is the envelope's (else the headers' addresses, as parsed)."""
    asyncio.run(
        aiosmtplib.send(
            msg,
            recipients=recipients,
            hostname=host,
            port=port,
            username=username,
            password=password,
            use_tls=security == "tls",
            start_tls=security == "starttls",
            timeout=timeout,
        )
    )


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
        subscribers: bool = False,
        public_url: str | None = None,
        part_size: int = 5000,
        verp: bool = False,
    ) -> None:
        self.name = name
        # Subscriber mode: ingest fixes each story's reach among e-mail subscribers.
        self.subscription_kind = "email" if subscribers else None
        self.public_url = (public_url or "").rstrip("/")
        self.part_size = part_size
        self.verp = verp
        self._store: Any = None
        self.host, self.port = host, port
        self.sender = sender
        self.recipients = recipients
        self.username, self.password = username, password
        self.security = security
        self.unsubscribe = unsubscribe
        self.timeout = timeout
        self.languages = languages
        self.domain = sender.rpartition("@")[2] or "clarion.invalid"

    def use_store(self, store: Any) -> None:
        """The dispatcher hands over its store (subscribers live there)."""
        self._store = store

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
                **({"story": ctx.thread_id} if self.subscription_kind else {}),
            }
        )

    def build(self, out: Outgoing, sub: Any = None) -> EmailMessage:
        """The message; `sub`: one subscriber's own copy (to them alone, threaded with the
        copies of the story's earlier versions they got, with their one-click unsubscribe,
        RFC 8058)."""
        p = out.payload
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = sub.address if sub is not None else ", ".join(self.recipients)
        msg["Subject"] = str(p["subject"])
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        if sub is None:
            msg["Message-ID"] = f"<{out.id}@{self.domain}>"
        else:  # the story's version, for this subscriber (see `subscriptions.fanout`)
            story = int(out.payload.get("story") or 0)
            msg["Message-ID"] = f"<s{story}.v{out.notice.version}.{sub.id}@{self.domain}>"
        if out.previous is not None:
            earlier = [r.post_id for r in (out.root, out.previous) if r is not None]
            if sub is not None:  # subscriber mode records the story's version as the post id
                earlier = [f"<{v}.{sub.id}@{self.domain}>" for v in earlier]
            msg["In-Reply-To"] = earlier[-1]
            msg["References"] = " ".join(dict.fromkeys(earlier))
        text, page = str(p["text"]), str(p["html"])
        if sub is not None:
            link = f"{self.public_url}/subscriptions/unsubscribe/{sub.unsubscribe_key}"
            msg["List-Unsubscribe"] = f"<{link}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            text += f"\n\n-- \nStop these alerts: {link}\n"
            page += f'<hr><p><a href="{html.escape(link)}">Stop these alerts</a></p>'
        elif self.unsubscribe:
            msg["List-Unsubscribe"] = f"<{self.unsubscribe}>"
        if p.get("language"):
            msg["Content-Language"] = str(p["language"])
        msg.set_content(text)
        msg.add_alternative(f"<!doctype html><html><body>{page}</body></html>", subtype="html")
        return msg

    def _deliver(self, msg: EmailMessage) -> None:
        deliver(
            msg,
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            security=self.security,
            timeout=self.timeout,
        )

    def bounce_address(self, key: str) -> str:
        """The envelope sender of a subscriber's mail: with `verp`, `local+b-KEY@domain`
        (bounces come back naming them); else the sender."""
        local, _, domain = self.sender.rpartition("@")
        if not self.verp or len(local) + 3 + len(key) > 64:  # RFC 5321's local-part limit
            return self.sender
        return f"{local}+b-{key}@{domain}"

    def send_test(self, sub: Any, title: str, body: str, url: str | None) -> str | None:
        """One test mail to one subscriber (the desk's "test my subscription"); None when the
        server took it, else what went wrong."""
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = sub.address
        msg["Subject"] = title
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Auto-Submitted"] = "auto-generated"
        link = f"{self.public_url}/subscriptions/unsubscribe/{sub.unsubscribe_key}"
        msg["List-Unsubscribe"] = f"<{link}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(f"{body}\n\n{url or ''}\n\n-- \nStop these alerts: {link}\n")
        try:
            self._deliver(msg)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return f"SMTP {self.host}: {exc}"
        return None

    async def _send_page(self, out: Outgoing, page: list[Any]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            timeout=self.timeout,
        )
        try:
            await smtp.connect()
            if self.username:
                await smtp.login(self.username, self.password or "")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return [Outcome("failed", f"SMTP {self.host}: {exc}")] * len(page)
        try:
            for sub in page:
                try:
                    await smtp.send_message(
                        self.build(out, sub),
                        sender=self.bounce_address(sub.unsubscribe_key),
                        recipients=[sub.address],  # the stored address, never a header's parse
                    )
                    outcomes.append(Outcome("sent"))
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    outcomes.append(Outcome("refused", f"refused: {exc}"))
                except aiosmtplib.SMTPResponseException as exc:
                    state = "refused" if exc.code >= 500 else "failed"
                    outcomes.append(Outcome(state, f"SMTP {exc.code} {exc.message}"))
                except (aiosmtplib.SMTPException, OSError) as exc:
                    # The session broke mid-message: the server may have taken this one (its
                    # reply to DATA is what says so), which is not sent again; the rest wait
                    # for the retry.
                    outcomes.append(Outcome("unknown", f"SMTP {self.host}: {exc}"))
                    rest = len(page) - len(outcomes)
                    outcomes += [Outcome("failed", f"SMTP {self.host}: session broke")] * rest
                    break
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
        return outcomes

    def send(self, out: Outgoing) -> Receipt:
        if self.subscription_kind:
            return fan_out(
                self._store, out, self.name, lambda page: asyncio.run(self._send_page(out, page))
            )
        msg = self.build(out)
        try:
            self._deliver(msg)
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
        subscribers=cfg.subscribers,
        public_url=deps.public_url,
        part_size=cfg.part_size,
        verp=cfg.verp,
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
