"""What every answer carries, and what no request may exceed. Pure ASGI middleware.

- Security headers on every response: no MIME sniffing, no framing (clickjacking), a strict
  referrer policy, no powerful browser features, and a Content Security Policy for pages
  (same-origin only, no script on the public page at all, nor on the API reference; the desk
  runs its own script only). HSTS when the public URL is https.
- Public data is public: feeds, CAP documents and the API's reads may be fetched from any web
  origin (`Access-Control-Allow-Origin: *`, without credentials).
- Request bodies are refused past `clarion.max_request_bytes` (413), by Content-Length, or for
  a chunked body once it has been read that far, before any handler sees them.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
    "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# The desk: its own script and stylesheet only, and fetches back to itself (live panel, SSE).
DESK_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# The subscribe form: its own script (the one place the public page has any), which registers the
# service worker and sends the browser's push subscription back here.
SUBSCRIBE_CSP = PAGE_CSP.replace(
    "script-src 'none'", "script-src 'self'; connect-src 'self'; worker-src 'self'"
)
OPEN_PREFIXES = ("/feeds/", "/notices/", "/api/v1/", "/.well-known/")


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, https: bool) -> None:
        self.app = app
        self.max_body = max_body
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        body_receive = receive
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # No Content-Length (a chunked body): read it here, up to the limit, then hand it on.
            # A handler must never see part of a body and then fail in the middle of parsing.
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.max_body:
                    await self._too_large(scope, receive, send)
                    return
                if not message.get("more_body", False):
                    break
            buffered: list[Message] = [
                {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            ]

            async def replay() -> Message:
                return buffered.pop() if buffered else await receive()

            body_receive = replay

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("X-Frame-Options", "DENY")
                h.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
                h.setdefault(
                    "Permissions-Policy",
                    "camera=(), microphone=(), geolocation=(self)"
                    if path == "/subscribe"
                    else "camera=(), microphone=(), geolocation=()",
                )
                h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if self.https:
                    h.setdefault("Strict-Transport-Security", "max-age=31536000")
                if path == "/desk" or path.startswith("/desk/"):
                    h.setdefault("Content-Security-Policy", DESK_CSP)
                elif path == "/subscribe":
                    h.setdefault("Content-Security-Policy", SUBSCRIBE_CSP)
                else:
                    h.setdefault("Content-Security-Policy", PAGE_CSP)
                if path.startswith(OPEN_PREFIXES) or path == "/api/openapi.json":
                    h.setdefault("Access-Control-Allow-Origin", "*")
                    h.setdefault(
                        "Access-Control-Expose-Headers",
                        "ETag, Last-Modified, Link, RateLimit-Limit, RateLimit-Remaining, "
                        "RateLimit-Reset, RateLimit-Policy, Retry-After",
                    )
            await send(message)

        await self.app(scope, body_receive, secured_send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(f"request body over {self.max_body:,} bytes", status_code=413)
        await response(scope, receive, send)


class HeadAsGet:
    """Every GET answers HEAD (RFC 9110): the request is served as a GET and only its status
    and headers (its Content-Length and ETag included) go out. Crawlers, link checkers, CDNs
    and feed readers ask HEAD; FastAPI's routes alone would answer 405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        finished = False

        async def head_receive() -> Message:
            if finished:  # a stream (server-sent events) stops once the headers are out
                return {"type": "http.disconnect"}
            return await receive()

        async def head_send(message: Message) -> None:
            nonlocal finished
            if finished:
                return
            if message["type"] == "http.response.body":
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await self.app({**scope, "method": "GET"}, head_receive, head_send)


class DatabaseAway:
    """A request whose database does not answer (even after `Store._connect`'s patience) is
    a 503 with Retry-After, which senders and proxies retry, never a bare 500. Outermost, so
    that the middlewares that read the database (rate limits, the snapshot) are covered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from clarion.store import DATABASE_AWAY

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except DATABASE_AWAY:
            if started:
                raise
            from starlette.responses import JSONResponse

            response = JSONResponse(
                {"detail": "the database is not answering just now; try again shortly"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
            await response(scope, receive, send)
