"""The PostgreSQL server restarts while the dispatcher is delivering: nothing is lost, the
dispatcher carries on by itself once the server is back, and any resend carries the same
`webhook-id` (receivers drop it). The server restarted is a throwaway one the test starts
(tests/pgserver.py), never the machine's own."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.delivery.dispatcher import Dispatcher
from clarion.pipeline import ingest
from clarion.sources.cap import parse_cap
from clarion.store import open_store
from clarion.store.schema import deliveries
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.webhook import WebhookReceiver
from tests.helpers import config, demo_cap
from tests.pgserver import Server, server_bin, throwaway_postgres

NOTICES = 120

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pg() -> Iterator[Server]:
    """A PostgreSQL of the test's own, which it may restart: never the machine's cluster."""
    if server_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs PostgreSQL: its initdb and pg_ctl must be here")
        pytest.skip("no PostgreSQL server installed here (initdb, pg_ctl)")
    with throwaway_postgres() as server:
        yield server


def test_a_database_restart_mid_dispatch_loses_nothing(
    pg: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_url = pg.url
    monkeypatch.setenv("HOOK_SECRET", WEBHOOK_SECRET)
    restarted = threading.Event()
    restart_done = threading.Event()
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        at_restart = {"received": 0}

        def restart() -> None:
            at_restart["received"] = len(receiver.received)
            pg.restart()
            restart_done.set()

        def restart_once(_: str) -> None:
            if len(receiver.received) >= 20 and not restarted.is_set():
                restarted.set()
                threading.Thread(target=restart, daemon=True).start()
            time.sleep(0.03)  # a receiver that takes its time: the restart lands mid-dispatch

        receiver.on_receive = restart_once
        cfg = config(f"""
[clarion]
database_url = "{pg_url}"
drop_expired = false
lease_seconds = "2s"
heartbeat_seconds = "0.5s"
[channels.hook]
kind = "webhook"
url = "{receiver.url}"
secret = {{ env = "HOOK_SECRET" }}
[[routes]]
channels = ["hook"]
""")
        store = open_store(pg_url)
        chans = build_channels(cfg)
        base = demo_cap(0)
        notices = []
        for i in range(NOTICES):
            body = base.replace(b"MT</identifier>", f"MT-{i}</identifier>".encode())
            notices.extend(parse_cap(body))
        ingest(store, cfg, chans, notices, source="nws", include_expired=True)
        disp = Dispatcher(store, chans, lease_seconds=2, heartbeat_seconds=0.5, drop_expired=False)
        disp.limiters.clear()
        stop = threading.Event()
        worker = threading.Thread(target=disp.run_forever, args=(stop, 0.2), daemon=True)
        worker.start()
        try:
            deadline = time.monotonic() + 120
            sent = 0
            while time.monotonic() < deadline:
                if restart_done.is_set() and pg.ready():
                    try:
                        with store.read() as conn:
                            sent = conn.execute(
                                select(func.count())
                                .select_from(deliveries)
                                .where(deliveries.c.state == "sent")
                            ).scalar_one()
                    except Exception:
                        sent = 0  # still coming back
                    if sent == NOTICES:
                        break
                time.sleep(0.2)
        finally:
            stop.set()
            worker.join(30)
            close_all(chans)
        assert restart_done.is_set(), "the restart never happened"
        assert sent == NOTICES, f"only {sent} of {NOTICES} deliveries ended sent"
        # The restart did land mid-dispatch: deliveries were still queued when it began.
        assert 20 <= at_restart["received"] < NOTICES
        with store.read() as conn:
            ids = {r.id for r in conn.execute(select(deliveries.c.id))}
        store.close()
    received = {r["id"] for r in receiver.received}
    assert received == ids  # every delivery arrived; a resend repeats its own id only


def test_a_killed_backend_costs_no_push(pg: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Security item 12: a pooled PostgreSQL connection whose backend was killed (kill -9,
    the OOM killer) made `clarion web` answer a push 500: PostgreSQL resets every connection
    and refuses new ones for a moment while it recovers. A new connection is waited for
    (`Store._connect`), so each push after a kill is stored and answered 202."""
    import json
    import signal

    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from clarion.store.schema import notices
    from clarion.web.app import create_app
    from tests.test_push import CONFIG, NOTICE, signed

    monkeypatch.setenv("PUSH_SECRET", WEBHOOK_SECRET)
    store = open_store(pg.url)
    cfg = config(CONFIG)
    chans = build_channels(cfg)
    admin = sa.create_engine(pg.url, poolclass=sa.pool.NullPool)
    codes = []
    try:
        with TestClient(create_app(store, cfg, chans)) as client:
            for i in range(3):
                body = json.dumps({**NOTICE, "identifier": f"after-kill-{i}"}).encode()
                codes.append(
                    client.post(
                        "/hooks/ops", content=body, headers=signed(body, f"k{i}")
                    ).status_code
                )
                with admin.connect() as conn:  # every other backend: the pool's, as kill -9 would
                    pids = (
                        conn.execute(
                            sa.text(
                                "select pid from pg_stat_activity where pid <> pg_backend_pid() "
                                "and backend_type = 'client backend'"
                            )
                        )
                        .scalars()
                        .all()
                    )
                assert pids
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
        with store.read() as conn:
            stored = conn.execute(select(func.count()).select_from(notices)).scalar_one()
    finally:
        admin.dispose()
        close_all(chans)
        store.close()
    assert codes == [202, 202, 202] and stored == 3
