"""Text no database can hold never reaches a handler: a 4xx with the reason, never a 500.

PostgreSQL's text holds neither NUL nor half a surrogate pair, and a `%00` in a filter, a path,
the unsubscribe link, the login name or a `/subscribe` field answered 500 there (SQLite took
it). Rather than each of ~90 routes guarding each value, this pure ASGI middleware refuses a
request whose address (path or query) or whose form or JSON body carries such text, before
routing, with the same answer everywhere:

- the path and each query value, percent-decoded: a NUL, or bytes that are not UTF-8 (an
  encoded surrogate, `%ED%A0%80`, is not UTF-8): 400;
- a form body (url-encoded or multipart), each name and value the same way, and a file where
  only text fields are taken (no route takes uploads): 422;
- a JSON body: what `safejson` refuses (nesting past 64 levels, NaN, a NUL) and half a
  surrogate pair: 422. `/hooks/`, `/websub` and `/ap/` read their JSON themselves (with their
  own signatures over the raw bytes, and their own answers), so their bodies pass.

The functions deciding are pure (bytes in, a reason or None out) and tested row by row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
OWN_JSON = ("/hooks/", "/websub", "/ap/", "/.well-known/")


def text_problem(raw: bytes) -> str | None:
    """Why `raw` (decoded bytes) is no text a database holds, or None."""
    if b"\x00" in raw:
        return "holds a NUL character"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "holds bytes that are not UTF-8 text (half a surrogate pair?)"
    return None


def _pairs(encoded: bytes) -> Iterable[bytes]:
    for pair in encoded.split(b"&"):
        for part in pair.split(b"=", 1):
            yield unquote_to_bytes(part.replace(b"+", b" "))


def address_problem(raw_path: bytes, query: bytes) -> str | None:
    if (why := text_problem(unquote_to_bytes(raw_path))) is not None:
        return f"the address {why}"
    for value in _pairs(query):
        if (why := text_problem(value)) is not None:
            return f"a query value {why}"
    return None


def form_problem(body: bytes) -> str | None:
    for value in _pairs(body):
        if (why := text_problem(value)) is not None:
            return f"a form field {why}"
    return None


def multipart_problem(body: bytes, boundary: bytes) -> str | None:
    from python_multipart.multipart import MultipartParser

    parts: list[bytearray] = []
    headers: list[bytes] = []

    def on_part_begin() -> None:
        parts.append(bytearray())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        headers.append(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_value": on_header_value,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart's own errors: a form that does not parse
        return f"the form does not parse ({type(exc).__name__})"
    if any(b"filename" in h.lower() for h in headers):
        return "a file was sent where only text is taken"
    for value in [*parts, *headers]:
        if (why := text_problem(bytes(value))) is not None:
            return f"a form field {why}"
    return None


def json_problem(body: bytes) -> str | None:
    from clarion import safejson

    if not body.strip():
        return None
    try:
        safejson.loads(body)
    except ValueError as exc:
        return f"the JSON body: {exc}"
    if _SURROGATE_ESCAPE.search(body) and _lone_surrogate(body):
        return "the JSON body holds half a surrogate pair"
    return None


def _lone_surrogate(body: bytes) -> bool:
    """Whether the JSON as a handler reads it (`json.loads` keeps a lone surrogate, which
    `safejson` mends in its own copy) holds one, in a key or a string. Its depth is already
    bounded by `safejson`."""
    stack: list[object] = [json.loads(body)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                return True
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return False


def body_problem(content_type: str, body: bytes, path: str) -> str | None:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return form_problem(body)
    if kind == "multipart/form-data":
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        return multipart_problem(body, boundary) if boundary else "a form without a boundary"
    if (kind == "application/json" or kind.endswith("+json")) and not path.startswith(OWN_JSON):
        return json_problem(body)
    return None


class TextGate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        problem = address_problem(raw_path, scope.get("query_string") or b"")
        if problem is not None:
            await _refuse(scope, send, 400, problem)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        messages, body = await _read(receive)
        problem = body_problem(content_type, body, scope["path"])
        if problem is not None:
            await _refuse(scope, send, 422, problem)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _read(receive: Receive) -> tuple[list[Message], bytes]:
    """The whole body (its size is already bounded by the security middleware)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return messages, b"".join(chunks)


async def _refuse(scope: Scope, send: Send, status: int, problem: str) -> None:
    from starlette.responses import JSONResponse, PlainTextResponse

    path: str = scope["path"]
    accept = dict(scope.get("headers") or []).get(b"accept", b"")
    if path.startswith("/api/") or b"json" in accept:
        # A 422 in the shape FastAPI's own validation errors have (the API documents it).
        detail: object = f"refused: {problem}"
        if status == 422:
            detail = [{"loc": ["body"], "msg": f"refused: {problem}", "type": "value_error"}]
        response: PlainTextResponse | JSONResponse = JSONResponse(
            {"detail": detail}, status_code=status
        )
    else:
        response = PlainTextResponse(f"Refused: {problem}.", status_code=status)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, nothing, send)
