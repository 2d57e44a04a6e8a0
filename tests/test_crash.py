"""Crash test: a worker SIGKILLed at random moments while delivering 500 notices.

Every delivery must arrive; the Mastodon fake (which honours Idempotency-Key as Mastodon does)
must show no duplicate post; webhook duplicates, if any, must carry the same `webhook-id`.
Each kill lands either at the worst moment, right after a platform has accepted a post and before
the worker has heard back, or at a random time after the worker starts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.config import parse_config
from clarion.pipeline import ingest
from clarion.sources.cap import parse_cap
from clarion.store import open_store
from clarion.store.schema import deliveries, delivery_events
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.webhook import WebhookReceiver
from tests.helpers import demo_cap

NOTICES = 500
KILLS = 20

pytestmark = pytest.mark.slow


class Killer:
    """Kills the current worker when its countdown of platform requests reaches zero."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.countdown: int | None = None
        self.kills = 0
        self.killed: set[int] = set()

    def arm(self, proc: subprocess.Popen[bytes] | None, countdown: int | None) -> None:
        with self.lock:
            self.proc, self.countdown = proc, countdown

    def tick(self, *_: object) -> None:
        with self.lock:
            if self.countdown is None or self.proc is None:
                return
            self.countdown -= 1
            if self.countdown <= 0:
                self._kill()

    def kill_now(self) -> None:
        with self.lock:
            self._kill()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.pid not in self.killed and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.killed.add(self.proc.pid)
            self.kills += 1
        self.countdown = None


def _notices() -> list:
    base = demo_cap(0)
    out = []
    for i in range(NOTICES):
        body = base.replace(b"MT</identifier>", f"MT-{i}</identifier>".encode()).replace(
            b"<headline>Flash Flood Watch", f"<headline>[{i}] Flash Flood Watch".encode()
        )
        out.extend(parse_cap(body))
    return out


def test_sigkill_loop_loses_nothing_and_never_double_posts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(int(os.environ.get("CLARION_CRASH_SEED", "20261127")))
    killer = Killer()
    db = tmp_path / "crash.db"
    with FakeMastodon() as mastodon, WebhookReceiver(WEBHOOK_SECRET) as receiver:
        mastodon.on_create = killer.tick
        receiver.on_receive = killer.tick
        cfg_text = f"""
[clarion]
database_url = "sqlite:///{db}"
drop_expired = false
lease_seconds = "1s"
heartbeat_seconds = "0.25s"
[channels.masto]
kind = "mastodon"
instance = "{mastodon.url}"
token = {{ env = "MASTODON_TOKEN" }}
rate_limit = "off"  # 500 posts in a minute: more than Mastodon allows, and not under test here
[channels.hook]
kind = "webhook"
url = "{receiver.url}"
secret = {{ env = "HOOK_SECRET" }}
[[routes]]
channels = ["masto", "hook"]
"""
        cfg_path = tmp_path / "clarion.toml"
        cfg_path.write_text(cfg_text)
        env = {**os.environ, "MASTODON_TOKEN": mastodon.token, "HOOK_SECRET": WEBHOOK_SECRET}
        cfg = parse_config(cfg_text, environ=env)
        store = open_store(cfg.clarion.database_url)
        monkeypatch.setenv("MASTODON_TOKEN", mastodon.token)
        monkeypatch.setenv("HOOK_SECRET", WEBHOOK_SECRET)
        chans = build_channels(cfg)  # rendering happens at ingest, with the real channels
        result = ingest(store, cfg, chans, _notices(), source="nws", include_expired=True)
        close_all(chans)
        assert result.deliveries == 2 * NOTICES

        log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115
        cmd = [sys.executable, "-m", "clarion", "worker", "--config", str(cfg_path)]

        def remaining() -> int:
            with store.read() as conn:
                return int(
                    conn.execute(
                        select(func.count())
                        .select_from(deliveries)
                        .where(deliveries.c.state != "sent")
                    ).scalar_one()
                )

        rounds = 0
        while killer.kills < KILLS and remaining() > 0:
            rounds += 1
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
            # Every round ends within 40 platform requests, so 20 rounds use at most 800 of
            # the 1,000 deliveries: the kills cannot run out of work to interrupt.
            killer.arm(proc, rng.randint(1, 40))  # right after a platform accepted a post
            timer = None
            if rounds % 2 == 0:  # …or sooner, at a random moment (mid-claim, mid-commit…)
                timer = threading.Timer(rng.uniform(0.2, 2.0), killer.kill_now)
                timer.start()
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:  # the worker runs forever: end this round
                killer.kill_now()
                proc.wait()
            if timer is not None:
                timer.cancel()
        assert killer.kills >= KILLS, f"only {killer.kills} kills happened: the work ran out"

        # Let a worker finish the job, undisturbed.
        killer.arm(None, None)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 180
        while remaining() > 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # waiting for a condition, bounded: not hiding a race
        proc.terminate()
        proc.wait()
        log.close()

        with store.read() as conn:
            states = dict(
                conn.execute(
                    select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
                ).all()
            )
            reclaimed = conn.execute(
                select(func.count())
                .select_from(delivery_events)
                .where(delivery_events.c.detail.like("%expired mid-send%"))
            ).scalar_one()
        assert states == {"sent": 2 * NOTICES}, (
            states,
            (tmp_path / "worker.log").read_text()[-3000:],
        )
        assert reclaimed > 0  # the kills really did land mid-send

        # Mastodon: exactly one post per notice, none twice.
        texts = Counter(s["text"].split("\n", 1)[0] for s in mastodon.statuses.values())
        assert len(mastodon.statuses) == NOTICES
        assert all(n == 1 for n in texts.values()) and len(texts) == NOTICES

        # Webhook: every delivery arrived; any duplicate carries the same webhook-id.
        hook_ids = {r["id"] for r in receiver.received}
        with store.read() as conn:
            expected = {
                r.id
                for r in conn.execute(select(deliveries.c.id).where(deliveries.c.channel == "hook"))
            }
        assert hook_ids == expected
        per_notice: dict[str, set[str]] = {}
        for r in receiver.received:
            per_notice.setdefault(r["body"]["data"]["identifier"], set()).add(r["id"])
        assert len(per_notice) == NOTICES
        assert all(len(ids) == 1 for ids in per_notice.values())
        assert receiver.rejected == []
        store.close()


@pytest.mark.parametrize("in_flight", [1, 8])
def test_a_killed_worker_strands_only_what_it_was_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_flight: int
) -> None:
    """Security item 11: a lane claimed up to ten deliveries under one lease, so a worker
    killed while sending one stranded them all for the whole lease (19 for 60 s, one of them
    started) while the other worker idled. Two workers, 20 queued, the first killed at its
    first send: the survivor delivers everything but what the dead one had in flight, long
    before the lease (120 s) runs out."""
    db = tmp_path / "lanes.db"
    killed = threading.Event()
    first: list[subprocess.Popen[bytes]] = []

    def kill_at_first_send(_: str) -> None:
        if first and not killed.is_set():
            os.kill(first[0].pid, signal.SIGKILL)
            killed.set()

    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.on_receive = kill_at_first_send
        cfg_text = f"""
[clarion]
database_url = "sqlite:///{db}"
drop_expired = false
lease_seconds = "120s"
heartbeat_seconds = "0.25s"
[channels.hook]
kind = "webhook"
url = "{receiver.url}"
secret = {{ env = "HOOK_SECRET" }}
max_in_flight = {in_flight}
[[routes]]
channels = ["hook"]
"""
        (tmp_path / "clarion.toml").write_text(cfg_text)
        env = {**os.environ, "HOOK_SECRET": WEBHOOK_SECRET}
        monkeypatch.setenv("HOOK_SECRET", WEBHOOK_SECRET)
        cfg = parse_config(cfg_text, environ=env)
        store = open_store(cfg.clarion.database_url)
        chans = build_channels(cfg)
        result = ingest(store, cfg, chans, _notices()[:20], source="nws", include_expired=True)
        close_all(chans)
        assert result.deliveries == 20
        cmd = [
            sys.executable,
            "-m",
            "clarion",
            "worker",
            "--config",
            str(tmp_path / "clarion.toml"),
        ]
        log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115
        first.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log))
        assert killed.wait(60), (tmp_path / "worker.log").read_text()[-2000:]
        first[0].wait(10)
        with store.read() as conn:
            stranded = {
                r.id
                for r in conn.execute(
                    select(deliveries.c.id).where(
                        deliveries.c.state == "sending",
                        deliveries.c.lease_owner.like(f"%:{first[0].pid}"),
                    )
                )
            }
            every = {r.id for r in conn.execute(select(deliveries.c.id))}
        assert 1 <= len(stranded) <= in_flight  # only what it had in flight
        survivor = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60  # half the lease: the rest must not wait for it
            while time.monotonic() < deadline:
                if every - stranded <= {r["id"] for r in receiver.received}:
                    break
                time.sleep(0.1)  # waiting for a condition, bounded: not hiding a race
        finally:
            survivor.terminate()
            survivor.wait(30)
            log.close()
            store.close()
        missing = every - stranded - {r["id"] for r in receiver.received}
        assert not missing, (len(missing), (tmp_path / "worker.log").read_text()[-2000:])
