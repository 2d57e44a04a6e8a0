"""Four `clarion worker` processes on one PostgreSQL database deliver 240 notices to a webhook
receiver (which takes 20 ms per request, so the workers overlap): every delivery is sent,
none twice, and the work is shared. This is the scale-out promise, as processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.config import parse_config
from clarion.manual import NoticeIn, new_alert
from clarion.pipeline import ingest
from clarion.store import open_store
from clarion.store.schema import deliveries, delivery_events
from tests.conftest import WEBHOOK_SECRET, pg_schema_url
from tests.fakes.webhook import WebhookReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
NOTICES = 240


def test_four_worker_processes_never_send_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALE_SECRET", WEBHOOK_SECRET)
    url = next(pg := pg_schema_url())
    try:
        with WebhookReceiver(WEBHOOK_SECRET) as receiver:
            receiver.on_receive = lambda _id: time.sleep(0.02)  # a receiver taking 20 ms
            toml = f"""
[clarion]
database_url = "{url}"
heartbeat_seconds = 2
[channels.partner]
kind = "webhook"
url = "{receiver.url}"
secret = {{ env = "SCALE_SECRET" }}
# One at a time per worker: with several in flight the first worker to start sends them all
# before the others are up, and this is about four sharing the work.
max_in_flight = 1
[[routes]]
channels = ["partner"]
"""
            cfg_path = tmp_path / "clarion.toml"
            cfg_path.write_text(toml)
            env = {
                **os.environ,
                "SCALE_SECRET": WEBHOOK_SECRET,
                "CLARION_ALLOW_NETWORKS": "127.0.0.0/8",
            }
            cfg = parse_config(toml, environ=env)
            store = open_store(url)
            chans = build_channels(cfg)
            notices = [
                new_alert(cfg, NoticeIn(headline=f"Stop {i} closed")) for i in range(NOTICES)
            ]
            ingest(store, cfg, chans, notices, source="api")
            close_all(chans)
            clarion = str(Path(sys.executable).parent / "clarion")
            logs = [open(tmp_path / f"w{i}.log", "w") for i in range(4)]  # noqa: SIM115
            procs = [
                subprocess.Popen(
                    [clarion, "worker", "--config", str(cfg_path)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
                for log in logs
            ]
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    with store.read() as conn:
                        done = conn.execute(
                            select(func.count())
                            .select_from(deliveries)
                            .where(deliveries.c.state == "sent")
                        ).scalar_one()
                    if done == NOTICES:
                        break
                    time.sleep(0.2)  # polling the database for the outcome, bounded above
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(timeout=30)
                for log in logs:
                    log.close()
            assert done == NOTICES, [(tmp_path / f"w{i}.log").read_text()[-500:] for i in range(4)]
            ids = Counter(r["id"] for r in receiver.received)
            assert len(ids) == NOTICES and max(ids.values()) == 1  # no delivery sent twice
            with store.read() as conn:
                by_worker = Counter(
                    r.worker
                    for r in conn.execute(
                        select(delivery_events.c.worker).where(delivery_events.c.to_state == "sent")
                    )
                )
            store.close()
            assert sum(by_worker.values()) == NOTICES
            assert len(by_worker) >= 2  # the work was shared
    finally:
        pg.close()
