"""A TCP proxy on 127.0.0.1 that injects transport faults between a channel and a platform
fake: it can pass a connection through, or forward the request and then cut the answer short
with a TCP reset (the platform did the work, the client never hears it), or reset before
forwarding anything, or hold the answer back past the client's timeout.

`faults` lists (path fragment, mode): the first request whose request line contains the
fragment takes that mode (once); other requests pass. `seen` records (request line, mode).
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

PASS = "pass"
RESET_MID_RESPONSE = "reset_mid_response"  # request forwarded; a few answer bytes, then RST
RESET_BEFORE_REQUEST = "reset_before_request"  # RST at once; nothing reaches the platform
STALL = "stall"  # request forwarded; the answer is held until the proxy stops


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER on, timeout 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    def __init__(self, upstream: str, partial_bytes: int = 40) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(upstream)
        assert parts.hostname and parts.port, upstream
        self.upstream = (parts.hostname, parts.port)
        self.upstream_base = f"{parts.scheme}://{parts.netloc}"
        self.partial_bytes = partial_bytes
        self.faults: list[tuple[str, str]] = []
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _mode(self, request: bytes) -> str:
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        with self.lock:
            mode = PASS
            for i, (fragment, fault) in enumerate(self.faults):
                if fragment in line:
                    mode = fault
                    del self.faults[i]
                    break
            self.seen.append((line, mode))
        return mode

    def _read_request(self, client: socket.socket) -> bytes:
        """One whole HTTP/1.1 request (headers, then Content-Length bytes of body)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                break
            body += chunk
        # One request per connection: the platform closes it after answering.
        head = b"\r\n".join(
            line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")
        )
        return head + b"\r\nConnection: close\r\n\r\n" + body

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            request = self._read_request(client)
            if not request:
                client.close()
                return
            mode = self._mode(request)
            if mode == RESET_BEFORE_REQUEST:
                _reset(client)
                return
            with socket.create_connection(self.upstream, timeout=10) as up:
                up.sendall(request)
                answer = b""
                while chunk := up.recv(65536):
                    answer += chunk
            # Tell the client this connection ends here, so it never reuses it for the next
            # request (a stale keep-alive connection is a different fault from the one asked).
            head, sep, body = answer.partition(b"\r\n\r\n")
            lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"connection:")]
            answer = b"\r\n".join([*lines, b"Connection: close"]) + sep + body
            if mode == RESET_MID_RESPONSE:
                client.sendall(answer[: self.partial_bytes])
                _reset(client)
                return
            if mode == STALL:
                self.stop.wait()
                _reset(client)
                return
            client.sendall(answer)
            client.close()
        except OSError:
            client.close()
