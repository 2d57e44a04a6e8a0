"""A real SMTP server on loopback (aiosmtpd) that keeps what it is given, and can refuse
recipients, for the subscription tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelope_senders: list[str] = []
        self.envelope_recipients: list[str] = []
        self.refuse: set[str] = set()
        self.port = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.envelope_senders.append(envelope.mail_from)
        self.envelope_recipients += envelope.rcpt_tos
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """A Mailbox served on a free loopback port (`box.port`), stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox()
    box.port = port
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
