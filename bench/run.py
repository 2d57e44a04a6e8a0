"""Clarion's benchmarks: parsers (bench/parsers.py), push latency (bench/push.py), feed serving
beside nginx (bench/feeds.py), and ingest:
10,000 CAP alerts routed to 3 channels, on SQLite and on PostgreSQL.

Prints notices per second for the whole ingest (parse + store + route + render + enqueue) next
to lxml parsing alone, measured in the same run, and their ratio: the machines are noisy, so
only the ratio against a baseline taken minutes apart on the same machine means anything.

    make bench                     # or: .venv/bin/python bench/run.py --only ingest --notices 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.channels import build_channels  # noqa: E402
from clarion.config import parse_config  # noqa: E402
from clarion.pipeline import ingest  # noqa: E402
from clarion.runtime import settle  # noqa: E402
from clarion.sources.cap import parse_cap  # noqa: E402
from clarion.store import open_store  # noqa: E402

TEMPLATES = ["weather.cap", "canada.cap", "nws_multiple_polygons.cap", "wcatwc-warning.cap"]
PG_URL = os.environ.get(
    "CLARION_BENCH_PG_URL",
    os.environ.get("CLARION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

CONFIG = """
[clarion]
database_url = "{url}"
drop_expired = false
[channels.preview]
kind = "preview"
[channels.partners]
kind = "webhook"
url = "http://127.0.0.1:9/unused"
secret = {{ env = "BENCH_SECRET" }}
[channels.mastodon]
kind = "mastodon"
instance = "http://127.0.0.1:9"
token = {{ env = "BENCH_TOKEN" }}
max_characters = 500
[[routes]]
channels = ["preview", "partners", "mastodon"]
"""


def documents(n: int) -> list[bytes]:
    """n distinct CAP documents from real templates, each its own story.

    Each copy gets its own identifier, and so do the messages it references, so that the
    10,000 alerts are 10,000 threads (as in life), not thousands of versions of one thread.
    """
    templates = []
    for name in TEMPLATES:
        body = (ROOT / "tests/fixtures/cap" / name).read_bytes()
        notice = parse_cap(body)[0]
        idents = [notice.identifier] + [r.identifier for r in notice.references]
        templates.append((body, [i.encode() for i in idents]))
    out = []
    for i in range(n):
        body, idents = templates[i % len(templates)]
        for ident in idents:
            body = body.replace(ident, ident + f"-bench{i}".encode())
        out.append(body)
    return out


def bench_lxml(docs: list[bytes]) -> float:
    """lxml parsing the documents: the best of three passes (one pass varied 9,000–17,000/s
    between runs here, which made the ratio move more than any change to ingest)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for d in docs:
            etree.fromstring(d, parser)
        best = max(best, len(docs) / (time.perf_counter() - start))
    return best


class Recorder:
    """What ingest asked of the database: each statement with the parameters its driver got,
    and where each transaction ended, recorded from the engine's events while ingest runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, bool]] = []
        self.on = False

    def attach(self, engine: sa.Engine) -> None:
        def statement(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
            if self.on:
                self.calls.append((sql, params, many))

        def end(word: str) -> Any:
            def listener(_conn: Any) -> None:
                if self.on:
                    self.calls.append((word, None, False))

            return listener

        sa.event.listen(engine, "before_cursor_execute", statement)
        sa.event.listen(engine, "commit", end("COMMIT"))
        sa.event.listen(engine, "rollback", end("ROLLBACK"))


def bench_ingest(docs: list[bytes], url: str, batch: int, record: Recorder | None = None) -> float:
    """Notices per second through parse and ingest; with `record`, what ingest asked of the
    database is recorded too (a pass of its own: recording slowed the timed pass by ~8%)."""
    os.environ["BENCH_SECRET"] = SECRET
    os.environ["BENCH_TOKEN"] = "unused"
    cfg = parse_config(CONFIG.format(url=url), environ={})
    store = open_store(url)
    channels = build_channels(cfg)
    if record is not None:
        record.attach(store.engine)
        record.on = True
    settle()  # as `clarion worker` does once it has loaded its config and channels
    start = time.perf_counter()
    for i in range(0, len(docs), batch):
        notices = [n for d in docs[i : i + batch] for n in parse_cap(d)]
        ingest(store, cfg, channels, notices, source="bench", include_expired=True)
    elapsed = time.perf_counter() - start
    if record is not None:
        record.on = False
    with store.read() as conn:
        queued = conn.execute(sa.text("select count(*) from deliveries")).scalar_one()
    assert queued == 3 * len(docs), f"expected {3 * len(docs)} deliveries, found {queued}"
    store.close()
    return len(docs) / elapsed


def bench_statements(n: int, url: str, record: Recorder) -> float:
    """The database's own work for what ingest stored: the statements ingest ran, with their
    parameters as its driver got them, replayed in order by the bare driver (sqlite3 or
    psycopg) into a new database of the same schema: no parsing, rendering, routing or
    SQLAlchemy. Ingest can go no faster than this on the same database, so its ratio to lxml
    is a ceiling on ingest's."""
    store = open_store(url)  # a new, empty database: its ids come out as ingest's did
    raw = store.engine.raw_connection()  # with the pragmas Clarion's connections get
    try:
        cur = raw.cursor()
        start = time.perf_counter()
        for sql, params, many in record.calls:
            if sql == "COMMIT":
                raw.commit()
            elif sql == "ROLLBACK":
                raw.rollback()
            elif many:
                cur.executemany(sql, params)
            else:
                cur.execute(sql, params)
                if cur.description:
                    cur.fetchall()
        elapsed = time.perf_counter() - start
        cur.execute("select count(*) from deliveries")
        queued = cur.fetchone()[0]
        raw.commit()
    finally:
        raw.close()
        store.close()
    assert queued == 3 * n, f"replay: expected {3 * n} deliveries, found {queued}"
    return n / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notices", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=100, help="notices per poll (one transaction)")
    ap.add_argument(
        "--subscribers", type=int, default=100_000, help="Web Push subscribers of one alert"
    )
    ap.add_argument(
        "--only",
        choices=[
            "ingest",
            "parsers",
            "push",
            "feeds",
            "dispatch",
            "lanes",
            "memory",
            "api",
            "subscriptions",
            "logins",
        ],
        default=None,
    )
    args = ap.parse_args()
    if args.only in (None, "parsers"):
        import parsers

        parsers.main()
    if args.only in (None, "push"):
        import push

        push.main()
    if args.only in (None, "feeds"):
        import feeds

        feeds.main()
    if args.only in (None, "dispatch"):
        import dispatch

        dispatch.main()
    if args.only in (None, "lanes"):
        import lanes

        lanes.main()
    if args.only in (None, "subscriptions"):
        import subscriptions

        subscriptions.main(args.subscribers)
    if args.only in (None, "api"):
        import api

        api.main()
    if args.only in (None, "logins"):
        import logins

        logins.main()
    if args.only in (None, "memory"):
        import memory

        memory.main()
    if args.only not in (None, "ingest"):
        return 0
    print(f"Preparing {args.notices:,} CAP documents from {len(TEMPLATES)} real templates…")
    docs = documents(args.notices)
    rows = []
    baseline = bench_lxml(docs)
    rows.append(("lxml parse alone (baseline)", baseline))
    n = len(docs)
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("ingest, SQLite", bench_ingest(docs, f"sqlite:///{tmp}/a.db", args.batch)))
        record = Recorder()
        bench_ingest(docs, f"sqlite:///{tmp}/b.db", args.batch, record)
        rows += ceiling(baseline, bench_statements(n, f"sqlite:///{tmp}/c.db", record))
    try:
        admin = sa.create_engine(PG_URL)
        with admin.connect():
            pass
    except Exception as exc:
        print(f"PostgreSQL unavailable at {PG_URL}: {exc}; skipping it")
    else:
        with pg_schema(admin) as url:
            rows.append(("ingest, PostgreSQL", bench_ingest(docs, url, args.batch)))
        record = Recorder()
        with pg_schema(admin) as url:
            bench_ingest(docs, url, args.batch, record)
        with pg_schema(admin) as url:
            rows += ceiling(baseline, bench_statements(n, url, record))
        admin.dispose()
    print(f"\n{args.notices:,} CAP alerts, 3 channels, {args.batch} notices per transaction\n")
    print(f"{'':32}{'notices/s':>12}{'vs lxml':>10}")
    for name, rate in rows:
        print(f"{name:32}{rate:12,.0f}{rate / baseline:10.3f}")
    print(
        "\n'its statements alone': the statements that ingest ran, replayed by the bare driver"
        "\ninto a new database (no parsing, rendering or SQLAlchemy): the database's own work"
        "\nfor what ingest stores. 'lxml, then its statements': the two one after the other,"
        "\nthe most an ingest that parses with lxml and stores the same rows could reach."
    )
    return 0


def ceiling(baseline: float, statements: float) -> list[tuple[str, float]]:
    """The replay's rate, and what an ingest that did nothing but parse with lxml and then run
    those statements could reach: the two one after the other, 1 / (1/lxml + 1/statements)."""
    return [
        ("  its statements alone", statements),
        ("  lxml, then its statements", 1 / (1 / baseline + 1 / statements)),
    ]


@contextmanager
def pg_schema(admin: sa.Engine) -> Iterator[str]:
    """A throwaway schema on the PostgreSQL server, dropped afterwards: its URL."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    sys.exit(main())
