"""The images a notice carries (CAP resources), fetched for channels that can attach them.

An image that cannot be fetched, is not an image, or is too large is left out with a log
line: an alert never waits for, or fails because of, its picture. The description the
publisher gave becomes the alt text.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from clarion.model import Notice
from clarion.net import bounded_get

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Image:
    data: bytes
    mime_type: str
    alt: str


def image_resources(
    notice: Notice, languages: tuple[str, ...], limit: int
) -> list[tuple[str, str]]:
    """(uri, alt text) of the notice's images, for platforms that fetch an image themselves."""
    info = notice.info(languages)
    if info is None:
        return []
    found = [
        (res.uri, res.description)
        for res in info.resources
        if res.uri and res.mime_type.startswith("image/") and res.uri.startswith("https://")
    ]
    return found[:limit]


def with_card(
    resources: list[tuple[str, str]],
    notice: Notice,
    languages: tuple[str, ...],
    permalink: str | None,
    card: tuple[Any, str] | None,
    limit: int,
) -> list[tuple[str, str]]:
    """For platforms that fetch images by URL: the alert card first (Clarion serves it at the
    notice's address + `/card.png`) when `card` is (time zone, publisher) and the notice has
    shapes, then the resources."""
    if card is None or not permalink:
        return resources[:limit]
    from clarion.render.card import card_alt

    alt = card_alt(notice, languages, card[0])
    if alt is None:
        return resources[:limit]
    return [(f"{permalink}/card.png", alt), *resources][:limit]


# Pillow's names for the formats platforms take, and their MIME types.
ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
MAX_PIXELS = 40_000_000  # an image that decodes larger than this is a decompression bomb


def check_image(data: bytes) -> str:
    """The MIME type of `data`, read from the bytes themselves; ValueError saying why they are
    not an image a platform can show (an HTML page served as image/jpeg, a truncated file, a
    decompression bomb). The type a CAP resource *declares* is never trusted."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as img:
            kind = img.format or ""
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ValueError(f"{width}x{height} pixels, over {MAX_PIXELS:,}")
            img.verify()  # reads the whole file: a truncated or corrupt one fails here
    except UnidentifiedImageError:
        head = data[:40].lstrip().lower()
        what = "an HTML page" if head.startswith((b"<!doctype html", b"<html")) else "no image"
        raise ValueError(f"the bytes are {what}, not an image") from None
    except (OSError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise ValueError(f"the image cannot be decoded ({exc})") from None
    if kind not in ACCEPTED:
        raise ValueError(f"{kind or 'an unknown'} image, not one platforms take")
    return ACCEPTED[kind]


MAX_DOWNLOAD = 20 * 1024 * 1024  # an image larger than a platform takes is shrunk, up to this


def fit_image(data: bytes, mime: str, max_bytes: int) -> tuple[bytes, str]:
    """`data` within the platform's size limit: as it is when it fits, else re-encoded as JPEG
    and scaled down step by step until it does (a map of a warning is worth posting smaller,
    not leaving out). ValueError when even a small version does not fit."""
    if len(data) <= max_bytes:
        return data, mime
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as img:
        img.load()
        picture = img.convert("RGB")
    for _ in range(12):
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=85, optimize=True)
        if out.tell() <= max_bytes:
            return out.getvalue(), "image/jpeg"
        width, height = picture.size
        if width < 64 or height < 64:
            break
        picture = picture.resize((int(width * 0.7), int(height * 0.7)))
    raise ValueError(f"cannot be made to fit {max_bytes:,} bytes")


def fetch_images(
    http: httpx.Client,
    notice: Notice,
    languages: tuple[str, ...],
    *,
    limit: int,
    max_bytes: int,
    who: str,
    card: tuple[Any, str] | None = None,
) -> list[Image]:
    """The images to attach: the alert card first when `card` is (time zone, publisher) and
    the notice has shapes, then its CAP resources, `limit` in all."""
    info = notice.info(languages)
    if info is None:
        return []
    out: list[Image] = []
    if card is not None:
        from clarion.render.card import alert_card

        tz, publisher = card
        try:
            drawn = alert_card(notice, languages, tz, publisher)
            if drawn is not None:
                data, mime = fit_image(drawn.data, "image/png", max_bytes)
                out.append(Image(data, mime, drawn.alt))
        except (ValueError, OSError) as exc:
            log.warning("%s: the alert card was left out: %s", who, exc)
    for res in info.resources:
        if len(out) == limit or not res.uri or not res.mime_type.startswith("image/"):
            continue
        try:
            resp = bounded_get(http, res.uri, max_bytes=MAX_DOWNLOAD, seconds=30)
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            mime = check_image(resp.content)  # what the bytes are, not what was declared
            data, mime = fit_image(resp.content, mime, max_bytes)
            out.append(Image(data, mime, res.description))
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("%s: image %s left out: %s", who, res.uri, exc)
    return out
