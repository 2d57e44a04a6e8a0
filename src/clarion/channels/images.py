"""The images a notice carries (CAP resources), fetched for channels that can attach them.

An image that cannot be fetched, is not an image, or is too large is left out with a log
line: an alert never waits for, or fails because of, its picture. The description the
publisher gave becomes the alt text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from clarion.model import Notice

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


def fetch_images(
    http: httpx.Client,
    notice: Notice,
    languages: tuple[str, ...],
    *,
    limit: int,
    max_bytes: int,
    who: str,
) -> list[Image]:
    info = notice.info(languages)
    if info is None:
        return []
    out: list[Image] = []
    for res in info.resources:
        if len(out) == limit or not res.uri or not res.mime_type.startswith("image/"):
            continue
        try:
            resp = http.get(res.uri)
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            if len(resp.content) > max_bytes:
                raise ValueError(f"{len(resp.content):,} bytes, over {max_bytes:,}")
            out.append(Image(resp.content, res.mime_type, res.description))
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("%s: image %s left out: %s", who, res.uri, exc)
    return out
