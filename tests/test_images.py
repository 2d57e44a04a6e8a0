"""Images with alt text: the CAP resources of a real tsunami warning, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from tests.conftest import fixture_bytes
from tests.fakes.bluesky import FakePds
from tests.fakes.http import FakeServer, Response
from tests.helpers import NOW, config, ingest_bytes

JPEG = b"\xff\xd8\xff\xe0" + b"energy-map" * 60
BASE = b"http://newwcatwc.arh.noaa.gov/tsuPortal/events/PAAQ/2011/09/02/lqw6d6/2/WEPA41/"


@pytest.fixture
def warning() -> Iterator[bytes]:
    server = FakeServer(
        lambda req: (
            Response(200, raw=JPEG, content_type="image/jpeg")
            if req.path == "/energy.jpg"
            else Response(404, raw=b"gone", content_type="text/plain")
        )
    )
    with server:
        cap = fixture_bytes("cap/wcatwc-warning.cap")
        cap = cap.replace(
            BASE + b"2011/09/02/lqw6d6/energylqw6d6-02.jpg", f"{server.url}/energy.jpg".encode()
        )
        cap = cap.replace(
            BASE + b"2011/09/02/lqw6d6/02/ttvulqw6d6-02.jpg", f"{server.url}/gone.jpg".encode()
        )
        yield cap


def test_bluesky_uploads_images_with_alt_text(
    warning: bytes, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B_PASS", FakePds.PASSWORD)
    with FakePds() as pds:
        cfg = config(f"""
[clarion]
drop_expired = false
[channels.sky]
kind = "bluesky"
handle = "{FakePds.HANDLE}"
app_password = {{ env = "B_PASS" }}
service = "{pds.url}"
[[routes]]
channels = ["sky"]
""")
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, warning)
        Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
        close_all(chans)
        [post] = pds.posts.values()
        embed = post["value"]["embed"]
        assert embed["$type"] == "app.bsky.embed.images"
        [image] = embed["images"]  # the one that could not be fetched is left out
        assert image["alt"] == "Energy Map"
        assert pds.blobs[image["image"]["ref"]["$link"]] == JPEG
