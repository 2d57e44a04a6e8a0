"""A loopback Web Push service standing in for the browser's (FCM, Mozilla's autopush, Apple's):
it issues subscriptions like a browser's `PushManager.subscribe()` (an endpoint, a P-256 key
pair and an auth secret), checks each request's VAPID token as RFC 8292 says (py_vapid: the
signature, `aud` = the endpoint's origin, `exp` within 24 hours, a `sub`), and decrypts the body
with the subscription's private key (http_ece, RFC 8291), as the browser would."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from tests.fakes.http import FakeServer, Request, Response


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@dataclass
class Browser:
    """One browser's push subscription (what `subscription.toJSON()` gives the page)."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey
    auth: bytes
    got: list[dict[str, Any]] = field(default_factory=list)  # decrypted messages, with headers

    @property
    def p256dh(self) -> str:
        return _b64(
            self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def as_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": _b64(self.auth)}}


class PushService:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.lock = threading.Lock()
        self.browsers: dict[str, Browser] = {}
        self.gone: set[str] = set()
        self.script: dict[str, list[Response]] = {}  # path → answers to give first
        self.rejected: list[str] = []
        self.requests = 0
        self.server = FakeServer(self.handle, host)

    def __enter__(self) -> PushService:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    def subscribe(self) -> Browser:
        path = "/push/" + secrets.token_urlsafe(16)
        b = Browser(
            self.server.url + path, ec.generate_private_key(ec.SECP256R1()), secrets.token_bytes(16)
        )
        with self.lock:
            self.browsers[path] = b
        return b

    def unsubscribe(self, b: Browser) -> None:
        """The person revoked the permission: the service answers 410 from now on."""
        with self.lock:
            self.gone.add(b.endpoint.removeprefix(self.server.url))

    def _reject(self, why: str) -> Response:
        with self.lock:
            self.rejected.append(why)
        return Response(401, {"error": why})

    def handle(self, req: Request) -> Response:
        with self.lock:
            self.requests += 1
            if req.path in self.gone:
                return Response(410)
            queued = self.script.get(req.path)
            if queued:
                return queued.pop(0)
            browser = self.browsers.get(req.path)
        if browser is None:
            return Response(404)
        auth = req.headers.get("authorization", "")
        try:
            if not Vapid02.verify(auth):
                return self._reject("VAPID signature does not verify")
        except Exception as exc:  # a malformed header
            return self._reject(f"VAPID header unreadable: {exc}")
        token = auth.split("t=", 1)[1].split(",", 1)[0]
        claims = json.loads(_unb64(token.split(".")[1]))
        if claims.get("aud") != self.server.url:
            return self._reject(f"aud {claims.get('aud')!r} is not {self.server.url!r}")
        if not (time.time() < claims.get("exp", 0) <= time.time() + 86400):
            return self._reject("exp is not within the next 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return self._reject("no sub")
        if req.headers.get("content-encoding") != "aes128gcm":
            return Response(415)
        for h in ("ttl",):
            if h not in req.headers:
                return Response(400, {"error": f"{h} missing"})
        plain = http_ece.decrypt(
            req.body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm"
        )
        with self.lock:
            browser.got.append(
                {
                    "payload": json.loads(plain),
                    "topic": req.headers.get("topic"),
                    "urgency": req.headers.get("urgency"),
                    "ttl": int(req.headers["ttl"]),
                    "vapid_key": auth.split("k=", 1)[1],
                }
            )
        return Response(201, headers={"Location": req.path + "/m/" + secrets.token_hex(4)})
