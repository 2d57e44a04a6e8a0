"""The REST API: notices with versions and deliveries, filters and cursors, write endpoints
for keys with the write scope, access tiers with 429s, `clarion keys`, and the SSE stream."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clarion.cli import app as cli
from clarion.delivery.dispatcher import Dispatcher
from clarion.keys import create_key, revoke_key
from clarion.store import Store
from clarion.web.app import create_app
from tests.helpers import NOW, channels_for, config, demo_cap, ingest_bytes, rows

PREVIEW = """
[channels.preview]
kind = "preview"
statuses = ["actual", "test"]
[[routes]]
channels = ["preview"]
"""


def _app(store: Store, extra: str = "") -> tuple[Any, Any]:
    cfg = config(PREVIEW + extra)
    chans = channels_for(cfg)
    return create_app(store, cfg, chans), chans


def _fill(store: Store) -> None:
    cfg = config(PREVIEW)
    chans = channels_for(cfg)
    for i in range(3):  # each version is sent before the next arrives
        ingest_bytes(store, cfg, chans, demo_cap(i))
        Dispatcher(store, chans, clock=lambda: NOW).run_until_idle()
    ingest_bytes(store, cfg, chans, demo_cap(3), source="amber")
    Dispatcher(store, chans, clock=lambda: NOW).run_until_idle()


def test_notices_with_versions_deliveries_and_cursor_pages(store: Store) -> None:
    _fill(store)
    app, _ = _app(store)
    with TestClient(app) as client:
        first = client.get("/api/v1/notices", params={"limit": 1}).json()
        assert [t["headline"] for t in first["items"]] == ["Amber Alert in Washington D.C."]
        second = client.get(
            "/api/v1/notices", params={"limit": 1, "cursor": first["next_cursor"]}
        ).json()
        [flood] = second["items"]
        assert second["next_cursor"] is None
        assert [v["msg_type"] for v in flood["versions"]] == ["alert", "update", "cancel"]
        assert flood["state"] == "cancelled" and flood["url"].endswith("/notices/1")
        assert [d["state"] for d in flood["deliveries"]] == ["sent"] * 3
        assert flood["versions"][0]["notice"]["infos"][0]["event"] == "Flash Flood Watch"
        assert client.get("/api/v1/notices/1").json()["id"] == 1
        assert client.get("/api/v1/notices/99").status_code == 404
        only = client.get("/api/v1/notices", params={"area": "MTZ014"}).json()["items"]
        assert [t["id"] for t in only] == [1]
        assert client.get("/api/v1/notices", params={"cursor": "!!"}).status_code == 422
        ds = client.get("/api/v1/deliveries", params={"limit": 2}).json()
        rest = client.get("/api/v1/deliveries", params={"cursor": ds["next_cursor"]}).json()
        ids = [d["id"] for d in ds["items"] + rest["items"]]
        assert len(ids) == len(set(ids)) == 4  # every delivery once across the pages
        assert client.get("/api/v1/channels").json()[0]["name"] == "preview"


HOUR = 1_800_000_000  # a clock-hour boundary (the windows are clock hours)


def test_the_61st_anonymous_request_in_an_hour_is_refused(store: Store) -> None:
    app, _ = _app(store)
    app.state.limiter.clock = lambda: HOUR + 100.0
    with TestClient(app) as client:
        for i in range(60):
            r = client.get("/api/v1/sources")
            assert r.status_code == 200
            assert r.headers["RateLimit-Remaining"] == str(59 - i)
        r = client.get("/api/v1/sources")
        assert r.status_code == 429
        assert r.headers["RateLimit-Limit"] == "60" and r.headers["RateLimit-Remaining"] == "0"
        assert r.headers["Retry-After"] == "3500"  # when this clock hour ends
        assert r.headers["RateLimit-Policy"] == "60;w=3600"
        assert "an API key raises it" in r.json()["detail"]
    app.state.limiter.clock = lambda: HOUR + 3600.0  # the next hour: a new window
    with TestClient(app) as client:
        assert client.get("/api/v1/sources").headers["RateLimit-Remaining"] == "59"


def test_the_hourly_limit_holds_across_web_replicas(store: Store) -> None:
    """Two `clarion web` processes on one database: 60 an hour in all, not 60 each."""
    first, _ = _app(store)
    second, _ = _app(store)
    for app in (first, second):
        app.state.limiter.clock = lambda: HOUR + 10.0
    with TestClient(first) as a, TestClient(second) as b:
        for _ in range(30):
            assert a.get("/api/v1/sources").status_code == 200
            assert b.get("/api/v1/sources").status_code == 200
        assert a.get("/api/v1/sources").status_code == 429
        assert b.get("/api/v1/sources").status_code == 429
        assert a.get("/feeds/all.atom").status_code == 200  # feeds are not the API
        # A key is counted on its own, not with the address it comes from.
        _, token = create_key(store, "app", datetime.now(UTC))
        ok = a.get("/api/v1/sources", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.headers["RateLimit-Limit"] == "5000"


def test_keys_public_service_unknown_and_revoked(store: Store) -> None:
    app, _ = _app(store, "[api]\nanonymous_per_hour = 2\nkey_per_hour = 3\n")
    now = datetime.now(UTC)
    std, std_token = create_key(store, "std", now)
    _, ps_token = create_key(store, "broadcaster", now, tier="public_service")
    with TestClient(app) as client:
        codes = [
            client.get("/api/v1/channels", headers={"X-API-Key": std_token}).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        for _ in range(10):
            r = client.get("/api/v1/channels", headers={"Authorization": f"Bearer {ps_token}"})
            assert r.status_code == 200 and r.headers["RateLimit-Policy"] == "unlimited"
        bad = client.get("/api/v1/channels", headers={"Authorization": "Bearer clk_x_y"})
        assert bad.status_code == 401
        revoke_key(store, std.id, now)
        gone = client.get("/api/v1/channels", headers={"X-API-Key": std_token})
        assert gone.status_code == 401 and "revoked" in gone.json()["detail"]


def test_clients_behind_a_trusted_proxy_are_counted_apart(store: Store) -> None:
    app, _ = _app(store, "[api]\nanonymous_per_hour = 1\ntrust_proxy = true\n")
    with TestClient(app) as client:
        a = {"X-Forwarded-For": "203.0.113.7"}
        b = {"X-Forwarded-For": "198.51.100.9, 203.0.113.8"}
        assert client.get("/api/v1/sources", headers=a).status_code == 200
        assert client.get("/api/v1/sources", headers=a).status_code == 429
        assert client.get("/api/v1/sources", headers=b).status_code == 200


def test_write_endpoints_need_a_write_key_and_go_through_the_pipeline(store: Store) -> None:
    app, chans = _app(store)
    now = datetime.now(UTC)
    _, reader = create_key(store, "reader", now)
    _, writer = create_key(store, "cad", now, write=True, trusted=True)
    body = {
        "headline": "Boil water notice for Zone 3",
        "description": "A main broke on Elm St.",
        "instruction": "Boil tap water for one minute before drinking.",
        "severity": "moderate",
        "categories": ["Health"],
        "areas": [{"description": "Zone 3", "geocodes": [{"name": "ZONE", "value": "3"}]}],
    }
    with TestClient(app) as client:
        assert client.post("/api/v1/notices", json=body).status_code == 401
        r = client.post("/api/v1/notices", json=body, headers={"X-API-Key": reader})
        assert r.status_code == 403
        w = {"Authorization": f"Bearer {writer}"}
        r = client.post("/api/v1/notices", json=body, headers=w)
        assert r.status_code == 201, r.text
        thread = r.json()
        assert thread["source"] == "api" and [d["state"] for d in thread["deliveries"]] == [
            "pending"
        ]
        tid = thread["id"]
        Dispatcher(store, chans).run_until_idle()
        upd = client.post(
            f"/api/v1/notices/{tid}/update",
            json={**body, "headline": "Boil water notice extended to Zone 4"},
            headers=w,
        )
        assert upd.status_code == 200 and upd.json()["versions"][1]["msg_type"] == "update"
        Dispatcher(store, chans).run_until_idle()
        can = client.post(f"/api/v1/notices/{tid}/cancel", json={"note": "Lifted"}, headers=w)
        assert can.status_code == 200 and can.json()["state"] == "cancelled"
        again = client.post(f"/api/v1/notices/{tid}/cancel", json={}, headers=w)
        assert again.status_code == 409
        bad = client.post("/api/v1/notices", json={"headline": ""}, headers=w)
        assert bad.status_code == 422
        Dispatcher(store, chans).run_until_idle()
        sent = client.get(f"/api/v1/notices/{tid}").json()["deliveries"]
        assert [d["state"] for d in sent] == ["sent", "sent", "sent"]
        assert client.get("/feeds/all.atom", params={"area": "ZONE=3"}).text.count("<entry>") == 3


def test_a_write_key_follows_the_desks_approval_unless_trusted(store: Store) -> None:
    """One key must not publish or retract an Actual alert alone: a write key's notices that
    need a second person wait at the desk; only trusted automation skips it (and is audited)."""
    from clarion.desk import accounts, drafts
    from clarion.store.schema import audit_log, threads

    app, chans = _app(store)
    now = datetime.now(UTC)
    _, plain = create_key(store, "partner", now, write=True)
    _, robot = create_key(store, "cad", now, write=True, trusted=True)
    approver = accounts.add_user(store, "ada", "correct horse battery", "approver", now, by="t")
    body = {"headline": "Boil water notice for Zone 3", "severity": "moderate"}
    with TestClient(app) as client:
        held = client.post("/api/v1/notices", json=body, headers={"X-API-Key": plain})
        assert held.status_code == 202, held.text
        assert held.json()["state"] == "awaiting_approval"
        assert rows(store, threads) == []  # nothing published yet
        d = drafts.approve(store, config(PREVIEW), chans, held.json()["draft"], approver, now=now)
        assert d.state == "sent"
        [thread] = rows(store, threads)
        assert thread.source == "api"  # still the API's own story
        # Its cancel through the same key waits for a second person too.
        r = client.post(
            f"/api/v1/notices/{thread.id}/cancel", json={}, headers={"X-API-Key": plain}
        )
        assert r.status_code == 202
        assert client.get(f"/api/v1/notices/{thread.id}").json()["state"] == "active"
        # Trusted automation publishes at once, and the audit log says so.
        auto = client.post("/api/v1/notices", json=body, headers={"X-API-Key": robot})
        assert auto.status_code == 201
    log = [(r.actor, r.action) for r in rows(store, audit_log)]
    assert ("api:cad", "api_publish") in log and ("api:partner", "compose") in log


def test_a_write_key_changes_only_what_the_api_wrote(store: Store) -> None:
    """A story belongs to its source: the API's write key can update or cancel the API's own
    notices, not a source's (a polled CAP alert here), and a follow-up keeps its status."""
    app, _ = _app(store)
    cfg = config(PREVIEW)
    ingest_bytes(store, cfg, channels_for(cfg), demo_cap(0))
    _, writer = create_key(store, "desk", datetime.now(UTC), write=True, trusted=True)
    w = {"Authorization": f"Bearer {writer}"}
    body = {"headline": "All clear", "severity": "minor"}
    with TestClient(app) as client:
        tid = client.get("/api/v1/notices").json()["items"][0]["id"]
        for action, payload in (("update", body), ("cancel", {"note": "x"})):
            r = client.post(f"/api/v1/notices/{tid}/{action}", json=payload, headers=w)
            assert r.status_code == 403 and "belongs to source" in r.json()["detail"]
        assert client.get(f"/api/v1/notices/{tid}").json()["state"] == "active"
        own = client.post("/api/v1/notices", json=body, headers=w).json()["id"]
        drill = client.post(
            f"/api/v1/notices/{own}/update", json={**body, "status": "exercise"}, headers=w
        )
        assert drill.status_code == 409 and "actual" in drill.json()["detail"]


def test_keys_command(tmp_path: Path) -> None:
    path = tmp_path / "clarion.toml"
    path.write_text(f'[clarion]\ndatabase_url = "sqlite:///{tmp_path / "c.db"}"\n')
    runner = CliRunner()
    r = runner.invoke(cli, ["keys", "list", "--config", str(path)])
    assert r.exit_code == 0 and "No API keys" in r.stdout
    r = runner.invoke(cli, ["keys", "create", "radio", "--write", "--config", str(path)])
    assert r.exit_code == 0 and r.stdout.startswith("clk_") and "cannot be shown again" in r.stderr
    token = r.stdout.strip()
    key_id = token.removeprefix("clk_").split("_")[0]
    r = runner.invoke(cli, ["keys", "list", "--config", str(path)])
    assert f"{key_id}  radio  read,write  standard  active" in r.stdout
    assert token not in r.stdout
    r = runner.invoke(cli, ["keys", "revoke", key_id, "--config", str(path)])
    assert r.exit_code == 0
    r = runner.invoke(cli, ["keys", "revoke", key_id, "--config", str(path)])
    assert r.exit_code == 1 and "no active API key" in r.stderr


@pytest.fixture
def served(store: Store) -> Any:
    yield from _serve(store)


@pytest.fixture
def pg_served() -> Any:
    """The API on PostgreSQL only: what it is tested for cannot happen on SQLite."""
    from clarion.store import open_store
    from tests.conftest import pg_schema_url

    for url in pg_schema_url():
        store = open_store(url)
        try:
            for served in _serve(store):
                yield (*served, store)
        finally:
            store.close()


def _serve(store: Store) -> Any:
    cfg = config(PREVIEW + "[api]\nstream_poll = 0.05\n")
    chans = channels_for(cfg)
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, cfg, chans), host="127.0.0.1", port=0, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", cfg, chans
    server.should_exit = True
    thread.join(10)


def _events(lines: Any, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    event: dict[str, Any] = {}
    for line in lines:
        if line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])
        elif line == "" and event:
            out.append(event)
            event = {}
            if len(out) == n:
                return out
    return out


def test_stream_sends_new_notices_and_resumes_after_last_event_id(
    served: Any, store: Store
) -> None:
    url, cfg, chans = served
    with httpx.Client(timeout=10) as http, http.stream("GET", f"{url}/api/v1/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        assert next(lines) == ": connected"  # subscribed: what arrives now is sent
        ingest_bytes(store, cfg, chans, demo_cap(0))
        ingest_bytes(store, cfg, chans, demo_cap(1))
        got = _events(lines, 2)
    assert [e["data"]["msg_type"] for e in got] == ["alert", "update"]
    assert got[0]["data"]["cap_url"].endswith("/notices/1/v1.cap")
    first = got[0]["id"]
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", f"{url}/api/v1/stream", headers={"Last-Event-ID": first}) as resp,
    ):
        [again] = _events(resp.iter_lines(), 1)
    assert again["id"] == got[1]["id"]  # nothing missed, nothing repeated


@pytest.mark.postgres
def test_the_stream_misses_no_notice_committed_after_a_later_one(
    pg_served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a notice's id is taken at its insert and seen at its commit: an ingest
    still running commits a lower id after another ingest's higher one is seen. The stream
    moved past it and never sent it. It now sends notices in id order, waiting while an ingest
    that may still commit a lower id is running; a rolled-back ingest's id holds nothing up."""
    from clarion.store import public

    url, cfg, chans, store = pg_served
    polled = threading.Condition()
    polls = [0]
    real = public.notices_after

    def counted(*a: Any, **k: Any) -> Any:
        out = real(*a, **k)
        with polled:
            polls[0] += 1
            polled.notify_all()
        return out

    monkeypatch.setattr(public, "notices_after", counted)

    def two_polls() -> None:  # the stream has read the store after what was just committed
        with polled:
            target = polls[0] + 2
            assert polled.wait_for(lambda: polls[0] >= target, timeout=10)

    inside, release = threading.Event(), threading.Event()

    def slow(conn: Any, result: Any) -> None:
        inside.set()
        assert release.wait(10)

    def first() -> None:
        ingest_bytes(store, cfg, chans, demo_cap(0), source="a", within=slow)

    with httpx.Client(timeout=10) as http, http.stream("GET", f"{url}/api/v1/stream") as resp:
        lines = resp.iter_lines()
        assert next(lines) == ": connected"
        a = threading.Thread(target=first)
        a.start()
        assert inside.wait(10)  # source a's notice is inserted, not committed
        ingest_bytes(store, cfg, chans, demo_cap(0), source="b")  # committed, a higher id
        two_polls()
        release.set()
        a.join(10)
        got = _events(lines, 2)
        assert [e["data"]["notice"]["source"] for e in got] == ["a", "b"]
        assert int(got[0]["id"]) < int(got[1]["id"])

        def fails(conn: Any, result: Any) -> None:
            raise RuntimeError("this ingest fails: its notice id is never committed")

        with pytest.raises(RuntimeError):
            ingest_bytes(store, cfg, chans, demo_cap(1), source="a", within=fails)
        ingest_bytes(store, cfg, chans, demo_cap(1), source="b")
        [after_gap] = _events(lines, 1)
        assert after_gap["data"]["notice"]["source"] == "b"
        assert int(after_gap["id"]) > int(got[1]["id"]) + 1  # past the rolled-back id


@pytest.mark.postgres
def test_the_stream_waits_for_a_missing_id_only_so_long(
    pg_served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingests that overlap without end must not hold the stream back for ever: after
    `STREAM_GAP_WAIT` it moves past an id an ingest still holds (here 0.3 s)."""
    from clarion.store import public

    monkeypatch.setattr(public, "STREAM_GAP_WAIT", 0.3)
    url, cfg, chans, store = pg_served
    inside, release = threading.Event(), threading.Event()

    def slow(conn: Any, result: Any) -> None:
        inside.set()
        assert release.wait(20)

    a = threading.Thread(
        target=lambda: ingest_bytes(store, cfg, chans, demo_cap(0), source="a", within=slow)
    )
    try:
        with httpx.Client(timeout=10) as http, http.stream("GET", f"{url}/api/v1/stream") as resp:
            lines = resp.iter_lines()
            assert next(lines) == ": connected"
            a.start()
            assert inside.wait(10)
            ingest_bytes(store, cfg, chans, demo_cap(0), source="b")
            [got] = _events(lines, 1)  # sent while source a's ingest still runs
            assert got["data"]["notice"]["source"] == "b"
            assert a.is_alive()
    finally:
        release.set()
        a.join(10)
