"""A loopback webhook receiver that verifies Standard Webhooks signatures, as a receiver must."""

from __future__ import annotations

import json
import threading
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.fakes.http import FakeServer, Request, Response


class WebhookReceiver:
    def __init__(self, secret: str) -> None:
        self.verifier = Webhook(secret)
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []  # {"id", "body", "headers"}
        self.rejected: list[str] = []
        self.script: list[Response | None] = []
        self.on_receive: Any = None
        self.hang = threading.Event()
        self.release = threading.Event()
        self.server = FakeServer(self.handle)

    @property
    def url(self) -> str:
        return self.server.url + "/hook"

    def __enter__(self) -> WebhookReceiver:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.__exit__(*exc)

    def handle(self, req: Request) -> Response | None:
        if self.hang.is_set():  # answer too late: the client's timeout fires first
            self.hang.clear()
            self.release.wait(timeout=10)
            return Response(504)
        with self.lock:
            if self.script:
                return self.script.pop(0)
        try:
            body = self.verifier.verify(req.body, req.headers)
        except WebhookVerificationError as exc:
            with self.lock:
                self.rejected.append(str(exc))
            return Response(401, {"error": str(exc)})
        with self.lock:
            self.received.append(
                {"id": req.headers["webhook-id"], "body": body, "headers": req.headers}
            )
        if self.on_receive is not None:
            self.on_receive(req.headers["webhook-id"])
        return Response(204)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(json.dumps(r["body"])) for r in self.received]
