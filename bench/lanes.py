"""Lanes: how long healthy channels take when another channel's platform hangs.

Two healthy webhook channels and, in the second run, a third whose receiver holds every request
for 30 s (past the channel's 10 s timeout). Notices are ingested one by one while a dispatcher
runs (`run_forever`, as `clarion worker` does); each healthy delivery's latency is from its
ingest to its arrival at the receiver. Printed: the healthy channels' p50 and p99 without and
with the hung channel, and their ratio (1.0: the hung platform costs the others nothing).

    .venv/bin/python bench/run.py --only lanes
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time

import httpx
from dispatch import SECRET, _alerts, _receiver

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.config import parse_config
from clarion.delivery.dispatcher import Dispatcher
from clarion.pipeline import ingest
from clarion.sources.cap import parse_cap
from clarion.store import open_store


def _config(db: str, fast: str, hung: str | None) -> str:
    hook = """
[channels.{name}]
kind = "webhook"
url = "{url}/hook"
secret = {{ env = "BENCH_SECRET" }}
timeout = "10s"
rate_limit = "off"
"""
    channels = [("a", fast), ("b", fast)] + ([("hung", hung)] if hung else [])
    body = "".join(hook.format(name=n, url=u) for n, u in channels)
    names = ", ".join(f'"{n}"' for n, _ in channels)
    return f"""
[clarion]
database_url = "{db}"
drop_expired = false
allow_networks = ["127.0.0.0/8"]
{body}
[[routes]]
channels = [{names}]
"""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _run(n: int, hung: bool) -> list[float]:
    os.environ["BENCH_SECRET"] = SECRET
    fast_proc, fast = _receiver()
    slow_proc, slow = _receiver(delay=30.0) if hung else (None, None)
    tmp = tempfile.mkdtemp()
    try:
        cfg = parse_config(_config(f"sqlite:///{tmp}/l.db", fast, slow), environ={})
        store = open_store(cfg.clarion.database_url)
        chans = build_channels(cfg)
        stop = threading.Event()
        disp = Dispatcher(store, chans, lease_seconds=120, drop_expired=False)
        worker = threading.Thread(target=disp.run_forever, args=(stop, 0.05), daemon=True)
        worker.start()
        sent_at: dict[str, float] = {}
        for doc in _alerts(n):
            notices = parse_cap(doc)
            sent_at[notices[0].identifier] = time.time()
            ingest(store, cfg, chans, notices, source="bench", include_expired=True)
            time.sleep(0.05)
        deadline = time.monotonic() + 120
        arrivals: list[list[object]] = []
        while time.monotonic() < deadline:
            arrivals = httpx.get(f"{fast}/stats", timeout=5).json()
            if len(arrivals) >= 2 * n:
                break
            time.sleep(0.2)
        stop.set()
        close_all(chans)
        latencies = []
        for at, body in arrivals:
            ident = json.loads(str(body))["data"]["identifier"]
            latencies.append(float(at) - sent_at[ident])  # type: ignore[arg-type]
        return latencies
    finally:
        fast_proc.terminate()
        if slow_proc is not None:
            slow_proc.terminate()


def main(n: int = 40) -> None:
    calm = _run(n, hung=False)
    stormy = _run(n, hung=True)
    print(f"\nLanes: {n} notices to 2 healthy webhook channels, beside a third that hangs 30 s\n")
    print(f"{'healthy channels':34}{'p50 ms':>9}{'p99 ms':>9}{'delivered':>11}")
    for label, lat in (("alone (baseline)", calm), ("beside a hung channel", stormy)):
        print(f"{label:34}{_pct(lat, 0.5) * 1000:9.0f}{_pct(lat, 0.99) * 1000:9.0f}{len(lat):11}")
    print(
        f"{'ratio (hung / alone)':34}{_pct(stormy, 0.5) / _pct(calm, 0.5):9.2f}"
        f"{_pct(stormy, 0.99) / _pct(calm, 0.99):9.2f}"
    )


if __name__ == "__main__":
    main()
