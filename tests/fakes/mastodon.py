"""A loopback fake of the Mastodon REST API, following docs.joinmastodon.org.

Implements what Clarion uses: `GET /api/v1/instance` and `/api/v2/instance` (with
`configuration.statuses.max_characters`), `POST /api/v1/statuses` (form or JSON; `status`,
`in_reply_to_id`, `visibility`, `language`; the `Idempotency-Key` header, which makes a repeated
request with the same key and token return the status already created, as Mastodon does for an
hour), `GET/PUT/DELETE /api/v1/statuses/:id`. Errors are shaped as Mastodon's:
`{"error": "..."}` with 401, 404, 422 and 429 (with `X-RateLimit-*` headers).

`script` queues canned failures for the next requests (500, 429, garbage, hang-up), and
`on_create` lets a test act at the moment a status has been created but not yet answered.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import regex

from tests.fakes.http import FakeServer, Request, Response

_URL = re.compile(r"https?://\S+")


def mastodon_length(text: str) -> int:
    # Mastodon's StatusLengthValidator: URLs count 23, then grapheme clusters.
    return len(regex.findall(r"\X", _URL.sub("x" * 23, text)))


class FakeMastodon:
    def __init__(
        self, token: str = "good-token", max_characters: int = 500, domain: str = "fake.social"
    ) -> None:
        self.token = token
        self.max_characters = max_characters
        self.domain = domain
        self.lock = threading.Lock()
        self.statuses: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.edits: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        self.idempotency: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []
        self.script: list[Any] = []  # Response, None (hang up), or a callable making one
        self.intercept: Any = None  # request → an answer replacing the platform's, or None
        self.on_create: Callable[[dict[str, Any]], None] | None = None
        self._ids = itertools.count(109_000_000_000_000_000)
        self.hang = threading.Event()
        self.release = threading.Event()
        self.server = FakeServer(self.handle)

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> FakeMastodon:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.__exit__(*exc)

    # --- the API ----------------------------------------------------------------------------

    def handle(self, req: Request) -> Response | None:
        if self.hang.is_set():  # answer too late: the client's timeout fires first
            self.hang.clear()
            self.release.wait(timeout=10)
            return Response(504)
        with self.lock:
            self.requests.append((req.method, req.path))
            if self.script:
                canned = self.script.pop(0)
                # A callable is built when the request arrives (a reset time must be fresh).
                return canned() if callable(canned) else canned
        if self.intercept is not None and (answer := self.intercept(req)) is not None:
            return answer
        if req.path in ("/api/v1/instance", "/api/v1/instance/"):
            return Response(
                200,
                {
                    "uri": self.domain,
                    "title": "Fake",
                    "version": "4.3.2",
                    "api_versions": {"mastodon": 2},
                    "configuration": {"statuses": {"max_characters": self.max_characters}},
                },
            )
        if req.path in ("/api/v2/instance", "/api/v2/instance/"):
            return Response(
                200,
                {
                    "domain": self.domain,
                    "title": "Fake",
                    "version": "4.3.2",
                    "api_versions": {"mastodon": 2},
                    "configuration": {
                        "statuses": {
                            "max_characters": self.max_characters,
                            "characters_reserved_per_url": 23,
                        }
                    },
                },
            )
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return Response(401, {"error": "The access token is invalid"})
        if req.path == "/api/v1/statuses" and req.method == "POST":
            return self._create(req)
        if req.path in ("/api/v1/media", "/api/v2/media") and req.method == "POST":
            return self._media(req)
        m = re.fullmatch(r"/api/v1/statuses/(\d+)", req.path)
        if m:
            return self._one(req, m.group(1))
        return Response(404, {"error": "Record not found"})

    def _media(self, req: Request) -> Response:
        """Multipart upload: `file`, and `description` (the alt text)."""
        fields = req.multipart()
        if "file" not in fields:
            return Response(422, {"error": "Validation failed: File can't be blank"})
        with self.lock:
            mid = str(next(self._ids))
            media = {
                "id": mid,
                "type": "image",
                "url": f"https://{self.domain}/media/{mid}",
                "description": fields["description"].get_content()
                if "description" in fields
                else None,
                "bytes": fields["file"].get_payload(decode=True),
            }
            self.media[mid] = media
        return Response(200, {k: v for k, v in media.items() if k != "bytes"})

    def _create(self, req: Request) -> Response | None:
        form = req.form()
        text = form.get("status", "")
        key = req.headers.get("idempotency-key")
        with self.lock:
            if key and (self.token, key) in self.idempotency:
                return Response(200, self.statuses[self.idempotency[(self.token, key)]])
            if not text.strip():
                return Response(422, {"error": "Validation failed: Text can't be blank"})
            if mastodon_length(text) > self.max_characters:
                return Response(
                    422,
                    {
                        "error": "Validation failed: Text character limit of "
                        f"{self.max_characters} exceeded"
                    },
                )
            reply_to = form.get("in_reply_to_id")
            if reply_to and reply_to not in self.statuses:
                return Response(404, {"error": "Record not found"})
            sid = str(next(self._ids))
            status = {
                "media_ids": [
                    m
                    for k, vs in parse_qs(req.body.decode(errors="replace")).items()
                    if k in ("media_ids[]", "media_ids")
                    for m in vs
                ],
                "id": sid,
                "uri": f"https://{self.domain}/users/clarion/statuses/{sid}",
                "url": f"https://{self.domain}/@clarion/{sid}",
                "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "content": "<p>" + text.replace("\n", "<br />") + "</p>",
                "text": text,
                "in_reply_to_id": reply_to,
                "visibility": form.get("visibility", "public"),
                "language": form.get("language"),
                "account": {"id": "1", "username": "clarion", "acct": "clarion"},
                "edited_at": None,
            }
            self.statuses[sid] = status
            if key:
                self.idempotency[(self.token, key)] = sid
        if self.on_create is not None:
            self.on_create(status)
        return Response(200, status)

    def _one(self, req: Request, sid: str) -> Response:
        with self.lock:
            status = self.statuses.get(sid)
            if status is None:
                return Response(404, {"error": "Record not found"})
            if req.method == "GET":
                return Response(200, status)
            if req.method == "DELETE":
                del self.statuses[sid]
                self.deleted.append(sid)
                return Response(200, {**status, "text": status["text"]})
            if req.method == "PUT":
                text = req.form().get("status", "")
                self.edits.append((sid, text))
                status.update(
                    text=text,
                    content=f"<p>{text}</p>",
                    edited_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
                )
                return Response(200, status)
        return Response(405, {"error": "Method not allowed"})

    # --- canned failures ----------------------------------------------------------------

    @staticmethod
    def rate_limited(reset_in: int = 30) -> Any:
        def make() -> Response:
            reset = (datetime.now(UTC) + timedelta(seconds=reset_in)).isoformat()
            return Response(
                429,
                {"error": "Too many requests"},
                headers={
                    "X-RateLimit-Limit": "300",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset,
                },
            )

        return make
