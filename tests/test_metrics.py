"""`/metrics` (Prometheus, from the database) and `/readyz`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store, open_store
from clarion.web.app import create_app
from tests.helpers import channels_for, config, demo_cap, ingest_bytes

CONFIG = """
[channels.preview]
kind = "preview"
[channels.second]
kind = "preview"
[[routes]]
channels = ["preview", "second"]
"""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_what_the_store_holds(store: Store) -> None:
    from clarion.sources.cap import parse_cap

    cfg = config(CONFIG)
    chans = channels_for(cfg)
    sent = [parse_cap(demo_cap(i))[0].sent for i in (0, 1)]
    stored = [sent[0] + timedelta(seconds=30), sent[1] + timedelta(hours=2)]
    # Stored 30 s after it was sent and delivered 90 s after; the update stored 2 h late.
    ingest_bytes(store, cfg, chans, demo_cap(0), now=stored[0])
    sent_at = sent[0] + timedelta(seconds=90)
    Dispatcher(store, chans, clock=lambda: sent_at).run_until_idle()
    ingest_bytes(store, cfg, chans, demo_cap(1), now=stored[1])  # still queued
    with TestClient(create_app(store, cfg)) as client:
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)
    assert m[("clarion_notices_total", (("source", "nws"),))] == 2
    assert m[("clarion_deliveries", (("channel", "preview"), ("state", "sent")))] == 1
    assert m[("clarion_queue_depth", (("channel", "second"),))] == 1
    # Latencies run from each notice's own `sent` to when it was stored and delivered.
    nws = (("source", "nws"),)
    assert m[("clarion_ingest_latency_seconds_count", nws)] == 2
    expected = sum((b - a).total_seconds() for a, b in zip(sent, stored, strict=True))
    assert abs(m[("clarion_ingest_latency_seconds_sum", nws)] - expected) < 0.01
    preview = (("channel", "preview"),)
    assert m[("clarion_delivery_latency_seconds_count", preview)] == 1
    delivered = (sent_at - sent[0]).total_seconds()
    assert abs(m[("clarion_delivery_latency_seconds_sum", preview)] - delivered) < 0.01
    # Cumulative buckets: the one delivery falls in the first bucket that holds its latency.
    le = [b for b in (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)]
    for b in le:
        got = m[
            ("clarion_delivery_latency_seconds_bucket", (("channel", "preview"), ("le", str(b))))
        ]
        assert got == (1.0 if delivered <= b else 0.0)
    assert m[("clarion_channel_active", (("channel", "preview"), ("state", "active")))] == 1


def test_readyz_says_when_the_schema_is_behind(db_url: str) -> None:
    from alembic import command

    store = open_store(db_url, upgrade=False)
    try:
        command.upgrade(store.alembic_config(), "0004")
        with TestClient(create_app(store, config())) as client:
            r = client.get("/readyz")
            assert r.status_code == 503 and "clarion db upgrade" in r.json()["detail"]
            store.upgrade()
            assert client.get("/readyz").json() == {"status": "ready"}
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        store.close()


def test_every_view_reads_one_channel_state(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`clarion channels`, `clarion status`, the REST API and `/metrics` report a channel's
    state and queue from the same read model (clarion.status.channel_statuses): a channel put
    on hold, with its queue, reads the same everywhere; a channel that never ran says so."""
    from typer.testing import CliRunner

    from clarion.cli import app
    from clarion.delivery import outbox
    from clarion.status import channel_statuses

    db = tmp_path / "c.db"
    toml = tmp_path / "clarion.toml"
    toml.write_text(f'[clarion]\ndatabase_url = "sqlite:///{db}"\n' + CONFIG)
    cfg = config(toml.read_text())
    store = open_store(cfg.clarion.database_url, upgrade=True)
    from clarion.sources.cap import parse_cap

    chans = channels_for(cfg)
    now = parse_cap(demo_cap(1))[0].sent + timedelta(seconds=30)  # while the alert is live
    outbox.ensure_channels(store, {"preview": "preview"}, now)  # "second" never ran
    ingest_bytes(store, cfg, chans, demo_cap(0), now=now)
    ingest_bytes(store, cfg, chans, demo_cap(1), now=now)
    outbox.set_channel_state(store, "preview", "needs_reauth", "token revoked", now)

    [preview, second] = channel_statuses(store, cfg, now)
    assert (preview.state, preview.state_reason, preview.queue) == (
        "needs_reauth",
        "token revoked",
        {"pending": 1, "superseded": 1},  # the update superseded the unsent alert
    )
    assert preview.waiting == 1 and second.state == "not started"

    runner = CliRunner()
    listed = runner.invoke(app, ["channels", "--config", str(toml)])
    assert listed.exit_code == 0, listed.output
    assert "preview (preview): needs_reauth (token revoked); today 0, " in listed.output
    assert "pending 1, superseded 1" in listed.output
    assert "second (preview): not started" in listed.output
    status = runner.invoke(app, ["status", "--config", str(toml)])
    assert "preview (preview): needs_reauth (token revoked); pending 1, superseded 1" in (
        status.output
    )

    with TestClient(create_app(store, cfg)) as client:
        api = {c["name"]: c for c in client.get("/api/v1/channels").json()}
        m = _samples(client.get("/metrics").text)
    assert api["preview"]["state"] == "needs_reauth" and api["second"]["state"] == "not started"
    assert m[("clarion_channel_active", (("channel", "preview"), ("state", "needs_reauth")))] == 0
    assert m[("clarion_queue_depth", (("channel", "preview"),))] == 1
    assert m[("clarion_deliveries", (("channel", "preview"), ("state", "superseded")))] == 1
    store.close()
