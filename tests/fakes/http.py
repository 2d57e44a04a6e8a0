"""A tiny threaded HTTP server on 127.0.0.1 for platform fakes (no third-party network, ever)."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.body = body

    def form(self) -> dict[str, str]:
        ctype = self.headers.get("content-type", "")
        if "json" in ctype:
            data = json.loads(self.body or b"{}")
            return {k: v for k, v in data.items() if v is not None}
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}

    def multipart(self) -> dict[str, Any]:
        """A multipart/form-data body as {field name: email.message part}."""
        from email import policy
        from email.parser import BytesParser

        head = f"Content-Type: {self.headers.get('content-type', '')}\r\n\r\n".encode()
        msg = BytesParser(policy=policy.default).parsebytes(head + self.body)
        return {
            part.get_param("name", header="content-disposition"): part
            for part in msg.iter_parts()  # type: ignore[attr-defined]
        }


class Response:
    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.status = status
        self.headers = headers or {}
        if raw is not None:
            self.data = raw
        else:
            self.data = b"" if body is None else json.dumps(body).encode()
        self.content_type = content_type


Handler = Callable[[Request], Response]


class FakeServer:
    """Runs `handle(request) -> Response` for every request, on a random loopback port."""

    def __init__(self, handle: Handler, host: str = "127.0.0.1") -> None:
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the client died mid-request: no request at all
                    self.close_connection = True
                    return
                resp = outer.handle(Request(self, body))
                if resp is None:  # the handler killed the client or wants the socket dropped
                    self.close_connection = True
                    return
                try:
                    self.send_response(resp.status)
                    self.send_header("content-type", resp.content_type)
                    self.send_header("content-length", str(len(resp.data)))
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(resp.data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.handle = handle

        class _Server(ThreadingHTTPServer):
            # An IPv6 loopback ([::1]) for clients that must handle IPv6 literals.
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hung up
                    super().handle_error(request, client_address)

        self.httpd = _Server((host, 0), _H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
