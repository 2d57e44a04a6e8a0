"""Whether a flood of failed desk logins starves everyone else: `/healthz`'s p99 while 40
clients keep posting wrong passwords (each an Argon2 check, ~50 ms of a core), against its
p99 with nothing else going on, on one `clarion web` on SQLite. Rounds alternate idle and
flooded so the machine's noise falls on both; the ratio is the figure to read (goal: at most
2; before password checks had threads of their own it was ~60).

    .venv/bin/python bench/run.py --only logins
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.desk import accounts  # noqa: E402
from clarion.store import open_store  # noqa: E402

FLOOD = 40


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p99(http: httpx.Client, url: str, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        assert http.get(url).status_code == 200
        times.append(time.perf_counter() - start)
    return sorted(times)[int(n * 0.99) - 1]


async def _client(http: httpx.AsyncClient, base: str, until: float, codes: list[int]) -> None:
    form = (await http.get(f"{base}/desk/login")).text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token
    while time.monotonic() < until:
        data = {"username": "eddie", "password": "wrong password", "csrf": token.group(1)}
        r = await http.post(f"{base}/desk/login", data=data)
        codes.append(r.status_code)
        # The answer is the form again, with a fresh token (and cookie) for the next try.
        token = re.search(r'name="csrf" value="([^"]+)"', r.text) or token


def flood(base: str, seconds: float) -> None:
    """FLOOD clients failing logins for `seconds`, each waiting for its answer before trying
    again (one process of its own, asyncio: the measuring client shares no interpreter with
    them); prints how many were answered and how."""
    import asyncio
    from collections import Counter

    async def run() -> Counter[int]:
        codes: list[int] = []
        until = time.monotonic() + seconds
        clients = [httpx.AsyncClient(timeout=60) for _ in range(FLOOD)]
        await asyncio.gather(*(_client(c, base, until, codes) for c in clients))
        for c in clients:
            await c.aclose()
        return Counter(codes)

    print(dict(asyncio.run(run())), flush=True)


def _start(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    text = f"""
[clarion]
database_url = "sqlite:///{tmp / "logins.db"}"
port = {port}
[desk]
login_max_failures = 100000000
[channels.preview]
kind = "preview"
"""
    (tmp / "clarion.toml").write_text(text)
    store = open_store(f"sqlite:///{tmp / 'logins.db'}")
    accounts.add_user(store, "eddie", "a right password", "editor", datetime.now(UTC), by="bench")
    store.close()
    clarion = str(Path(sys.executable).with_name("clarion"))
    return subprocess.Popen(
        [clarion, "web", "--config", str(tmp / "clarion.toml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )


def main(rounds: int = 5, per_round: int = 500) -> None:
    tmp = Path(tempfile.mkdtemp())
    port = _port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp, port)
    try:
        with httpx.Client(timeout=60) as http:
            for _ in range(100):
                try:
                    http.get(f"{base}/healthz")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            _p99(http, f"{base}/healthz", 50)  # warm up
            idle, flooded, answered = [], [], []
            for _ in range(rounds):
                idle.append(_p99(http, f"{base}/healthz", per_round))
                seconds = 4 * per_round * idle[-1] + 10  # outlasts the measurement
                helper = subprocess.Popen(
                    [sys.executable, __file__, "--flood", base, str(seconds)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                time.sleep(3)  # every client has started and is waiting on its check
                flooded.append(_p99(http, f"{base}/healthz", per_round))
                out, _ = helper.communicate(timeout=seconds + 60)
                answered.append(out.strip())
    finally:
        proc.terminate()
        proc.wait(10)
    base_p99, mine = sorted(idle)[rounds // 2], sorted(flooded)[rounds // 2]
    print(f"\nDesk login flood: /healthz p99, {FLOOD} clients failing (median of {rounds})\n")
    print(f"{'':44}{'p99 ms':>10}{'ratio':>8}")
    print(f"{'idle (baseline)':44}{base_p99 * 1000:10.1f}{1:8.3f}")
    print(f"{'during the flood':44}{mine * 1000:10.1f}{mine / base_p99:8.3f}   (goal: <= 2)")
    print(f"{'':44}answers to the flood, by status, per round: {answered}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--flood"]:
        flood(sys.argv[2], float(sys.argv[3]))
    else:
        main()
