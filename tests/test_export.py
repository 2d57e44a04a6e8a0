"""`clarion export`: the static copy is the server's own bytes, URL for URL; a second export
writes nothing; after a change, only what changed is written; to an S3-compatible store (moto's
standalone server on loopback, spoken to by boto3), only what changed is uploaded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clarion.cli import app
from clarion.config import ConfigError, parse_config
from clarion.export import MANIFEST, export, public_urls
from clarion.store import Store
from clarion.web.app import create_app
from tests.helpers import NOW, channels_for, config, demo_cap, fixture_bytes, ingest_bytes

CONFIG = """
[clarion]
public_url = "https://alerts.example.org"
drop_expired = false
[channels.preview]
kind = "preview"
[channels.fedi]
kind = "activitypub"
username = "alerts"
[[routes]]
channels = ["preview", "fedi"]
"""


def _site(store: Store, steps: int = 2):  # type: ignore[no-untyped-def]
    cfg = config(CONFIG)
    chans = channels_for(cfg)
    for i in range(steps):
        ingest_bytes(store, cfg, chans, demo_cap(i), now=NOW)
    return cfg


def test_the_export_is_what_the_server_serves(sqlite_store: Store, tmp_path: Path) -> None:
    from clarion.delivery.dispatcher import Dispatcher

    cfg = _site(sqlite_store)
    chans = channels_for(cfg)
    hurricane = fixture_bytes("cap/nws_multiple_polygons.cap")  # has shapes: an alert card
    ingest_bytes(sqlite_store, cfg, chans, hurricane, now=NOW, include_expired=True)
    for ch in chans.values():  # the fediverse account keeps its followers in the store
        if hasattr(ch, "use_store"):
            ch.use_store(sqlite_store)
    Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
    out = tmp_path / "site"
    first = export(sqlite_store, cfg, str(out))
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(manifest) == sorted(public_urls(sqlite_store, cfg)) and first.failed == []
    assert {"/", "/notices/1", "/notices/1/v2.cap", "/feeds/all.atom", "/sitemap.xml"} <= set(
        manifest
    )
    assert "/notices/2/card.png" in manifest and "/notices/1/card.png" not in manifest
    # The fediverse account's documents that are the same for every reader.
    assert {"/ap/alerts/outbox", "/ap/alerts/notes/1", "/nodeinfo/2.1"} <= set(manifest)
    assert manifest["/ap/alerts/notes/1"]["file"] == "ap/alerts/notes/1.json"
    with TestClient(create_app(sqlite_store, cfg), base_url="https://alerts.example.org") as c:
        for url, item in manifest.items():
            served = c.get(url)
            assert served.status_code == 200, url
            assert (out / item["file"]).read_bytes() == served.content, url
            assert served.headers["content-type"] == item["content_type"]
    assert first.written == len(manifest)
    sitemap = (out / "sitemap.xml").read_text()
    assert "<loc>https://alerts.example.org/notices/1</loc>" in sitemap
    assert "Sitemap: https://alerts.example.org/sitemap.xml" in (out / "robots.txt").read_text()

    again = export(sqlite_store, cfg, str(out))
    assert (again.written, again.unchanged) == (0, len(manifest))
    ingest_bytes(sqlite_store, cfg, channels_for(cfg), demo_cap(2), now=NOW)  # the cancel
    after = export(sqlite_store, cfg, str(out))
    # The notice's page and CAP, its new version, the lists, the feeds and the sitemap moved;
    # nothing else was rewritten.
    assert 0 < after.written < len(manifest) and after.removed == 0
    assert (out / "notices/1/v3.cap").exists()


def test_the_export_command_and_its_config(sqlite_store: Store, tmp_path: Path) -> None:
    cfg = _site(sqlite_store, 1)
    toml = tmp_path / "clarion.toml"
    db = sqlite_store.engine.url.database
    toml.write_text(
        f'[clarion]\ndatabase_url = "sqlite:///{db}"\npublic_url = "https://alerts.example.org"\n'
        f'[export]\ntarget = "{tmp_path / "out"}"\n'
    )
    r = CliRunner().invoke(app, ["export", "--config", str(toml)])
    assert r.exit_code == 0, r.output
    assert "written, 0 unchanged, 0 removed" in r.output
    assert (tmp_path / "out" / "index.html").read_bytes().startswith(b"<!doctype html>")
    with pytest.raises(ConfigError) as bad:
        parse_config('[export]\ntarget = "s3://"\n', environ={})
    assert bad.value.problems == [
        "export.target: s3://… needs a bucket: s3://bucket or s3://bucket/prefix"
    ]
    assert cfg is not None


def test_workers_export_on_every_change(sqlite_store: Store, tmp_path: Path) -> None:
    from clarion.runtime import export_loop

    cfg = _site(sqlite_store, 1)
    out = tmp_path / "live"
    cfg = cfg.model_copy(
        update={"export": cfg.export.model_copy(update={"target": str(out), "interval": 0.05})}
    )
    stop = threading.Event()
    loop = threading.Thread(target=export_loop, args=(sqlite_store, cfg, {}, stop), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 30  # a hang detector, not a timing
        while not (out / "notices/1/index.html").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not (out / "notices/1/v2.cap").exists()
        ingest_bytes(sqlite_store, cfg, channels_for(cfg), demo_cap(1), now=NOW)
        while not (out / "notices/1/v2.cap").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (out / "notices/1/v2.cap").exists()
    finally:
        stop.set()
        loop.join(30)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's standalone S3-compatible server, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for var, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    import boto3
    import botocore.exceptions

    client = boto3.client("s3", endpoint_url=url)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="alerts")
            break
        except botocore.exceptions.EndpointConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)  # the server is starting
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_to_s3_only_what_changed_is_uploaded(sqlite_store: Store, s3: str) -> None:
    import boto3

    cfg = _site(sqlite_store)
    client = boto3.client("s3", endpoint_url=s3)
    first = export(sqlite_store, cfg, "s3://alerts/site", endpoint_url=s3)
    urls = public_urls(sqlite_store, cfg)
    assert first.written == len(urls) and first.failed == []
    page = client.get_object(Bucket="alerts", Key="site/notices/1")
    assert page["ContentType"].startswith("text/html")
    with TestClient(create_app(sqlite_store, cfg), base_url="https://alerts.example.org") as c:
        assert page["Body"].read() == c.get("/notices/1").content
        cap = client.get_object(Bucket="alerts", Key="site/notices/1/v2.cap")["Body"].read()
        assert cap == c.get("/notices/1/v2.cap").content
    stamps = {
        o["Key"]: o["LastModified"]
        for o in client.list_objects_v2(Bucket="alerts", Prefix="site/")["Contents"]
    }
    again = export(sqlite_store, cfg, "s3://alerts/site", endpoint_url=s3)
    assert (again.written, again.unchanged) == (0, len(urls))
    ingest_bytes(sqlite_store, cfg, channels_for(cfg), demo_cap(2), now=NOW)
    after = export(sqlite_store, cfg, "s3://alerts/site", endpoint_url=s3)
    assert 0 < after.written < len(urls) + 1
    now = {
        o["Key"]: o["LastModified"]
        for o in client.list_objects_v2(Bucket="alerts", Prefix="site/")["Contents"]
    }
    untouched = [k for k in stamps if now[k] == stamps[k]]
    assert "site/notices/1/v1.cap" in untouched and "site/favicon.ico" in untouched
    assert "site/notices/1/v3.cap" in now
    assert os.environ["AWS_ACCESS_KEY_ID"] == "test"
