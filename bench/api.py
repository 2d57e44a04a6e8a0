"""The REST API's cost of counting requests: `GET /api/v1/notices` as an anonymous client (its
request is counted in the database, one upsert, so the hourly limit holds across replicas)
beside the same request with a public-service key (verified, never counted), against one
`clarion web` on SQLite with 200 notices stored. Rounds alternate between the two so the
machine's noise falls on both; the ratio is the figure to read.

    .venv/bin/python bench/run.py --only api
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.channels import build_channels  # noqa: E402
from clarion.config import parse_config  # noqa: E402
from clarion.keys import create_key  # noqa: E402
from clarion.manual import NoticeIn, new_alert  # noqa: E402
from clarion.pipeline import ingest  # noqa: E402
from clarion.store import open_store  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rate(http: httpx.Client, url: str, headers: dict[str, str], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        r = http.get(url, headers=headers)
        assert r.status_code == 200, r.text
    return n / (time.perf_counter() - start)


def main(rounds: int = 5, per_round: int = 200) -> None:
    from datetime import UTC, datetime

    tmp = Path(tempfile.mkdtemp())
    port = _port()
    text = f"""
[clarion]
database_url = "sqlite:///{tmp / "api.db"}"
port = {port}
[api]
anonymous_per_hour = 100000000
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
"""
    (tmp / "clarion.toml").write_text(text)
    cfg = parse_config(text, environ={})
    store = open_store(cfg.clarion.database_url)
    chans = build_channels(cfg)
    notices = [new_alert(cfg, NoticeIn(headline=f"Road {i} closed")) for i in range(200)]
    ingest(store, cfg, chans, notices, source="api")
    _, token = create_key(store, "bench", datetime.now(UTC), tier="public_service")
    store.close()
    clarion = str(Path(sys.executable).with_name("clarion"))
    proc = subprocess.Popen(
        [clarion, "web", "--config", str(tmp / "clarion.toml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}/api/v1/notices?limit=10"
    try:
        with httpx.Client(timeout=10) as http:
            for _ in range(100):
                try:
                    http.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            key = {"Authorization": f"Bearer {token}"}
            _rate(http, url, key, 50)  # warm up both paths
            _rate(http, url, {}, 50)
            counted, uncounted = [], []
            for _ in range(rounds):
                uncounted.append(_rate(http, url, key, per_round))
                counted.append(_rate(http, url, {}, per_round))
        base, mine = sorted(uncounted)[rounds // 2], sorted(counted)[rounds // 2]
        print(
            "\nREST API, GET /api/v1/notices?limit=10, one `clarion web` on SQLite "
            f"(median of {rounds})\n"
        )
        print(f"{'':44}{'requests/s':>11}{'ratio':>8}")
        print(f"{'public-service key, not counted (baseline)':44}{base:11,.0f}{1:8.3f}")
        print(f"{'anonymous, counted in the database':44}{mine:11,.0f}{mine / base:8.3f}")
    finally:
        proc.terminate()
        proc.wait(10)
