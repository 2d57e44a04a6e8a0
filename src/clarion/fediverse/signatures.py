"""HTTP Signatures as the fediverse uses them (draft-cavage-http-signatures-12, rsa-sha256),
with the `Digest` header (RFC 3230) for bodies: how Mastodon, Misskey, Pixelfed and Fedify
sign server-to-server requests.

Hand-written on `cryptography` because no maintained Python library implements this draft
(the `http-message-signatures` package does RFC 9421, which Mastodon does not yet require).
What is checked on the way in: the signature covers `(request-target)`, `host` and `date`,
and `digest` whenever there is a body; the digest matches the body; the date is neither stale
(older than 12 hours, as Mastodon allows) nor more than an hour ahead; and the signature
verifies with the key its `keyId` names (fetched by the caller).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

STALE = timedelta(hours=12)
AHEAD = timedelta(hours=1)
_PARAM = re.compile(r'(\w+)="([^"]*)"')


class SignatureError(ValueError):
    """A request whose signature cannot be accepted; the message says why."""


def new_key() -> tuple[str, str]:
    """A fresh RSA-2048 key pair as (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def _signing_string(names: list[str], method: str, target: str, headers: Mapping[str, str]) -> str:
    lines = []
    for name in names:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        else:
            if name not in headers:
                raise SignatureError(f"the signed header {name!r} is missing from the request")
            lines.append(f"{name}: {headers[name]}")
    return "\n".join(lines)


def sign(
    method: str,
    url: str,
    body: bytes | None,
    key_id: str,
    private_pem: str,
    now: datetime | None = None,
    content_type: str = "application/activity+json",
) -> dict[str, str]:
    """The headers that sign this request: Host, Date, Digest (with a body), Signature."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {
        "host": parts.netloc,
        "date": format_datetime((now or datetime.now(UTC)).astimezone(UTC), usegmt=True),
    }
    names = ["(request-target)", "host", "date"]
    if body is not None:
        headers["digest"] = digest(body)
        headers["content-type"] = content_type
        names += ["digest", "content-type"]
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    text = _signing_string(names, method, target, headers)
    sig = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    headers["signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(names)}",'
        f'signature="{base64.b64encode(sig).decode()}"'
    )
    return {k.title() if k != "digest" else "Digest": v for k, v in headers.items()}


def key_id_of(headers: Mapping[str, str]) -> str:
    """The `keyId` a request says it is signed with (before anything is verified)."""
    params = _params({k.lower(): v for k, v in headers.items()})
    return params["keyId"]


def _params(headers: Mapping[str, str]) -> dict[str, str]:
    raw = headers.get("signature")
    if not raw:
        raise SignatureError("the request is not signed (no Signature header)")
    params = dict(_PARAM.findall(raw))
    for needed in ("keyId", "signature"):
        if needed not in params:
            raise SignatureError(f"the Signature header has no {needed}")
    return params


def verify(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | None,
    public_key: Callable[[str], str],
    now: datetime | None = None,
) -> str:
    """Check a signed request; returns its keyId. `target` is the path with its query;
    `public_key(key_id)` returns the signer's public key PEM (fetched and cached by the caller)."""
    h = {k.lower(): v for k, v in headers.items()}
    params = _params(h)
    names = params.get("headers", "date").lower().split()
    algorithm = params.get("algorithm", "rsa-sha256").lower()
    if algorithm not in ("rsa-sha256", "hs2019"):
        raise SignatureError(f"unsupported signature algorithm {algorithm!r}")
    for needed in ("(request-target)", "host", "date"):
        if needed not in names:
            raise SignatureError(f"the signature does not cover {needed}")
    if body:
        if "digest" not in names:
            raise SignatureError("the signature does not cover the body's digest")
        sent = h.get("digest", "")
        if not any(d.strip() == digest(body) for d in sent.split(",")):
            raise SignatureError("the body does not match its Digest header")
    try:
        date = parsedate_to_datetime(h.get("date", ""))
    except (TypeError, ValueError):
        raise SignatureError("the Date header is not a date") from None
    moment = now or datetime.now(UTC)
    if date < moment - STALE:
        raise SignatureError(f"the request is too old (signed {date:%Y-%m-%d %H:%M} UTC)")
    if date > moment + AHEAD:
        raise SignatureError("the request is dated in the future")
    text = _signing_string(names, method, target, h)
    try:
        signature = base64.b64decode(params["signature"], validate=True)
    except ValueError:
        raise SignatureError("the signature is not base64") from None
    pem = public_key(params["keyId"])  # its own SignatureError says why a key is refused
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise SignatureError("the signer's public key could not be read") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("the signer's key is not an RSA key")
    try:
        key.verify(signature, text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("the signature does not match") from None
    return params["keyId"]
