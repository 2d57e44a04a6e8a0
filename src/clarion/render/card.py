"""The alert card: one image of an alert for the platforms that carry images, drawn offline
(Pillow, no tiles, no third party): a band in the severity's colour with the severity and the
kind of message, the headline, when it is in effect, the areas' shapes (the same rings as the
page's map), their names, and the publisher. The alt text says in words what it shows.

Only an alert with shapes (polygons or circles) gets a card: without them it would be a picture
of text the post already says.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from clarion.model import MsgType, Notice, Severity, cut
from clarion.render.shapes import rings_of

WIDTH, HEIGHT = 1200, 675  # 16:9, what Mastodon, Bluesky and X show uncropped
BAND = 92
MAP = (660, BAND + 24, WIDTH - 36, HEIGHT - 72)  # left, top, right, bottom
# Each with white text at 4.5:1 or more (WCAG AA).
COLOURS = {
    Severity.EXTREME: (124, 0, 32),
    Severity.SEVERE: (176, 0, 32),
    Severity.MODERATE: (168, 72, 0),
    Severity.MINOR: (0, 94, 140),
    Severity.UNKNOWN: (70, 70, 70),
}
KIND = {
    MsgType.ALERT: "ALERT",
    MsgType.UPDATE: "UPDATE",
    MsgType.CANCEL: "CANCELLED",
    MsgType.END: "ENDED",
}


@dataclass(frozen=True)
class Card:
    data: bytes  # PNG
    alt: str


def _font(size: int, bold: bool = False):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    for name in (
        "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
        if bold
        else "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)  # Pillow's own scalable font


# What a card can show of its text, cut before any layout: a 60,000-character area name made
# the old line trimming (one character at a time, measuring each time) take minutes.
MAX_TITLE = 300
MAX_NAMES = 600


def _fit(draw, text: str, font, width: int) -> str:  # type: ignore[no-untyped-def]
    """The longest start of `text` that fits `width` with an ellipsis, found by bisection
    (log n measurements, not n)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid].rstrip() + "…", font=font) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…"


def _wrap(draw, text: str, font, width: int, lines: int) -> list[str]:  # type: ignore[no-untyped-def]
    out: list[str] = []
    words = text.split()
    line = ""
    for w in words:
        trial = f"{line} {w}".strip()
        if draw.textlength(trial, font=font) <= width:
            line = trial
            continue
        if line:
            out.append(line)
        line = w
        if len(out) == lines:
            break
    if line and len(out) < lines:
        out.append(line)
    out = [x if draw.textlength(x, font=font) <= width else _fit(draw, x, font, width) for x in out]
    if len(out) == lines and " ".join(out) != " ".join(words):
        out[-1] = _fit(draw, out[-1].removesuffix("…"), font, width)
    return out


class CardCache:
    """One card drawn per notice version: the first request draws it, any request for the same
    key meanwhile waits for that drawing instead of starting its own, and the last `size`
    cards are kept. A drawing that raised is forgotten (the next request tries again)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Future[Card | None]] = OrderedDict()
        self.drawn = 0  # how many drawings ran (for tests and metrics)

    def get(self, key: Hashable, draw: Callable[[], Card | None]) -> Card | None:
        with self._lock:
            future = self._entries.get(key)
            mine = future is None
            if future is None:
                future = self._entries[key] = Future()
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        if mine:
            try:
                self.drawn += 1
                future.set_result(draw())
            except BaseException as exc:
                future.set_exception(exc)
                with self._lock:
                    if self._entries.get(key) is future:
                        del self._entries[key]
        return future.result()


def _when(notice: Notice, tz: ZoneInfo) -> str:
    def fmt(t: datetime) -> str:
        local = t.astimezone(tz)
        return local.strftime("%a %d %b %Y, %H:%M ") + (local.tzname() or "")

    if notice.msg_type is MsgType.CANCEL:
        return f"Cancelled {fmt(notice.sent)}"
    if notice.msg_type is MsgType.END:
        return f"Over {fmt(notice.sent)}"
    end = notice.over_at or notice.expires
    return f"In effect until {fmt(end)}" if end else f"Issued {fmt(notice.sent)}"


def alert_card(
    notice: Notice,
    languages: tuple[str, ...] = (),
    tz: ZoneInfo | None = None,
    publisher: str = "",
    headline: str | None = None,
) -> Card | None:
    """The card, or None when the notice has no shapes to draw."""
    from PIL import Image, ImageDraw

    info = notice.info(languages)
    areas = [a.model_dump(mode="json") for a in (info.areas if info else [])]
    rings = rings_of(areas)
    if not rings:
        return None
    tz = tz or ZoneInfo("UTC")
    colour = COLOURS[notice.severity]
    title = headline or (info.headline if info else None) or (info.event if info else "") or ""
    title = cut(title, MAX_TITLE)
    names = [a["description"] for a in areas if a.get("description")]
    when = _when(notice, tz)

    img = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, WIDTH, BAND), fill=colour)
    kind = KIND.get(notice.msg_type, notice.msg_type.value.upper())
    label = f"{notice.severity.value.upper()} · {kind}"
    draw.text((36, BAND // 2), label, font=_font(40, bold=True), fill=(255, 255, 255), anchor="lm")

    y = BAND + 28
    big = _font(44, bold=True)
    for line in _wrap(draw, title, big, MAP[0] - 72, 4):
        draw.text((36, y), line, font=big, fill=(17, 17, 17))
        y += 56
    y += 12
    body = _font(30)
    for line in _wrap(draw, when, body, MAP[0] - 72, 2):
        draw.text((36, y), line, font=body, fill=colour)
        y += 40
    y += 12
    small = _font(26)
    for line in _wrap(draw, cut("; ".join(dict.fromkeys(names)), MAX_NAMES), small, MAP[0] - 72, 5):
        draw.text((36, y), line, font=small, fill=(60, 60, 60))
        y += 34

    # The shapes, in the page map's projection: equirectangular, scaled by cos(mid latitude).
    left, top, right, bottom = MAP
    draw.rectangle(MAP, outline=(200, 200, 200), width=2, fill=(246, 246, 246))
    lats = [p[0] for r in rings for p in r]
    lons = [p[1] for r in rings for p in r]
    kx = math.cos(math.radians((min(lats) + max(lats)) / 2))
    span_x = max((max(lons) - min(lons)) * kx, 1e-6)
    span_y = max(max(lats) - min(lats), 1e-6)
    pad = 24
    scale = min((right - left - 2 * pad) / span_x, (bottom - top - 2 * pad) / span_y)
    ox = left + (right - left - span_x * scale) / 2
    oy = top + (bottom - top - span_y * scale) / 2
    west, north = min(lons), max(lats)
    fill = tuple(int(255 - (255 - c) * 0.3) for c in colour)
    for ring in rings:
        pts = [(ox + (lon - west) * kx * scale, oy + (north - lat) * scale) for lat, lon in ring]
        if len(pts) >= 3:
            draw.polygon(pts, fill=fill, outline=colour, width=3)

    foot = _font(24)
    draw.text((36, HEIGHT - 36), publisher, font=foot, fill=(60, 60, 60), anchor="lm")
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return Card(out.getvalue(), _alt(notice, len(rings), names, title, when))


def _alt(notice: Notice, shapes: int, names: list[str], title: str, when: str) -> str:
    where = cut("; ".join(dict.fromkeys(names)), MAX_NAMES) or "the alert's area"
    alt = (
        f"Map of {shapes} area{'s' if shapes != 1 else ''} under this "
        f"{notice.severity.value} {KIND.get(notice.msg_type, '').lower() or 'notice'}: {where}. "
        f"{cut(title, MAX_TITLE)}. {when}."
    )
    return alt[:1000]


def card_alt(
    notice: Notice, languages: tuple[str, ...] = (), tz: ZoneInfo | None = None
) -> str | None:
    """The card's alt text without drawing it (for a document that links the card by URL);
    None when the notice has no card."""
    info = notice.info(languages)
    areas = [a.model_dump(mode="json") for a in (info.areas if info else [])]
    rings = rings_of(areas)
    if not rings:
        return None
    title = (info.headline if info else None) or (info.event if info else "") or ""
    names = [a["description"] for a in areas if a.get("description")]
    return _alt(notice, len(rings), names, title, _when(notice, tz or ZoneInfo("UTC")))
