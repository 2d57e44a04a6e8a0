"""Images with alt text: the CAP resources of a real tsunami warning, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from tests.conftest import fixture_bytes
from tests.fakes.bluesky import FakePds
from tests.fakes.http import FakeServer, Response
from tests.fakes.x import FakeX
from tests.helpers import NOW, config, demo_cap, ingest_bytes


def _jpeg() -> bytes:
    """A real (tiny) JPEG: images are decoded before they are posted."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


JPEG = _jpeg()
HTML = b"<!doctype html><html><body>Not the map you were looking for</body></html>"
BASE = b"http://newwcatwc.arh.noaa.gov/tsuPortal/events/PAAQ/2011/09/02/lqw6d6/2/WEPA41/"


@pytest.fixture
def warning() -> Iterator[bytes]:
    server = FakeServer(
        lambda req: (
            Response(200, raw=JPEG, content_type="image/jpeg")
            if req.path == "/energy.jpg"
            # A hostile or broken server: an HTML page under an image's name and type.
            else Response(200, raw=HTML, content_type="image/jpeg")
            if req.path == "/page.jpg"
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


def _posted_on_bluesky(
    cap: bytes, store: Store, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], FakePds]:
    """Deliver `cap` to a Bluesky channel on a fake PDS; its one post, and the PDS."""
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
        ingest_bytes(store, cfg, chans, cap)
        Dispatcher(store, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
        close_all(chans)
        [post] = pds.posts.values()
    return post, pds


def test_bluesky_uploads_images_with_alt_text(
    warning: bytes, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    post, pds = _posted_on_bluesky(warning, sqlite_store, monkeypatch)
    embed = post["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    [image] = embed["images"]  # the one that could not be fetched is left out
    assert image["alt"] == "Energy Map"
    assert pds.blobs[image["image"]["ref"]["$link"]] == JPEG


def test_x_uploads_images_with_alt_text(
    warning: bytes, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in {"X_CK": FakeX.CONSUMER_KEY, "X_CS": "cs", "X_AT": "at", "X_ATS": "ats"}.items():
        monkeypatch.setenv(k, v)
    with FakeX() as x:
        cfg = config("""
[clarion]
drop_expired = false
[channels.x]
kind = "x"
consumer_key = { env = "X_CK" }
consumer_secret = { env = "X_CS" }
access_token = { env = "X_AT" }
access_token_secret = { env = "X_ATS" }
[[routes]]
channels = ["x"]
""")
        chans = build_channels(cfg)
        chans["x"].client.session = x.session()  # type: ignore[attr-defined]
        ingest_bytes(sqlite_store, cfg, chans, warning)
        Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
        close_all(chans)
    [post] = x.posts.values()
    [media] = post["media"]  # the image that could not be fetched is left out, not the post
    assert media["bytes"] == JPEG and media["alt"] == "Energy Map"
    assert media["category"] == "tweet_image"


def test_slack_and_discord_show_https_images_they_fetch_themselves(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack and Discord fetch an image from its URL themselves: Clarion sends the URL (https
    only) and, on Slack, the description as the image block's alt text."""
    from tests.fakes.chat import FakeDiscord, FakeSlack

    cap = fixture_bytes("cap/wcatwc-warning.cap").replace(
        BASE + b"2011/09/02/lqw6d6/energylqw6d6-02.jpg", b"https://images.example/energy.jpg"
    )
    with FakeSlack() as slack, FakeDiscord() as discord:
        monkeypatch.setenv("S_URL", slack.url + FakeSlack.PATH)
        monkeypatch.setenv("D_URL", discord.url + FakeDiscord.PATH)
        cfg = config("""
[clarion]
drop_expired = false
[channels.slack]
kind = "slack"
webhook_url = { env = "S_URL" }
[channels.discord]
kind = "discord"
webhook_url = { env = "D_URL" }
[[routes]]
channels = ["slack", "discord"]
""")
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, cap)
        Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
        close_all(chans)
    [s] = slack.posts.values()
    images = [b for b in s["blocks"] if b["type"] == "image"]
    # the other image is on plain http, which Slack would not show: left out
    assert images == [
        {
            "type": "image",
            "image_url": "https://images.example/energy.jpg",
            "alt_text": "Energy Map",
        }
    ]
    [d] = discord.posts.values()
    [embed] = d["embeds"]
    assert embed["image"] == {"url": "https://images.example/energy.jpg"}
    assert embed["footer"]["text"] == "Image: Energy Map"
    assert embed["title"] in d["text"] and embed["url"].startswith("http")
    assert embed["color"] == 0x8B0000  # an extreme tsunami warning


PNG = b"\x89PNG\r\n\x1a\n" + b"thumbnail" * 40


@pytest.mark.parametrize(
    ("page", "thumb"),
    [
        (b'<html><head><meta property="og:image" content="/thumb.png"></head></html>', True),
        (b'<html><head><meta name="twitter:image" content="/thumb.png"></head></html>', True),
        (b"<html><head><title>no preview image</title></head></html>", False),
        (b'<html><head><meta property="og:image" content="/huge.png"></head></html>', False),
        (None, False),  # the page answers 500
    ],
)
def test_bluesky_link_card_thumbnail_from_the_linked_page(
    page: bytes | None, thumb: bool, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def site(req):  # type: ignore[no-untyped-def]
        if req.path.startswith("/notices/"):  # the notice's page: the card's link
            if page is None:
                return Response(500, raw=b"oops", content_type="text/plain")
            return Response(200, raw=page, content_type="text/html; charset=utf-8")
        if req.path == "/thumb.png":
            return Response(200, raw=PNG, content_type="image/png")
        if req.path == "/huge.png":
            return Response(200, raw=b"\x89PNG" + b"x" * 1_100_000, content_type="image/png")
        return Response(404, raw=b"", content_type="text/plain")

    monkeypatch.setenv("B_PASS", FakePds.PASSWORD)
    with FakeServer(site) as server, FakePds() as pds:
        cfg = config(f"""
[clarion]
drop_expired = false
public_url = "{server.url}"
[channels.sky]
kind = "bluesky"
handle = "{FakePds.HANDLE}"
app_password = {{ env = "B_PASS" }}
service = "{pds.url}"
[[routes]]
channels = ["sky"]
""")
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
        Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
        close_all(chans)
    [post] = pds.posts.values()
    external = post["value"]["embed"]["external"]
    assert external["uri"].startswith(f"{server.url}/notices/")
    if thumb:
        assert pds.blobs[external["thumb"]["ref"]["$link"]] == PNG
        assert external["thumb"]["mimeType"] == "image/png"
    else:
        assert "thumb" not in external  # the card goes without one; the post is not held up


def test_matrix_sends_images_as_m_image_events_in_the_alerts_thread(
    warning: bytes, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.chat import FakeMatrix

    monkeypatch.setenv("M_TOKEN", FakeMatrix.TOKEN)
    with FakeMatrix() as matrix:
        cfg = config(f"""
[clarion]
drop_expired = false
[channels.mx]
kind = "matrix"
homeserver = "{matrix.url}"
room_id = "!alerts:example.org"
token = {{ env = "M_TOKEN" }}
[[routes]]
channels = ["mx"]
""")
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, warning)
        disp = Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False)
        disp.run_until_idle()
        close_all(chans)
    text, image = matrix.posts.values()  # the unreachable image is left out
    assert text["msgtype"] == "m.text" and "tsunami" in text["text"].lower()
    assert image["msgtype"] == "m.image" and image["text"] == "Energy Map"  # body: the alt text
    assert image["thread"] == text["id"]
    [media] = matrix.media.values()
    assert image["url"].endswith(next(iter(matrix.media))) and media["bytes"] == JPEG
    assert media["type"] == "image/jpeg"


def test_an_html_page_served_as_an_image_is_left_out(
    warning: bytes, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CAP resource says image/jpeg and the server says image/jpeg; the bytes are an HTML
    page. What the bytes are decides: it is left out (it was posted as an image before)."""
    hostile = warning.replace(b"/gone.jpg", b"/page.jpg")
    post, pds = _posted_on_bluesky(hostile, sqlite_store, monkeypatch)
    [image] = post["value"]["embed"]["images"]
    assert image["alt"] == "Energy Map"
    assert HTML not in pds.blobs.values()


def test_check_image_reads_the_bytes_not_the_label() -> None:
    import io

    from PIL import Image

    from clarion.channels.images import check_image

    assert check_image(JPEG) == "image/jpeg"
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    assert check_image(png.getvalue()) == "image/png"
    for bad, why in (
        (HTML, "an HTML page"),
        (JPEG[: len(JPEG) // 2], "cannot be decoded"),
        (b"\xff\xd8\xff\xe0" + b"junk" * 50, "cannot be decoded"),
    ):
        with pytest.raises(ValueError, match=why):
            check_image(bad)
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, "BMP")
    with pytest.raises(ValueError, match="not one platforms take"):
        check_image(bmp.getvalue())


def test_an_image_too_large_for_the_platform_is_shrunk_to_fit() -> None:
    """A 2,000 × 2,000 photo of noise (megabytes as PNG) fits Bluesky's 1,000,000 bytes once
    re-encoded and scaled down; one that fits is posted as it is."""
    import io
    import os

    from PIL import Image

    from clarion.channels.images import check_image, fit_image

    big = io.BytesIO()
    Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3)).save(big, "PNG")
    assert big.tell() > 1_000_000
    data, mime = fit_image(big.getvalue(), "image/png", 1_000_000)
    assert len(data) <= 1_000_000 and mime == "image/jpeg"
    assert check_image(data) == "image/jpeg"  # still a real, decodable image
    assert fit_image(JPEG, "image/jpeg", 1_000_000) == (JPEG, "image/jpeg")


def test_the_alert_card_is_drawn_and_posted_first_with_alt_text_in_words(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel with `alert_card = true` posts the card (the areas' shapes, headline, severity,
    times) as its first image, its alt text saying in words what it shows; only alerts with
    shapes get one, and channels without the option none."""
    import io

    from PIL import Image as PILImage

    monkeypatch.setenv("B_PASS", FakePds.PASSWORD)
    hurricane = fixture_bytes("cap/nws_multiple_polygons.cap")
    with FakePds() as pds:
        cfg = config(f"""
[clarion]
drop_expired = false
publisher_name = "NWS Lake Charles"
timezone = "America/Chicago"
[channels.sky]
kind = "bluesky"
handle = "{FakePds.HANDLE}"
app_password = {{ env = "B_PASS" }}
service = "{pds.url}"
alert_card = true
card_thumbnail = false
[[routes]]
channels = ["sky"]
""")
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, hurricane, include_expired=True)
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))  # no polygon: no card
        Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
        close_all(chans)
        posts = sorted(pds.posts.values(), key=lambda p: p["value"]["createdAt"])
    with_card = [
        p for p in posts if p["value"].get("embed", {}).get("$type") == "app.bsky.embed.images"
    ]
    assert len(posts) == 2 and len(with_card) == 1
    [image] = with_card[0]["value"]["embed"]["images"]
    alt = image["alt"]
    # (its first post here: the update is worded, and drawn, as a new alert)
    assert alt.startswith("Map of 2 areas under this extreme alert: Acadia.")
    assert "Hurricane Warning" in alt and "In effect until Wed 26 Aug 2020, 12:15 CDT" in alt
    data = pds.blobs[image["image"]["ref"]["$link"]]
    with PILImage.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.size == (1200, 675)
        band = img.convert("RGB").getpixel((5, 5))
        area = img.convert("RGB").getpixel((900, 350))  # inside Acadia's shape
    assert band == (124, 0, 32)  # Extreme's colour
    assert area != (246, 246, 246)  # the shape is drawn, not the empty map


def test_no_card_unless_asked() -> None:
    from clarion.channels.bluesky import BlueskyChannelConfig

    assert BlueskyChannelConfig.model_fields["alert_card"].default is False


def test_a_notice_page_links_its_alert_card_for_link_previews(sqlite_store: Store) -> None:
    """A notice's address shared on a platform unfurls with its alert card (Open Graph), served
    at /notices/N/card.png; a notice without shapes has neither."""
    import io

    from fastapi.testclient import TestClient
    from PIL import Image as PILImage

    from clarion.web.app import create_app

    cfg = config('[clarion]\npublic_url = "https://alerts.example.org"\n')
    hurricane = fixture_bytes("cap/nws_multiple_polygons.cap")
    ingest_bytes(sqlite_store, cfg, {}, hurricane, include_expired=True)
    ingest_bytes(sqlite_store, cfg, {}, demo_cap(0))
    with TestClient(create_app(sqlite_store, cfg)) as client:
        page = client.get("/notices/1").text
        assert (
            '<meta property="og:image" content="https://alerts.example.org/notices/1/card.png">'
            in page
        )
        assert 'og:image:alt" content="Map of the area: Acadia' in page
        card = client.get("/notices/1/card.png")
        assert card.status_code == 200 and card.headers["content-type"] == "image/png"
        with PILImage.open(io.BytesIO(card.content)) as img:
            assert img.size == (1200, 675)
        head = client.head("/notices/1/card.png")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == card.headers["content-length"]
        assert "og:image" not in client.get("/notices/2").text
        assert client.get("/notices/2/card.png").status_code == 404
        assert client.get("/notices/99/card.png").status_code == 404


def test_the_fediverse_note_links_the_alert_card_with_its_alt_text() -> None:
    from clarion.channels.base import RenderContext
    from clarion.sources.cap import parse_cap

    cfg = config("""
[clarion]
public_url = "https://alerts.example.org"
timezone = "America/Chicago"
[channels.fedi]
kind = "activitypub"
username = "alerts"
alert_card = true
[channels.plain]
kind = "activitypub"
username = "plain"
""")
    chans = build_channels(cfg)
    [hurricane] = parse_cap(fixture_bytes("cap/nws_multiple_polygons.cap"))
    ctx = RenderContext(
        languages=("en",), permalink="https://alerts.example.org/notices/7", thread_id=7
    )
    note = chans["fedi"].render(hurricane, ctx).fields["object"]
    first = note["attachment"][0]
    assert first["url"] == "https://alerts.example.org/notices/7/card.png"
    assert first["mediaType"] == "image/png" and first["name"].startswith("Map of 2 areas")
    assert "12:15 CDT" in first["name"]
    assert "attachment" not in chans["plain"].render(hurricane, ctx).fields["object"]
    [watch] = parse_cap(demo_cap(0))  # no shapes: no card
    assert "attachment" not in chans["fedi"].render(watch, ctx).fields["object"]
    close_all(chans)


def test_slack_and_discord_show_the_alert_card_by_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from clarion.channels.base import RenderContext
    from clarion.sources.cap import parse_cap

    monkeypatch.setenv("HOOK", "https://hooks.example.invalid/x")
    cfg = config("""
[clarion]
public_url = "https://alerts.example.org"
[channels.slack]
kind = "slack"
webhook_url = { env = "HOOK" }
alert_card = true
[channels.discord]
kind = "discord"
webhook_url = { env = "HOOK" }
alert_card = true
[channels.plain]
kind = "slack"
webhook_url = { env = "HOOK" }
""")
    chans = build_channels(cfg)
    [hurricane] = parse_cap(fixture_bytes("cap/nws_multiple_polygons.cap"))
    ctx = RenderContext(
        languages=("en",), permalink="https://alerts.example.org/notices/7", thread_id=7
    )
    card = "https://alerts.example.org/notices/7/card.png"
    blocks = chans["slack"].render(hurricane, ctx).fields["blocks"]
    [image] = [b for b in blocks if b["type"] == "image"]
    assert image["image_url"] == card and image["alt_text"].startswith("Map of 2 areas")
    embed = chans["discord"].render(hurricane, ctx).fields["embeds"][0]
    assert embed["image"]["url"] == card
    plain = chans["plain"].render(hurricane, ctx).fields["blocks"]
    assert not [b for b in plain if b["type"] == "image"]
    close_all(chans)
