"""Push latency: a signed webhook POST in → its delivery row committed, at a steady rate.

`POST /hooks/NAME` answers 202 only after the notice and its outbox rows are committed, so the
request's round trip is the latency asked about. A real server (uvicorn) on loopback, a real
client (httpx), SQLite on disk; the baseline is `GET /healthz` (which also touches the
database) on the same server, interleaved at the same rate.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.channels import build_channels  # noqa: E402
from clarion.config import parse_config  # noqa: E402
from clarion.store import open_store  # noqa: E402
from clarion.web.app import create_app  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(rate: float = 50.0, count: int = 500) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp()
    os.environ["BENCH_PUSH_SECRET"] = SECRET
    cfg = parse_config(
        f"""
[clarion]
database_url = "sqlite:///{tmp}/push.db"
[sources.ops]
kind = "push"
secret = {{ env = "BENCH_PUSH_SECRET" }}
[channels.preview]
kind = "preview"
[channels.second]
kind = "preview"
[channels.third]
kind = "preview"
[[routes]]
channels = ["preview", "second", "third"]
""",
        environ={},
    )
    store = open_store(cfg.clarion.database_url)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store, cfg, build_channels(cfg)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    signer = Webhook(SECRET)
    push_ms: list[float] = []
    base_ms: list[float] = []
    interval = 1.0 / rate
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        start = time.perf_counter()
        for i in range(count):
            due = start + i * interval
            time.sleep(max(0.0, due - time.perf_counter()))  # a steady rate, not a burst
            body = json.dumps(
                {
                    "identifier": f"bench-{i}",
                    "sent": datetime.now(UTC).isoformat(),
                    "headline": f"Road closure {i} on Route 9",
                    "severity": "moderate",
                    "instruction": "Use Route 7 instead.",
                }
            ).encode()
            now = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": f"msg_{i}",
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signer.sign(f"msg_{i}", now, body.decode()),
            }
            t0 = time.perf_counter()
            r = http.post("/hooks/ops", content=body, headers=headers)
            push_ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 202 and r.json()["deliveries"] == 3, r.text
            t0 = time.perf_counter()
            http.get("/healthz").raise_for_status()
            base_ms.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - start
    server.should_exit = True
    print(
        f"\nPush latency, POST in → 3 delivery rows committed ({count} at {count / elapsed:.0f}/s,"
        " SQLite)"
    )
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in (("push (POST /hooks)", push_ms), ("baseline (GET /healthz)", base_ms)):
        print(f"  {name:<26}{_pct(values, 50):10.2f}{_pct(values, 99):10.2f}")
    print(
        f"  {'ratio push / baseline':<26}{_pct(push_ms, 50) / _pct(base_ms, 50):10.2f}"
        f"{_pct(push_ms, 99) / _pct(base_ms, 99):10.2f}"
    )


if __name__ == "__main__":
    main()
