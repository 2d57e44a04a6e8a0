"""A remote fediverse server on loopback, with one account (`@reader`): it serves the
account's actor document with its public key, signs what it sends as Mastodon does, and
keeps every activity delivered to its inboxes (with whether the signature verified, checked
against the sender's key fetched from the sender, as a real server would)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import httpx

from clarion.fediverse.signatures import SignatureError, new_key, sign, verify
from tests.fakes.http import FakeServer, Request, Response


class FakeFediverse:
    def __init__(self) -> None:
        self.private, self.public = new_key()
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []  # {"path", "activity", "verified", "error"}
        self.script: list[Response] = []  # canned answers for the next inbox POSTs
        self.gone = False  # the account was deleted: 410 for its documents
        # How this server finds a sender's public key (by default: GET the keyId's document).
        self.resolve_key: Any = None
        self.server = FakeServer(self.handle)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def actor(self) -> str:
        return f"{self.url}/users/reader"

    @property
    def key_id(self) -> str:
        return f"{self.actor}#main-key"

    def __enter__(self) -> FakeFediverse:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    def actor_doc(self) -> dict[str, Any]:
        return {
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
            "id": self.actor,
            "type": "Person",
            "preferredUsername": "reader",
            "inbox": f"{self.actor}/inbox",
            "endpoints": {"sharedInbox": f"{self.url}/inbox"},
            "publicKey": {"id": self.key_id, "owner": self.actor, "publicKeyPem": self.public},
        }

    def handle(self, req: Request) -> Response:
        if req.method == "GET" and req.path == "/users/reader":
            if self.gone:
                return Response(410, {"error": "Gone"})
            return Response(200, self.actor_doc(), content_type="application/activity+json")
        if req.method == "POST" and req.path in ("/inbox", "/users/reader/inbox"):
            with self.lock:
                if self.script:
                    return self.script.pop(0)
            activity = json.loads(req.body)
            verified, error = True, None
            try:
                verify("POST", req.path, req.headers, req.body, self._fetch_key)
            except SignatureError as exc:
                verified, error = False, str(exc)
            with self.lock:
                self.received.append(
                    {"path": req.path, "activity": activity, "verified": verified, "error": error}
                )
            return Response(202, raw=b"", content_type="text/plain")
        return Response(404, {"error": "Record not found"})

    def _fetch_key(self, key_id: str) -> str:
        if self.resolve_key is not None:
            return str(self.resolve_key(key_id))
        doc = httpx.get(
            key_id.split("#")[0], headers={"Accept": "application/activity+json"}
        ).json()
        assert doc["publicKey"]["id"] == key_id
        return str(doc["publicKey"]["publicKeyPem"])

    def signed(
        self,
        url: str,
        activity: dict[str, Any],
        *,
        at: datetime | None = None,
        key: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of `activity` POSTed to `url`, signed by @reader."""
        body = json.dumps(activity).encode()
        headers = sign(
            "POST", url, body, self.key_id, key or self.private, now=at or datetime.now(UTC)
        )
        return body, headers

    def follow(self, target: str) -> dict[str, Any]:
        return {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{self.actor}#follows/1",
            "type": "Follow",
            "actor": self.actor,
            "object": target,
        }

    def activities(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r["activity"]
                for r in self.received
                if kind is None or r["activity"]["type"] == kind
            ]
