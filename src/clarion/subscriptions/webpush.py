"""Web Push, the protocol side: one message encrypted for one browser (RFC 8291, `aes128gcm`,
by `http_ece`), the push service told who sends it (VAPID, RFC 8292, by `py_vapid`), and the
checks a subscription from a stranger's browser must pass before it is stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

MAX_ENDPOINT = 2048
MAX_PAYLOAD = 3000  # bytes before encryption; push services take 4,096 after it
VAPID_LIFETIME = 12 * 3600  # a signed token is reused for this long per push service


def b64url_decode(value: str) -> bytes:
    value = value.strip()
    if not value or len(value) > 200:
        raise ValueError("is empty or too long")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("is not base64url") from None


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def check_subscription(endpoint: str, p256dh: str, auth: str, allow: Sequence[Any] = ()) -> None:
    """Raise ValueError (saying which part) unless this is a push subscription Clarion will
    send to: an https URL of a public host (or, over http too, an address the operator
    allowed), a P-256 public key and a 16-byte secret."""
    from cryptography.hazmat.primitives.asymmetric import ec

    if len(endpoint) > MAX_ENDPOINT:
        raise ValueError(f"endpoint: longer than {MAX_ENDPOINT} characters")
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").rstrip(".")
    if not host or parts.username or parts.password:
        raise ValueError("endpoint: not a URL with a host")
    try:
        port = parts.port  # urllib checks 0-65535 when asked
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.rstrip("]").rsplit(":", 1)[-1] == ""):
        raise ValueError("endpoint: its port is not a number from 1 to 65535")
    ip = _literal_address(host)
    if ip is None and (host == "localhost" or host.endswith((".localhost", ".local", ".internal"))):
        raise ValueError("endpoint: not a public host")
    allowed_ip = False
    if ip is not None:
        from clarion.net import permitted

        if not permitted(str(ip), allow):
            raise ValueError("endpoint: not a public address")
        allowed_ip = any(ip in net for net in allow)
    if parts.scheme != "https" and not (parts.scheme == "http" and allowed_ip):
        raise ValueError("endpoint: push services are reached over https")
    try:
        key = b64url_decode(p256dh)
        if len(key) != 65 or key[0] != 4:
            raise ValueError("is not an uncompressed P-256 point")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    except ValueError as exc:
        raise ValueError(f"keys.p256dh: {exc}") from None
    try:
        secret = b64url_decode(auth)
    except ValueError as exc:
        raise ValueError(f"keys.auth: {exc}") from None
    if len(secret) != 16:
        raise ValueError("keys.auth: is not 16 bytes")


_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host written as one stands for, or None for a name. A host whose last
    label is a number is an IPv4 address to a browser and to most resolvers (WHATWG URL's
    "ends in a number"): `2130706433`, `0x7f.1`, `127.1` and `0177.0.0.1` all reach
    127.0.0.1. Only the dotted-decimal form is taken, so the address checked is the address
    reached; any other form is refused."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        raise ValueError("endpoint: an IPv4 address not written as four decimal numbers")
    return None


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """The body of one push message: `payload` encrypted for this browser (RFC 8291), with a
    fresh key pair and salt of its own."""
    import http_ece
    from cryptography.hazmat.primitives.asymmetric import ec

    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a push payload is at most {MAX_PAYLOAD} bytes")
    sender = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        payload,
        salt=os.urandom(16),
        private_key=sender,
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )
    return body


class Vapid:
    """The application server's identity (a P-256 key), and its signed tokens, one per push
    service origin, reused until an hour before they expire."""

    def __init__(self, private_key: str, subject: str) -> None:
        from py_vapid import Vapid02

        key = private_key.strip()
        try:
            if key.startswith("-----BEGIN"):
                self._vapid = Vapid02.from_pem(key.encode())
            else:
                self._vapid = Vapid02.from_raw(key.encode())
        except Exception as exc:  # py_vapid raises whatever the key parser raised
            raise ValueError(
                "is not a P-256 private key (PEM, or 32 bytes base64url); "
                "`clarion subscriptions keys` makes one"
            ) from exc
        self.subject = subject
        self._tokens: dict[str, tuple[float, str]] = {}

    @property
    def public_key(self) -> str:
        """What the page gives the browser as `applicationServerKey` (base64url)."""
        from cryptography.hazmat.primitives import serialization

        raw = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(raw)

    def authorization(self, endpoint: str, now: float | None = None) -> str:
        """The `Authorization` header for a message to `endpoint`: RFC 8292's `vapid t=…,k=…`
        for the push service's origin. py_vapid's own `sign` refuses an IPv6 literal as the
        audience (`https://[2001:db8::1]`, a valid origin), so its JWT signer is given the
        claims this checks itself."""
        from py_vapid.jwt import sign

        audience = audience_of(endpoint)
        now = time.time() if now is None else now
        cached = self._tokens.get(audience)
        if cached is not None and cached[0] - 3600 > now:
            return cached[1]
        expires = int(now) + VAPID_LIFETIME
        claims = {"aud": audience, "exp": expires, "sub": self.subject}
        token = sign(claims, self._vapid.private_key)
        value = f"vapid t={token},k={self.public_key}"
        if len(self._tokens) > 1000:
            self._tokens.clear()
        self._tokens[audience] = (expires, value)
        return value


def audience_of(endpoint: str) -> str:
    """The origin a VAPID token is for (scheme, host, port: RFC 8292 section 2); ValueError
    for an endpoint that has none."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("endpoint: not an http(s) URL with a host")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError for a port out of range
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def new_private_key() -> str:
    """A new VAPID private key, as 32 bytes base64url (what `vapid_private_key` takes)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def topic(channel: str, thread_id: int) -> str:
    """RFC 8030's Topic for a story: a later message with the same topic replaces an earlier
    one still waiting at the push service, and the page's service worker uses it as the
    notification's tag, so an update replaces the alert on the screen. At most 32 characters
    of the base64url alphabet; says nothing readable."""
    return b64url(hashlib.sha256(f"{channel}\0{thread_id}".encode()).digest())[:32]
