"""A loopback WebSub hub following the W3C recommendation (sections 5–8), for tests.

Subscribe: `POST` form `hub.mode=subscribe`, `hub.topic`, `hub.callback`, `hub.secret`,
`hub.lease_seconds` → `202 Accepted`, then, asynchronously, verification of intent:
`GET callback?hub.mode=subscribe&hub.topic=…&hub.challenge=…&hub.lease_seconds=…`, which must
answer 2xx echoing the challenge. `publish(topic, body)` distributes content to verified
subscribers with `X-Hub-Signature: sha256=HMAC(secret, body)` and `Link` headers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from typing import Any
from urllib.parse import parse_qs

import httpx

from tests.fakes.http import FakeServer, Request, Response


class FakeHub:
    def __init__(self, lease_seconds: int | None = None) -> None:
        self.lease_seconds = lease_seconds  # None: grant what the subscriber asks
        self.subscribe_requests: list[dict[str, str]] = []
        self.verified: dict[str, dict[str, Any]] = {}  # callback → subscription
        self.failed_verifications: list[str] = []
        self.fail_with: int | None = None
        self.published: list[list[str]] = []  # hub.url lists of publish pings received
        self.pinged = threading.Event()
        self.lock = threading.Lock()
        self.server = FakeServer(self.handle)

    @property
    def url(self) -> str:
        return self.server.url + "/hub"

    def __enter__(self) -> FakeHub:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    def handle(self, req: Request) -> Response:
        if self.fail_with is not None:
            return Response(self.fail_with, raw=b"hub down", content_type="text/plain")
        raw = parse_qs(req.body.decode())
        form = {k: v[-1] for k, v in raw.items()}
        if form.get("hub.mode") == "publish":  # a publisher says these topics changed
            if not raw.get("hub.url"):
                return Response(400, raw=b"hub.url missing", content_type="text/plain")
            with self.lock:
                self.published.append(raw["hub.url"])
                self.pinged.set()
            return Response(204, raw=b"", content_type="text/plain")
        if form.get("hub.mode") != "subscribe" or not form.get("hub.callback"):
            return Response(400, raw=b"bad request", content_type="text/plain")
        with self.lock:
            self.subscribe_requests.append(form)
        threading.Thread(target=self._verify, args=(form,), daemon=True).start()
        return Response(202, raw=b"", content_type="text/plain")

    def _verify(self, form: dict[str, str]) -> None:
        challenge = secrets.token_urlsafe(16)
        lease = str(self.lease_seconds or form.get("hub.lease_seconds") or 86400)
        try:
            r = httpx.get(
                form["hub.callback"],
                params={
                    "hub.mode": "subscribe",
                    "hub.topic": form["hub.topic"],
                    "hub.challenge": challenge,
                    "hub.lease_seconds": lease,
                },
                timeout=10,
            )
        except httpx.HTTPError as exc:
            with self.lock:
                self.failed_verifications.append(str(exc))
            return
        with self.lock:
            if 200 <= r.status_code < 300 and r.text == challenge:
                self.verified[form["hub.callback"]] = {**form, "lease": int(lease)}
            else:
                self.failed_verifications.append(f"{r.status_code} {r.text[:50]}")

    def publish(
        self,
        topic: str,
        body: bytes,
        content_type: str = "application/atom+xml",
        tamper: bool = False,
    ) -> list[int]:
        statuses = []
        with self.lock:
            subs = [s for s in self.verified.values() if s["hub.topic"] == topic]
        for sub in subs:
            sig = hmac.new(sub["hub.secret"].encode(), body, hashlib.sha256).hexdigest()
            if tamper:
                sig = sig[::-1]
            r = httpx.post(
                sub["hub.callback"],
                content=body,
                headers={
                    "content-type": content_type,
                    "x-hub-signature": f"sha256={sig}",
                    "link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"',
                },
                timeout=10,
            )
            statuses.append(r.status_code)
        return statuses
