"""A feed's dates as publishers write them, read without guessing.

RSS says RFC 822 and Atom and JSON Feed say RFC 3339, but feeds write what their software
writes: colon offsets in RFC 822 dates (`-04:00`), zone names RFC 822 never had (`CEST`,
`MEST`, `AEST`, `JST`), the generic North American names (`ET`, `PT`), long month names, a
missing comma or a spare one. `email.utils` reads an unknown zone as UTC and says nothing, so
European items sat hours in the future and US ones looked hours old. Here:

- a numeric offset, with or without a colon, and `GMT`/`UTC` before it, is read as written;
- a zone name is read only when it names one offset: RFC 822's own, and the common
  abbreviations in `ZONES`, each checked against the time-zone database (tzdata) in the
  tests; the generic North American names are read in their region's zone at that time
  (`ET` is EST in January and EDT in July);
- any other zone (`IST`: India, Ireland or Israel? `+zz:00`) makes the date unknown: the
  caller then takes the time the item was first seen and marks it estimated;
- a date with no zone at all is UTC, as feedparser and RFC 3339's `-00:00` take it.

`read(text) -> datetime | None` is pure; its rows are feedparser's own date cases (table test).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final
from zoneinfo import ZoneInfo

MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
# Abbreviations with one meaning in feeds, and the offset each stands for (hours). Each is
# checked in the tests against a zone of tzdata that uses it (`CHECKED_IN`).
ZONES: Final[dict[str, float]] = {
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "ETC/GMT": 0, "ETC/UTC": 0,
    "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
    "AKST": -9, "AKDT": -8, "HST": -10, "NST": -3.5, "NDT": -2.5, "ADT": -3,
    "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2, "MET": 1, "MEST": 2,
    "EET": 2, "EEST": 3, "MSK": 3, "SAST": 2,
    "JST": 9, "KST": 9, "HKT": 8, "AWST": 8, "ACST": 9.5, "ACDT": 10.5,
    "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
}  # fmt: skip
CHECKED_IN: Final[dict[str, str]] = {
    "EST": "America/New_York", "EDT": "America/New_York", "CST": "America/Chicago",
    "CDT": "America/Chicago", "MST": "America/Denver", "MDT": "America/Denver",
    "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles", "AKST": "America/Anchorage",
    "AKDT": "America/Anchorage", "HST": "Pacific/Honolulu", "NST": "America/St_Johns",
    "NDT": "America/St_Johns", "ADT": "America/Halifax", "WET": "Europe/Lisbon",
    "WEST": "Europe/Lisbon", "BST": "Europe/London", "CET": "Europe/Paris",
    "CEST": "Europe/Paris", "MET": "MET", "MEST": "MET", "EET": "Europe/Helsinki",
    "EEST": "Europe/Helsinki", "MSK": "Europe/Moscow", "SAST": "Africa/Johannesburg",
    "JST": "Asia/Tokyo", "KST": "Asia/Seoul", "HKT": "Asia/Hong_Kong", "AWST": "Australia/Perth",
    "ACST": "Australia/Adelaide", "ACDT": "Australia/Adelaide", "AEST": "Australia/Sydney",
    "AEDT": "Australia/Sydney", "NZST": "Pacific/Auckland", "NZDT": "Pacific/Auckland",
}  # fmt: skip
# Written without saying standard or daylight: read in the region's zone at that moment.
GENERIC: Final = {
    "AT": "America/Halifax", "ET": "America/New_York", "CT": "America/Chicago",
    "MT": "America/Denver", "PT": "America/Los_Angeles",
}  # fmt: skip

_TIME = r"(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?"
_RFC822 = re.compile(
    r"^(?:[a-z]{2,9}\.?,?\s*)?(?P<d>\d{1,2})\s+(?P<mon>[a-z]{3,9})\.?,?\s+(?P<y>\d{2,4}),?"
    rf"(?:\s+{_TIME})?(?:\s*(?P<z>\S.*))?$",
    re.IGNORECASE,
)
_MONTH_FIRST = re.compile(  # "Thu Aug 30 2012 17:26:16 +0200", asctime "Sun Jan  4 16:29:06 2004"
    r"^(?:[a-z]{2,9},?\s+)?(?P<mon>[a-z]{3,9})\s+(?P<d>\d{1,2}),?\s+"
    rf"(?:(?P<y>\d{{4}})\s+{_TIME}(?:\s*(?P<z>\S.*))?|{_TIME.replace('P<', 'P<a')}"
    r"(?:\s+(?P<az>[+-]\d{4}|[a-z]{1,5}))?\s+(?P<ay>\d{4}))$",
    re.IGNORECASE,
)
_W3DTF = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mon>\d{2})(?:-(?P<d>\d{2}))?)?"
    rf"(?:[T ]{_TIME}(?:\.\d+)?\s*(?P<z>Z|[+-]\d{{2}}:?\d{{2}})?)?$",
    re.IGNORECASE,
)
_OFFSET = re.compile(r"^(?:GMT|UTC|UT)?\s*(?P<sign>[+-])(?P<h>\d{1,2}):?(?P<m>\d{2})?$", re.I)


class UnknownZone(ValueError):
    """A zone is written, and names no one offset."""


def _zone(text: str | None, local: datetime) -> timezone | ZoneInfo:
    if text is None or not text.strip():
        return UTC  # no zone written: UTC, as feedparser takes it
    name = text.strip().upper().strip("()")
    if name in ZONES:
        return timezone(timedelta(hours=ZONES[name]))
    if name in GENERIC:
        return ZoneInfo(GENERIC[name])
    m = _OFFSET.match(name)
    if m is None:
        raise UnknownZone(text)
    hours, minutes = int(m["h"]), int(m["m"] or 0)
    if hours > 23 or minutes > 59:
        raise UnknownZone(text)
    sign = -1 if m["sign"] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _year(text: str) -> int:
    y = int(text)
    if len(text) == 2:  # RFC 2822 section 4.3
        return y + (2000 if y < 50 else 1900)
    if len(text) == 3:
        raise ValueError("a three-digit year")
    return y


def _build(
    y: str, mon: int, d: str | None, h: str | None, mi: str | None, s: str | None, z: str | None
) -> datetime:
    local = datetime(_year(y), mon, int(d or 1), int(h or 0), int(mi or 0), int(s or 0))
    return local.replace(tzinfo=_zone(z, local)).astimezone(UTC)


def _month(name: str) -> int:
    month = MONTHS.get(name[:3].lower())
    if month is None:
        raise ValueError(f"no month {name!r}")
    return month


def read(text: str) -> datetime | None:
    """The moment `text` names, in UTC; None when it cannot be read without guessing."""
    text = " ".join(text.split())
    try:
        if m := _W3DTF.match(text):
            return _build(m["y"], int(m["mon"] or 1), m["d"], m["H"], m["M"], m["S"], m["z"])
        if m := _RFC822.match(text):
            return _build(m["y"], _month(m["mon"]), m["d"], m["H"], m["M"], m["S"], m["z"])
        if m := _MONTH_FIRST.match(text):
            if m["y"]:
                return _build(m["y"], _month(m["mon"]), m["d"], m["H"], m["M"], m["S"], m["z"])
            return _build(m["ay"], _month(m["mon"]), m["d"], m["aH"], m["aM"], m["aS"], m["az"])
    except (ValueError, OverflowError):  # UnknownZone, day 99, hour 25, year 10000…
        return None
    return None
