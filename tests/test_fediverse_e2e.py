"""End to end against a real ActivityPub implementation the project did not write: Fedify
(`@fedify/fedify` from npm, run with Node.js on loopback; tests/e2e/fedify_follower.mjs).

Fedify discovers Clarion's account through WebFinger, follows it (Clarion verifies Fedify's
signature and answers with a signed Accept, which Fedify verifies), then receives a signed
Create for a new notice and an Update of the same Note for its update.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarion.channels.base import close_all
from clarion.delivery.dispatcher import Dispatcher
from clarion.fediverse import accounts
from clarion.store import Store
from clarion.web.app import create_app
from tests.browser import serve
from tests.helpers import NOW, channels_for, config, demo_cap, ingest_bytes

E2E = Path(__file__).parent / "e2e"
NODE = shutil.which("node")

if NODE is None or not (E2E / "node_modules" / "@fedify" / "fedify").exists():
    if os.environ.get("CI"):  # pragma: no cover - .ci/run installs it
        raise RuntimeError("Node.js or tests/e2e/node_modules is missing: .ci/run installs them")
    pytest.skip(  # pragma: no cover
        "needs Node.js and `npm ci --prefix tests/e2e` (Fedify)", allow_module_level=True
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Events:
    """The Fedify process's JSON lines, read as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        assert proc.stdout is not None
        stdout = proc.stdout

        def read() -> None:
            for line in stdout:
                if line.startswith("{"):
                    self.lines.put(json.loads(line))

        threading.Thread(target=read, daemon=True).start()

    def wait(self, **match: Any) -> dict[str, Any]:
        for e in self.seen:
            if all(e.get(k) == v for k, v in match.items()):
                return e
        while True:
            try:
                e = self.lines.get(timeout=30)
            except queue.Empty:
                raise AssertionError(f"Fedify never reported {match}; saw {self.seen}") from None
            self.seen.append(e)
            if all(e.get(k) == v for k, v in match.items()):
                return e


@pytest.fixture
def fedify() -> Iterator[tuple[int, Any]]:
    port = _free_port()
    procs: list[subprocess.Popen[str]] = []

    def start(target: str) -> Events:
        proc = subprocess.Popen(
            [str(NODE), str(E2E / "fedify_follower.mjs"), str(port), target],
            cwd=E2E,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return Events(proc)

    yield port, start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)
        if p.stdout:
            p.stdout.close()


def test_fedify_follows_and_receives_create_and_update(sqlite_store: Store, fedify: Any) -> None:
    fport, start = fedify
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = config(f"""
[clarion]
public_url = "{base}"
publisher_name = "Helena Water Utility"
drop_expired = false
[channels.fedi]
kind = "activitypub"
username = "alerts"
summary = "Water service alerts"
[[routes]]
channels = ["fedi"]
""")
    chans = channels_for(cfg)
    try:
        with serve(create_app(sqlite_store, cfg, chans), port=port):
            events = start(f"{base}/ap/alerts")
            found = events.wait(event="found")
            assert found["actor"] == f"{base}/ap/alerts"  # discovered through WebFinger
            accepted = events.wait(event="inbox", type="Accept")
            assert accepted["actor"] == f"{base}/ap/alerts"
            reader = f"http://127.0.0.1:{fport}/users/reader"
            (f,) = accounts.list_followers(sqlite_store, "alerts")
            assert f.actor == reader and f.delivery_inbox == f"http://127.0.0.1:{fport}/inbox"

            disp = Dispatcher(sqlite_store, chans, clock=lambda: NOW)
            ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
            assert disp.run_until_idle() == 1
            create = events.wait(event="inbox", type="Create")
            assert create["object"] == f"{base}/ap/alerts/notes/1"
            assert "Flash Flood Watch" in create["content"]
            ingest_bytes(sqlite_store, cfg, chans, demo_cap(1))
            assert disp.run_until_idle() == 1
            update = events.wait(event="inbox", type="Update")
            assert update["object"] == create["object"]  # the same Note, edited
            assert "UPDATE" in update["content"]
    finally:
        close_all(chans)
