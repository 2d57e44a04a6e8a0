"""Memory of a running Clarion with 100,000 notices stored: the resident size of `clarion web`
after it has served the page, a feed, the API and the metrics, beside the same process on an
empty database (the baseline, measured in the same run).

The notices are written straight into the tables (one real NWS alert, 100,000 distinct
identifiers), which takes seconds instead of the minutes a full ingest of each would.

    .venv/bin/python bench/run.py --only memory
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.sources.cap import parse_cap  # noqa: E402
from clarion.store import open_store  # noqa: E402
from clarion.store.schema import notice_terms, notices, threads  # noqa: E402
from clarion.store.terms import terms_for  # noqa: E402

PATHS = ["/", "/feeds/all.atom", "/api/v1/notices?limit=100", "/metrics", "/notices/1"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fill(db: str, n: int) -> None:
    store = open_store(db)
    notice = parse_cap((ROOT / "tests/fixtures/cap/weather.cap").read_bytes())[0]
    data = notice.to_json_dict()
    terms = sorted(terms_for(notice))
    now = datetime.now(UTC)
    batch = 5000
    with store.write() as conn:
        for start in range(0, n, batch):
            ids = range(start + 1, min(n, start + batch) + 1)
            conn.execute(
                sa.insert(threads),
                [
                    {
                        "id": i,
                        "thread_key": f"bench:{i}",
                        "source": "bench",
                        "state": "active",
                        "latest_version": 1,
                        "latest_notice_id": i,
                        "headline": notice.headline,
                        "severity": notice.severity.value,
                        "status": "actual",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                sa.insert(notices),
                [
                    {
                        "id": i,
                        "thread_id": i,
                        "version": 1,
                        "source": "bench",
                        "kind": "cap",
                        "identifier": f"bench-{i}",
                        "sender": notice.sender,
                        "sent": notice.sent,
                        "status": "actual",
                        "msg_type": "alert",
                        "severity": notice.severity.value,
                        "headline": notice.headline,
                        "content_hash": f"{i:064d}",
                        "data": {**data, "identifier": f"bench-{i}"},
                        "signature": "unsigned",
                        "received_at": now,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                sa.insert(notice_terms), [{"notice_id": i, "term": t} for i in ids for t in terms]
            )
    store.close()


def _rss_of_web(cfg_path: Path) -> int:
    port = _port()
    clarion = str(Path(sys.executable).with_name("clarion"))
    proc = subprocess.Popen(
        [clarion, "web", "--config", str(cfg_path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        for _ in range(5):
            for path in PATHS:
                httpx.get(base + path, timeout=60)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return kb * 1024
    finally:
        proc.terminate()
        proc.wait(10)


def main(n: int = 100_000) -> None:
    if not Path("/proc/self/status").exists():
        print("\nMemory: skipped (needs Linux /proc)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="clarion-mem-"))
    try:
        sizes = {}
        for label, count in (("empty database (baseline)", 0), (f"{n:,} notices", n)):
            db = f"sqlite:///{tmp}/{count}.db"
            cfg_path = tmp / f"{count}.toml"
            cfg_path.write_text(f'[clarion]\ndatabase_url = "{db}"\n')
            start = time.perf_counter()
            if count:
                _fill(db, count)
            else:
                open_store(db).close()
            filled = time.perf_counter() - start
            sizes[label] = (_rss_of_web(cfg_path), filled)
        base = sizes["empty database (baseline)"][0]
        print(f"\nMemory of `clarion web` after serving {', '.join(PATHS)} five times each\n")
        print(f"{'':28}{'RSS MiB':>9}{'ratio':>8}")
        for label, (rss, _) in sizes.items():
            print(f"{label:28}{rss / 2**20:9.1f}{rss / base:8.2f}")
        db_size = os.path.getsize(tmp / f"{n}.db") / 2**20
        print(f"(the database with {n:,} notices: {db_size:,.0f} MiB on disk)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
