"""Dispatch benchmarks, against a webhook receiver on loopback (uvicorn, in its own process):

1. Throughput: 1,000 queued deliveries drained by one dispatcher, beside a bare httpx loop
   posting the same signed payloads to the same receiver, one after another (the ratio is the
   cost of leases, receipts and the audit trail).
2. Push to delivered: signed notices pushed to `/hooks/NAME` at a steady rate, a worker on
   PostgreSQL woken by NOTIFY, the receiver noting each arrival: p50 and p99 from push to
   arrival, beside the receiver's own round trip at the same rate.
3. Scale-out on PostgreSQL: 400 deliveries to a receiver that takes 20 ms a request, drained by
   1 `clarion worker` and by 4, as separate processes (the ratio of their wall times).

    .venv/bin/python bench/run.py --only dispatch
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.channels import build_channels  # noqa: E402
from clarion.config import parse_config  # noqa: E402
from clarion.delivery.outbox import OUTBOX_CHANNEL  # noqa: E402
from clarion.pipeline import ingest  # noqa: E402
from clarion.runtime import make_dispatcher  # noqa: E402
from clarion.sources.cap import parse_cap  # noqa: E402
from clarion.store import open_store  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PG_URL = os.environ.get(
    "CLARION_BENCH_PG_URL",
    os.environ.get("CLARION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
RECEIVER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    delay = float(sys.argv[2])
    arrivals = []
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        if scope["path"] == "/stats":
            out = json.dumps(arrivals).encode()
        else:
            if delay:
                await asyncio.sleep(delay)
            arrivals.append([time.time(), body.decode(errors="replace")])
            out = b"{}"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
    """
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _receiver(delay: float = 0.0) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port), str(delay)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/stats", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the receiver did not start")


def _config(db: str, hook: str, extra: str = "", hook_extra: str = "") -> str:
    return f"""
[clarion]
database_url = "{db}"
drop_expired = false
allow_networks = ["127.0.0.0/8"]
{extra}
[channels.hook]
kind = "webhook"
url = "{hook}/hook"
secret = {{ env = "BENCH_SECRET" }}
{hook_extra}
[[routes]]
channels = ["hook"]
"""


def _alerts(n: int) -> list[bytes]:
    from run import documents

    return documents(n)


def throughput(n: int = 1000) -> None:
    os.environ["BENCH_SECRET"] = SECRET
    proc, url = _receiver()
    tmp = tempfile.mkdtemp()
    try:
        cfg = parse_config(_config(f"sqlite:///{tmp}/d.db", url), environ={})
        store = open_store(cfg.clarion.database_url)
        chans = build_channels(cfg)
        docs = _alerts(n)
        for i in range(0, n, 100):
            batch = [x for d in docs[i : i + 100] for x in parse_cap(d)]
            ingest(store, cfg, chans, batch, source="bench", include_expired=True)
        with store.read() as conn:
            payloads = [
                r.payload
                for r in conn.execute(sa.text("select payload from deliveries order by notice_id"))
            ]
        payloads = [json.loads(p) if isinstance(p, str) else p for p in payloads]
        from standardwebhooks.webhooks import Webhook

        signer = Webhook(SECRET)
        with httpx.Client(timeout=10) as http:
            start = time.perf_counter()
            for p in payloads:
                body = json.dumps(p)
                msg_id, ts = str(uuid.uuid4()), datetime.now(UTC)
                headers = {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(ts.timestamp())),
                    "webhook-signature": signer.sign(msg_id, ts, body),
                    "content-type": "application/json",
                }
                http.post(f"{url}/hook", content=body, headers=headers).raise_for_status()
            bare = len(payloads) / (time.perf_counter() - start)
        # The dispatcher a worker runs, from the config (which keeps the old alerts: before
        # 2026-11-29 this bench built one that dropped them as expired, and so measured
        # cancelling them, not sending them).
        disp = make_dispatcher(store, cfg, chans)
        before = len(httpx.get(f"{url}/stats").json())
        start = time.perf_counter()
        done = disp.run_until_idle()
        clarion = done / (time.perf_counter() - start)
        arrived = len(httpx.get(f"{url}/stats").json()) - before
        assert done == n and arrived == n, f"dispatched {done} of {n}, {arrived} arrived"
        print(f"\nDispatch throughput: {n:,} deliveries to a loopback webhook receiver, SQLite\n")
        print(f"{'':34}{'deliveries/s':>13}{'ratio':>8}")
        print(f"{'bare httpx loop (baseline)':34}{bare:13,.0f}{1:8.3f}")
        print(f"{'clarion dispatcher':34}{clarion:13,.0f}{clarion / bare:8.3f}")
    finally:
        proc.terminate()


def _pg_schema() -> tuple[str, str] | None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
    except Exception as exc:
        print(f"\nPostgreSQL unavailable at {PG_URL}: {exc}; skipping the PostgreSQL benchmarks")
        return None
    sep = "&" if "?" in PG_URL else "?"
    return schema, f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def _drop(schema: str) -> None:
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _workers(cfg_path: Path, n: int) -> list[subprocess.Popen[bytes]]:
    clarion = str(Path(sys.executable).with_name("clarion"))
    env = {**os.environ, "BENCH_SECRET": SECRET}
    return [
        subprocess.Popen(
            [clarion, "worker", "--config", str(cfg_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(cfg_path.parent / f"worker{i}.log", "w"),
        )
        for i in range(n)
    ]


def _wait_started(logs: Path, n: int, timeout: float = 60.0) -> None:
    """Until each of the n workers has logged that it started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all("started" in (logs / f"worker{i}.log").read_text() for i in range(n)):
            return
        time.sleep(0.05)
    raise RuntimeError(f"workers did not start within {timeout:.0f} s (see {logs}/worker*.log)")


def scale_out(n: int = 400) -> None:
    pg = _pg_schema()
    if pg is None:
        return
    schema, url_db = pg
    proc, url = _receiver(delay=0.020)
    tmp = Path(tempfile.mkdtemp())
    os.environ["BENCH_SECRET"] = SECRET
    results: dict[str, float] = {}
    try:
        # One delivery in flight per worker measures what more workers add; then one worker
        # with the webhook's default (8 in flight).
        one_at_a_time = tmp / "one.toml"
        one_at_a_time.write_text(_config(url_db, url, hook_extra="max_in_flight = 1"))
        default = tmp / "default.toml"
        default.write_text(_config(url_db, url))
        cfg = parse_config(one_at_a_time.read_text(), environ={})
        store = open_store(url_db)
        chans = build_channels(cfg)
        docs = _alerts(3 * n)
        runs = [
            ("1 worker, 1 in flight", 1, one_at_a_time),
            ("4 workers, 1 in flight", 4, one_at_a_time),
            ("1 worker, 8 in flight", 1, default),
        ]
        for i_run, (label, workers, cfg_path) in enumerate(runs):
            part = docs[i_run * n : (i_run + 1) * n]
            with store.write() as conn:
                conn.execute(sa.text("delete from channels"))  # no leftover rate state
            for i in range(0, n, 100):
                batch = [x for d in part[i : i + 100] for x in parse_cap(d)]
                ingest(store, cfg, chans, batch, source="bench", include_expired=True)
            # The workers start (importing Clarion takes a second or more of CPU each, which
            # four processes on two cores share) with the deliveries held back; the clock
            # starts when every worker is up and the deliveries are released: what is measured
            # is how fast the workers drain the queue, not how fast Python starts.
            with store.write() as conn:
                conn.execute(
                    sa.text("update deliveries set next_attempt_at = :later"),
                    {"later": datetime.now(UTC) + timedelta(days=1)},
                )
            procs = _workers(cfg_path, workers)
            try:
                _wait_started(cfg_path.parent, workers)
                start = time.perf_counter()
                with store.write() as conn:
                    conn.execute(
                        sa.text("update deliveries set next_attempt_at = :now"),
                        {"now": datetime.now(UTC)},
                    )
                    conn.execute(sa.text(f"NOTIFY {OUTBOX_CHANNEL}"))
                while True:
                    with store.read() as conn:
                        left = conn.execute(
                            sa.text("select count(*) from deliveries where state <> 'sent'")
                        ).scalar_one()
                    if left == 0:
                        break
                    time.sleep(0.05)
                results[label] = time.perf_counter() - start
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(10)
        with store.read() as conn:
            sent = conn.execute(sa.text("select count(*) from deliveries")).scalar_one()
        arrivals = httpx.get(f"{url}/stats").json()
        assert sent == 3 * n and len(arrivals) == 3 * n, "every delivery exactly once"
        print(f"\nScale-out on PostgreSQL: {n} deliveries each run, receiver takes 20 ms\n")
        print(f"{'':26}{'seconds':>9}{'deliveries/s':>14}{'speed-up':>10}")
        base = results["1 worker, 1 in flight"]
        for label, secs in results.items():
            print(f"{label:26}{secs:9.2f}{n / secs:14,.0f}{base / secs:10.2f}")
        print(f"(no delivery sent twice: {len(arrivals)} arrivals for {sent} deliveries)")
    finally:
        proc.terminate()
        _drop(schema)


def push_latency(count: int = 200, rate: float = 20.0) -> None:
    pg = _pg_schema()
    if pg is None:
        return
    schema, url_db = pg
    proc, url = _receiver()
    tmp = Path(tempfile.mkdtemp())
    os.environ["BENCH_SECRET"] = SECRET
    os.environ["BENCH_PUSH_SECRET"] = SECRET
    web_port = _port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cfg_path = tmp / "clarion.toml"
        extra = f"port = {web_port}"
        cfg_path.write_text(
            _config(url_db, url, extra)
            + '[sources.ops]\nkind = "push"\nsecret = { env = "BENCH_PUSH_SECRET" }\n'
        )
        clarion = str(Path(sys.executable).with_name("clarion"))
        env = {**os.environ}
        procs.append(
            subprocess.Popen(
                [clarion, "web", "--config", str(cfg_path)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        procs += _workers(cfg_path, 1)
        base = f"http://127.0.0.1:{web_port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        from standardwebhooks.webhooks import Webhook

        signer = Webhook(SECRET)
        sent_at: dict[str, float] = {}
        baseline: list[float] = []
        with httpx.Client(timeout=10) as http:
            for i in range(count):
                ident = f"bench-{uuid.uuid4()}"
                body = json.dumps(
                    {
                        "identifier": ident,
                        "sent": datetime.now(UTC).isoformat(),
                        "headline": f"Bench notice {i}",
                        "severity": "minor",
                    }
                )
                msg_id, ts = str(uuid.uuid4()), datetime.now(UTC)
                headers = {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(ts.timestamp())),
                    "webhook-signature": signer.sign(msg_id, ts, body),
                    "content-type": "application/json",
                }
                sent_at[ident] = time.time()
                r = http.post(f"{base}/hooks/ops", content=body, headers=headers)
                r.raise_for_status()
                t0 = time.perf_counter()
                http.get(f"{url}/stats?ping=1")
                baseline.append(time.perf_counter() - t0)
                time.sleep(max(0.0, 1 / rate - (time.perf_counter() - t0)))
        deadline = time.monotonic() + 60
        latencies: list[float] = []
        while time.monotonic() < deadline:
            arrivals = httpx.get(f"{url}/stats").json()
            latencies = []
            for at, body in arrivals:
                try:
                    ident = json.loads(body)["data"]["identifier"]
                except (ValueError, KeyError, TypeError):
                    continue
                if ident in sent_at:
                    latencies.append(at - sent_at[ident])
            if len(latencies) >= count:
                break
            time.sleep(0.2)

        def pct(values: list[float], q: int) -> float:
            return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000

        print(
            f"\nPush to delivered: {count} signed pushes at {rate:g}/s, `clarion web` + one "
            "`clarion worker` on PostgreSQL (woken by NOTIFY)\n"
        )
        print(f"{'':36}{'p50 ms':>9}{'p99 ms':>9}")
        print(
            f"{'receiver round trip (baseline)':36}{pct(baseline, 50):9.1f}{pct(baseline, 99):9.1f}"
        )
        print(f"{'push → delivered':36}{pct(latencies, 50):9.1f}{pct(latencies, 99):9.1f}")
        print(f"({len(latencies)} of {count} delivered)")
        if len(latencies) < count:
            raise RuntimeError(f"only {len(latencies)} of {count} pushes were delivered in 60 s")
    finally:
        for p in procs:
            p.terminate()
        proc.terminate()
        _drop(schema)


def backlog(small: int = 100, large: int = 10_000, claims: int = 30) -> None:
    """A claim's cost with a small queue and with a large one (after an outage, say): the
    deliveries are copies of 100 ingested ones, each copy a story of its own, all due, claimed
    16 at a time and put back; the ratio is the figure (1.0: a claim costs the same whatever
    the backlog)."""
    from clarion.delivery import outbox

    os.environ["BENCH_SECRET"] = SECRET
    results = {}
    for size in (small, large):
        tmp = tempfile.mkdtemp()
        cfg = parse_config(_config(f"sqlite:///{tmp}/b.db", "http://127.0.0.1:9"), environ={})
        store = open_store(cfg.clarion.database_url)
        chans = build_channels(cfg)
        docs = _alerts(100)
        ingest(store, cfg, chans, [x for d in docs for x in parse_cap(d)], source="bench")
        with store.write() as conn:
            # Each copy is a story of its own (its own thread), as a real backlog is.
            tcols = (
                "source, state, latest_version, latest_notice_id, headline, severity, status, "
                "created_at, updated_at"
            )
            dcols = (
                "notice_id, channel, version, msg_type, payload, cost, severity_rank, "
                "attempts, next_attempt_at, created_at, updated_at, state"
            )
            for copy in range(1, size // 100):
                conn.execute(
                    sa.text(
                        f"insert into threads (thread_key, {tcols}) "
                        f"select thread_key || '#{copy}', {tcols} from threads "
                        "where thread_key not like '%#%'"
                    )
                )
                conn.execute(
                    sa.text(
                        f"insert into deliveries (id, part, thread_id, {dcols}) "
                        f"select d.id || '-{copy}', {copy}, t2.id, "
                        + ", ".join(
                            # queued a second apart, as polls are: older copies first
                            f"strftime('%Y-%m-%d %H:%M:%f', d.next_attempt_at, '-{copy} seconds')"
                            if c.strip() == "next_attempt_at"
                            else f"d.{c.strip()}"
                            for c in dcols.split(",")
                        )
                        + " from deliveries d join threads t on t.id = d.thread_id "
                        f"join threads t2 on t2.thread_key = t.thread_key || '#{copy}' "
                        "where d.part = 0"
                    )
                )
        outbox.ensure_channels(store, {"hook": "webhook"}, datetime.now(UTC))
        start = time.perf_counter()
        for _ in range(claims):
            taken = outbox.claim(store, "bench", datetime.now(UTC), 60, 16)
            assert len(taken) == 16
            with store.write() as conn:  # put them back, due again
                conn.execute(
                    sa.text(
                        "update deliveries set state = 'pending', lease_owner = null "
                        "where state = 'sending'"
                    )
                )
        results[size] = (time.perf_counter() - start) / claims
        store.close()
    print(f"\nA claim of 16 with a small and a large backlog, SQLite ({claims} claims each)\n")
    print(f"{'':32}{'ms a claim':>11}{'ratio':>8}")
    print(f"{f'{small:,} queued (baseline)':32}{results[small] * 1000:11.2f}{1:8.2f}")
    print(
        f"{f'{large:,} queued':32}{results[large] * 1000:11.2f}"
        f"{results[large] / results[small]:8.2f}"
    )


def main() -> None:
    throughput()
    backlog()
    push_latency()
    scale_out()


if __name__ == "__main__":
    main()
