"""The one mail Clarion sends to an address that has not confirmed anything: the confirmation
link. It carries no text from the request (a stranger's address typed in the form must not
become a way to mail them words of someone else's choosing), and at most one goes to an
address a day (`registry.CONFIRMATION_EVERY`)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any


def canonical_email(address: str) -> str:
    """`address` as one mailbox is written (email-validator: the domain lower-cased, in its
    ASCII form, the local part NFC), or ValueError saying why it is not one address. Refused too:
    comments, quoting, IP literals (by email-validator) and a local part holding an RFC 2047
    encoded word (`=?utf-8?q?victim?=@…`), which a header parser decodes into another
    address. Each spelling of one mailbox gives the same string, so a rule per mailbox holds."""
    from email_validator import EmailNotValidError, validate_email

    if len(address) > 320:
        raise ValueError("That is not an e-mail address.")
    try:
        valid = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"That is not an e-mail address: {exc}") from None
    if "=?" in valid.local_part or "?=" in valid.local_part:
        raise ValueError("That is not an e-mail address: an encoded word is not a mailbox.")
    # A domain in its ASCII (IDNA) form, so that every SMTP server takes it; a local part
    # beyond ASCII needs SMTPUTF8 whatever is done, and is kept as written (NFC).
    return str(valid.ascii_email or valid.normalized)


def confirmation(
    sender: str, to: str, publisher: str, confirm_url: str, manage_url: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"Confirm: alerts from {publisher}"[:200]
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"Someone, probably you, asked for alerts from {publisher} to be sent to this address.\n\n"
        f"To start them, open this link and press Confirm:\n{confirm_url}\n\n"
        "If it was not you, do nothing: without the confirmation nothing is sent, and this "
        "address is forgotten within a day.\n\n"
        f"Once confirmed, this link changes or stops them at any time:\n{manage_url}\n"
    )
    return msg


def send(cfg: Any, password: str | None, msg: EmailMessage) -> None:
    """Through the SMTP server of the e-mail channel that has `subscribers = true`; raises
    aiosmtplib's errors or OSError."""
    from clarion.channels.email import deliver

    deliver(
        msg,
        recipients=[str(msg["To"])],
        host=cfg.host,
        port=cfg.port,
        username=cfg.username,
        password=password,
        security=cfg.security,
        timeout=cfg.timeout,
    )
