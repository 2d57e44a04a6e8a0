"""Subscriptions benchmark: one alert to N Web Push subscribers (default 100,000), all matching
it by area code, against a loopback push receiver (uvicorn, its own process, answering 201).

1. Queue: the ingest of the alert (match every subscriber, fix the story's reach, one outbox
   row), on SQLite and on PostgreSQL.
2. Deliver: one worker's dispatcher sending it (each message encrypted for its subscriber,
   RFC 8291, VAPID-signed, `concurrency` 32 in flight), beside the receiver's own throughput: a
   bare httpx loop with the same 32 threads posting bodies of the same size, unencrypted.
3. Shared: on PostgreSQL, the same alert (queued in parts of 5,000) delivered by 1 and by 4
   `clarion worker` processes, the wall time from their start to the last arrival.

    .venv/bin/python bench/run.py --only subscriptions [--subscribers N]
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.channels import build_channels  # noqa: E402
from clarion.config import parse_config  # noqa: E402
from clarion.pipeline import ingest  # noqa: E402
from clarion.runtime import make_dispatcher  # noqa: E402
from clarion.sources.cap import parse_cap  # noqa: E402
from clarion.store import open_store  # noqa: E402
from clarion.store.schema import subscription_terms, subscriptions  # noqa: E402
from clarion.subscriptions.webpush import new_private_key  # noqa: E402

PG_URL = os.environ.get(
    "CLARION_BENCH_PG_URL",
    os.environ.get("CLARION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
RECEIVER = textwrap.dedent(
    """
    import json, sys
    count = 0
    async def app(scope, receive, send):
        global count
        if scope["type"] != "http":
            return
        while True:
            m = await receive()
            if not m.get("more_body"):
                break
        if scope["path"] == "/stats":
            status, out = 200, json.dumps({"count": count}).encode()
        elif scope["path"] == "/reset":
            count, status, out = 0, 200, b"{}"
        else:
            count += 1
            status, out = 201, b""
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": out})
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
    """
)
CONCURRENCY = 32


def _receiver() -> tuple[subprocess.Popen[bytes], str]:
    from dispatch import _port

    port = _port()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/stats", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the receiver did not start")


def _keys(n: int) -> list[tuple[str, str]]:
    """Browser keys (a pool: generating 100,000 P-256 pairs would measure the generator)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = []
    for _ in range(n):
        pub = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
        b64 = base64.urlsafe_b64encode(pub).rstrip(b"=").decode()
        out.append((b64, base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()))
    return out


def _subscribers(store, url: str, n: int) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    keys = _keys(100)
    with store.write() as conn:
        for start in range(0, n, 5000):
            rows = [
                {
                    "id": i + 1,
                    "token_hash": f"{i:064x}",
                    "unsubscribe_key": f"u{i}",
                    "kind": "webpush",
                    "state": "active",
                    "address": f"{url}/push/{i}",
                    "address_key": f"{i:064x}",
                    "p256dh": keys[i % 100][0],
                    "auth": keys[i % 100][1],
                    "interests": {"areas": ["MTZ014"]},
                    "failures": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, min(n, start + 5000))
            ]
            conn.execute(sa.insert(subscriptions), rows)
            conn.execute(
                sa.insert(subscription_terms),
                [
                    {"subscription_id": r["id"], "interest": 0, "term": "area:mtz014", "needed": 1}
                    for r in rows
                ],
            )


def _bare(url: str, n: int, size: int) -> float:
    body = secrets.token_bytes(size)
    with httpx.Client() as client:

        def one(i: int) -> None:
            r = client.post(f"{url}/push/{i}", content=body, headers={"TTL": "60"})
            assert r.status_code == 201

        start = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, range(n)))
        return n / (time.perf_counter() - start)


DAY = timedelta(days=1)


def _recorded(store: object) -> dict[str, int]:
    with store.read() as conn:  # type: ignore[attr-defined]
        return dict(
            conn.execute(
                sa.text("select state, count(*) from subscription_sends group by state")
            ).all()
        )


def run(db_url: str, url: str, n: int) -> tuple[float, float, int]:
    os.environ["BENCH_VAPID"] = new_private_key()
    cfg = parse_config(
        f"""
[clarion]
database_url = "{db_url}"
public_url = "https://alerts.example.org"
drop_expired = false
allow_networks = ["127.0.0.0/8"]
[channels.push]
kind = "webpush"
vapid_private_key = {{ env = "BENCH_VAPID" }}
subject = "mailto:bench@example.org"
concurrency = {CONCURRENCY}
[[routes]]
channels = ["push"]
""",
        environ={},
    )
    store = open_store(db_url)
    chans = build_channels(cfg)
    _subscribers(store, url, n)
    from clarion.demo import DATA, STEPS

    alert = parse_cap((DATA / STEPS[0][0]).read_bytes())
    start = time.perf_counter()
    r = ingest(store, cfg, chans, alert, source="bench", include_expired=True)
    queued = time.perf_counter() - start
    assert r.deliveries == -(-n // 5000), r.deliveries  # in parts of 5,000 (the default)
    httpx.post(f"{url}/reset")
    with store.read() as conn:
        payload = conn.execute(sa.text("select payload from deliveries limit 1")).scalar_one()
    size = len(str(payload)) // 2 + 103  # about the encrypted body's size
    start = time.perf_counter()
    make_dispatcher(store, cfg, chans).run_until_idle()  # the worker's own (from the config)
    sent = time.perf_counter() - start
    got = httpx.get(f"{url}/stats").json()["count"]
    recorded = _recorded(store)
    # Every subscriber once, none twice; an answer lost is sent again at the retry (its Topic
    # replaces a copy): the goal is that none is lost at all on a healthy receiver.
    lost = n - sum(recorded.values())
    print(f"  answers lost on the first pass: {lost} of {n:,} (goal: 0)")
    if lost:
        later = make_dispatcher(store, cfg, chans)
        later.clock = lambda: datetime.now(UTC) + DAY
        later.run_until_idle()  # the retry, as if its backoff had passed
        recorded = _recorded(store)
        got = httpx.get(f"{url}/stats").json()["count"]
    assert got == n and recorded == {"sent": n}, (got, recorded)
    for c in chans.values():
        c.close()
    store.close()
    return queued, n / sent, size


def _pg_url(schema: str) -> str | None:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(f"drop schema if exists {schema} cascade"))
            conn.execute(sa.text(f"create schema {schema}"))
        engine.dispose()
    except Exception as exc:
        print(f"(PostgreSQL skipped: {exc})")
        return None
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def shared(url: str, n: int) -> None:
    """1 and 4 `clarion worker` processes delivering one alert's parts, on PostgreSQL."""
    import uuid

    db = _pg_url("bench_subs_shared")
    if db is None:
        return
    tmp = Path(tempfile.mkdtemp())
    os.environ["BENCH_VAPID"] = new_private_key()
    cfg_path = tmp / "clarion.toml"
    cfg_path.write_text(
        f"""
[clarion]
database_url = "{db}"
public_url = "https://alerts.example.org"
drop_expired = false
allow_networks = ["127.0.0.0/8"]
[channels.push]
kind = "webpush"
vapid_private_key = {{ env = "BENCH_VAPID" }}
subject = "mailto:bench@example.org"
concurrency = {CONCURRENCY}
part_size = 5000
[[routes]]
channels = ["push"]
"""
    )
    cfg = parse_config(cfg_path.read_text(), environ={})
    store = open_store(db)
    chans = build_channels(cfg)
    _subscribers(store, url, n)
    from clarion.demo import DATA, STEPS

    clarion = str(Path(sys.executable).with_name("clarion"))
    times: dict[int, float] = {}
    for workers in (1, 4):
        doc = (
            (DATA / STEPS[0][0])
            .read_bytes()
            .replace(b"</identifier>", f"-{uuid.uuid4().hex[:8]}</identifier>".encode(), 1)
        )
        r = ingest(
            store, cfg, chans, parse_cap(doc), source=f"bench{workers}", include_expired=True
        )
        httpx.post(f"{url}/reset")
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [clarion, "worker", "--config", str(cfg_path)],
                env=dict(os.environ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(workers)
        ]
        try:
            while httpx.get(f"{url}/stats").json()["count"] < n:
                if time.perf_counter() - start > 1200:
                    raise RuntimeError("not delivered in 20 minutes")
                time.sleep(0.1)
            times[workers] = time.perf_counter() - start
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
        assert httpx.get(f"{url}/stats").json()["count"] == n, "a message arrived twice"
        print(f"  {r.deliveries} parts; {workers} worker(s): {times[workers]:.1f} s")
    for c in chans.values():
        c.close()
    store.close()
    print(
        f"\nThe same alert to {n:,} subscribers in parts of 5,000, PostgreSQL, `clarion worker`s\n"
    )
    print(f"{'':40}{'seconds':>10}{'delivered/s':>14}{'speed-up':>10}")
    for w, secs in times.items():
        print(f"{f'{w} worker(s)':40}{secs:>10.1f}{n / secs:>14,.0f}{times[1] / secs:>10.2f}")


def main(n: int = 100_000) -> None:
    proc, url = _receiver()
    try:
        tmp = tempfile.mkdtemp()
        print(f"\nOne alert to {n:,} Web Push subscribers (all matching it), one worker\n")
        print(f"{'':40}{'queued in':>12}{'delivered/s':>14}{'vs receiver':>13}")
        rows = [("SQLite", f"sqlite:///{tmp}/s.db")]
        try:
            engine = sa.create_engine(PG_URL)
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
                conn.execute(sa.text("commit"))
                conn.execute(sa.text("drop schema if exists bench_subs cascade"))
                conn.execute(sa.text("create schema bench_subs"))
                conn.execute(sa.text("commit"))
            engine.dispose()
            sep = "&" if "?" in PG_URL else "?"
            rows.append(("PostgreSQL", f"{PG_URL}{sep}options=-csearch_path%3Dbench_subs"))
        except Exception as exc:
            print(f"(PostgreSQL skipped: {exc})")
        for name, db in rows:
            queued, rate, size = run(db, url, n)
            baseline = _bare(url, min(n, 20_000), size)
            print(f"{name:40}{queued:>10.2f} s{rate:>14,.0f}{rate / baseline:>13.3f}")
            alone = "  receiver alone (bare httpx, 32 threads)"
            print(f"{alone:40}{'':>12}{baseline:>14,.0f}{1:>13.3f}")
        if len(rows) > 1:
            shared(url, n)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
