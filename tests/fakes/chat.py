"""Loopback fakes of Telegram's Bot API, Discord and Slack incoming webhooks, and the Matrix
client-server API: the endpoints Clarion uses, shaped as each platform documents them.

Common to all: `script` queues canned answers for the next requests (429, 500, garbage),
`hang` makes the next request wait (for timeouts), `revoke()` invalidates the credential, and
`posts` records what was published, with what each post replies to or edits.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from typing import Any

from tests.fakes.http import FakeServer, Request, Response


class FakePlatform:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: dict[str, dict[str, Any]] = {}
        self.script: list[Any] = []  # Response, or a callable making one
        # Looks at each request; an answer it returns replaces the platform's (e.g. fail the
        # second post of a thread).
        self.intercept: Any = None
        self.hang = threading.Event()
        self.release = threading.Event()
        self.revoked = False
        self.ids = itertools.count(1000)
        self.server = FakeServer(self._handle)

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> FakePlatform:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.__exit__(*exc)

    def revoke(self) -> None:
        self.revoked = True

    def _handle(self, req: Request) -> Response:
        if self.hang.is_set():
            self.hang.clear()
            self.release.wait(timeout=10)  # longer than the channel's timeout
            return Response(504, {"error": "too late"})
        with self.lock:
            if self.script:
                canned = self.script.pop(0)
                # A callable is built when the request arrives (a reset time must be fresh).
                return canned() if callable(canned) else canned
        if self.intercept is not None and (answer := self.intercept(req)) is not None:
            return answer
        return self.handle(req)

    def handle(self, req: Request) -> Response:  # pragma: no cover - overridden
        raise NotImplementedError

    def new_post(self, **fields: Any) -> dict[str, Any]:
        with self.lock:
            pid = str(next(self.ids))
            post = {"id": pid, **fields}
            self.posts[pid] = post
            return post

    # canned failures, as each platform words them
    def rate_limited(self, seconds: int) -> Response:
        return Response(429, {"error": "rate limited"}, headers={"Retry-After": str(seconds)})


class FakeTelegram(FakePlatform):
    """Bot API: POST /bot{token}/sendMessage | editMessageText; answers {"ok", "result"}."""

    TOKEN = "123456:telegram-test-token"

    def handle(self, req: Request) -> Response:
        m = re.fullmatch(r"/bot([^/]+)/(\w+)", req.path)
        if not m:
            return Response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        if self.revoked or m.group(1) != self.TOKEN:
            return Response(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        body = json.loads(req.body or b"{}")
        if m.group(2) == "sendMessage":
            reply = (body.get("reply_parameters") or {}).get("message_id")
            post = self.new_post(
                text=body["text"], reply_to=str(reply) if reply else None, chat=body["chat_id"]
            )
            return Response(
                200,
                {
                    "ok": True,
                    "result": {
                        "message_id": int(post["id"]),
                        "chat": {"id": -1001, "type": "channel"},
                        "date": 1,
                        "text": body["text"],
                    },
                },
            )
        if m.group(2) == "editMessageText":
            post = self.posts.get(str(body["message_id"]))
            if post is None:
                return Response(
                    400,
                    {
                        "ok": False,
                        "error_code": 400,
                        "description": "Bad Request: message to edit not found",
                    },
                )
            post["text"], post["edited"] = body["text"], True
            return Response(200, {"ok": True, "result": {"message_id": int(post["id"])}})
        return Response(404, {"ok": False, "error_code": 404, "description": "Not Found"})

    def rate_limited(self, seconds: int) -> Response:
        return Response(
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {seconds}",
                "parameters": {"retry_after": seconds},
            },
        )


class FakeDiscord(FakePlatform):
    """Incoming webhook: POST /api/webhooks/{id}/{token}?wait=true; PATCH …/messages/{id}."""

    PATH = "/api/webhooks/42/discord-test-token"

    def __init__(self) -> None:
        super().__init__()
        self.nonces: dict[str, str] = {}

    def handle(self, req: Request) -> Response:
        if self.revoked or not req.path.startswith(self.PATH):
            return Response(404, {"message": "Unknown Webhook", "code": 10015})
        body = json.loads(req.body or b"{}")
        if req.method == "POST" and req.path == self.PATH:
            if (problem := self._invalid(body)) is not None:
                return problem
            nonce = body.get("nonce")
            if body.get("enforce_nonce") and nonce in self.nonces:
                return Response(200, self._message(self.posts[self.nonces[nonce]]))
            post = self.new_post(text=body["content"], reply_to=None, embeds=body.get("embeds"))
            if nonce:
                self.nonces[nonce] = post["id"]
            return Response(200 if req.query.get("wait") == "true" else 204, self._message(post))
        m = re.fullmatch(re.escape(self.PATH) + r"/messages/(\d+)", req.path)
        if m and req.method == "PATCH":
            post = self.posts.get(m.group(1))
            if post is None:
                return Response(404, {"message": "Unknown Message", "code": 10008})
            if (problem := self._invalid(body)) is not None:
                return problem
            post["text"], post["edited"] = body["content"], True
            post["embeds"] = body.get("embeds")
            return Response(200, self._message(post))
        return Response(405, {"message": "405: Method Not Allowed", "code": 0})

    @staticmethod
    def _invalid(body: dict[str, Any]) -> Response | None:
        """Discord's documented limits: content 2,000; 10 embeds; title 256, description
        4,096, footer 2,048, and 6,000 characters across each embed's texts."""
        embeds = body.get("embeds") or []
        if not body.get("content") and not embeds:
            return Response(400, {"message": "Cannot send an empty message", "code": 50006})
        bad = len(body.get("content") or "") > 2000 or len(embeds) > 10
        for e in embeds:
            title, desc = e.get("title", ""), e.get("description", "")
            footer = (e.get("footer") or {}).get("text", "")
            author = (e.get("author") or {}).get("name", "")
            bad = bad or len(title) > 256 or len(desc) > 4096 or len(footer) > 2048
            bad = bad or len(title + desc + footer + author) > 6000
            bad = bad or not isinstance(e.get("color", 0), int)
        if bad:
            return Response(400, {"message": "Invalid Form Body", "code": 50035})
        return None

    @staticmethod
    def _message(post: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": post["id"],
            "channel_id": "77",
            "guild_id": "88",
            "content": post["text"],
            "embeds": post.get("embeds") or [],
        }

    def rate_limited(self, seconds: int) -> Response:
        return Response(
            429,
            {"message": "You are being rate limited.", "retry_after": seconds, "global": False},
            headers={"Retry-After": str(seconds), "X-RateLimit-Remaining": "0"},
        )


class FakeSlack(FakePlatform):
    """Incoming webhook: POST /services/T/B/X with {text, blocks}; answers "ok" as text."""

    PATH = "/services/T000/B000/slack-test-token"

    def handle(self, req: Request) -> Response:
        if self.revoked or req.path != self.PATH:
            return Response(
                403 if self.revoked else 404,
                raw=b"invalid_token" if self.revoked else b"no_service",
                content_type="text/plain",
            )
        body = json.loads(req.body or b"{}")
        if not body.get("text") and not body.get("blocks"):
            return Response(400, raw=b"invalid_payload", content_type="text/plain")
        self.new_post(text=body["text"], reply_to=None, blocks=body.get("blocks"))
        return Response(200, raw=b"ok", content_type="text/plain")


class FakeMatrix(FakePlatform):
    """PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txnId}; txnId is idempotent
    per access token, as Synapse does."""

    TOKEN = "syt_matrix_test_token"

    def __init__(self) -> None:
        super().__init__()
        self.txns: dict[tuple[str, str], str] = {}
        self.media: dict[str, dict[str, Any]] = {}

    def handle(self, req: Request) -> Response:
        token = req.headers.get("authorization", "").removeprefix("Bearer ")
        if self.revoked or token != self.TOKEN:
            return Response(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token"})
        if req.path == "/_matrix/media/v3/upload" and req.method == "POST":
            if not req.body:
                return Response(400, {"errcode": "M_BAD_JSON", "error": "empty upload"})
            with self.lock:
                media_id = f"m{next(self.ids)}"
                self.media[media_id] = {
                    "bytes": req.body,
                    "type": req.headers.get("content-type"),
                }
            return Response(200, {"content_uri": f"mxc://matrix.example/{media_id}"})
        m = re.fullmatch(
            r"/_matrix/client/v3/rooms/([^/]+)/send/m\.room\.message/([^/]+)", req.path
        )
        if not m or req.method != "PUT":
            return Response(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
        key = (token, m.group(2))
        if key in self.txns:
            return Response(200, {"event_id": self.txns[key]})
        content = json.loads(req.body or b"{}")
        rel = content.get("m.relates_to") or {}
        reply = (rel.get("m.in_reply_to") or {}).get("event_id")
        post = self.new_post(
            text=content.get("body"),
            reply_to=reply,
            thread=rel.get("event_id") if rel.get("rel_type") == "m.thread" else None,
            edits=rel.get("event_id") if rel.get("rel_type") == "m.replace" else None,
            msgtype=content.get("msgtype"),
            url=content.get("url"),
        )
        event_id = f"${post['id']}"
        self.posts[event_id] = self.posts.pop(post["id"])
        self.posts[event_id]["id"] = event_id
        self.txns[key] = event_id
        return Response(200, {"event_id": event_id})

    def rate_limited(self, seconds: int) -> Response:
        return Response(
            429,
            {
                "errcode": "M_LIMIT_EXCEEDED",
                "error": "Too Many Requests",
                "retry_after_ms": seconds * 1000,
            },
        )


class FakeThreads(FakePlatform):
    """Threads Graph API: POST /{user}/threads (a container), then /{user}/threads_publish."""

    USER = "17841400000000000"
    TOKEN = "threads-test-token"

    def __init__(self) -> None:
        super().__init__()
        self.containers: dict[str, dict[str, Any]] = {}
        self.tokens = {self.TOKEN}
        self.refreshes = 0
        self.too_young = False  # Meta refuses to refresh a token less than a day old

    def handle(self, req: Request) -> Response:
        if self.revoked or req.query.get("access_token") not in self.tokens:
            return Response(
                401,
                {
                    "error": {
                        "message": "Error validating access token: Session has expired",
                        "type": "OAuthException",
                        "code": 190,
                    }
                },
            )
        if req.path == "/refresh_access_token" and req.method == "GET":
            if req.query.get("grant_type") != "th_refresh_token":
                return Response(400, {"error": {"message": "Invalid grant_type", "code": 100}})
            if self.too_young:
                return Response(
                    400,
                    {
                        "error": {
                            "message": "Tokens must be at least 24 hours old to be refreshed",
                            "code": 190,
                        }
                    },
                )
            self.refreshes += 1
            fresh = f"{self.TOKEN}-r{self.refreshes}"
            self.tokens.add(fresh)
            return Response(
                200, {"access_token": fresh, "token_type": "bearer", "expires_in": 5183944}
            )
        if req.path == f"/v1.0/{self.USER}/threads" and req.method == "POST":
            cid = f"c{next(self.ids)}"
            self.containers[cid] = dict(req.query)
            return Response(200, {"id": cid})
        if req.path == f"/v1.0/{self.USER}/threads_publish" and req.method == "POST":
            c = self.containers.pop(req.query.get("creation_id", ""), None)
            if c is None:
                return Response(400, {"error": {"message": "Invalid creation_id", "code": 100}})
            post = self.new_post(text=c.get("text"), reply_to=c.get("reply_to_id"))
            return Response(200, {"id": post["id"]})
        return Response(404, {"error": {"message": "Unknown path", "code": 803}})

    def rate_limited(self, seconds: int) -> Response:
        return Response(400, {"error": {"message": "Application request limit reached", "code": 4}})
