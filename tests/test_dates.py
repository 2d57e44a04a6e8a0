"""Feed dates read as written, in every zone that can be read without guessing (issue: "dates
are wrong": a zone `email.utils` does not know was read as UTC and marked certain).

The first table is feedparser's own date cases for the formats feeds use (RFC 822, W3DTF /
RFC 3339, asctime), from kurtmckee/feedparser `tests/test_date_parsers.py` @ a22c5521
(BSD-2-Clause): each expected value is feedparser's, as a UTC time (None: unreadable). Its
Greek, Hungarian, Korean and Perforce forms are not read here (estimated instead)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clarion.sources.dates import CHECKED_IN, GENERIC, ZONES, read
from clarion.sources.feed import parse_feed


def _t(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


FEEDPARSER = [
    ("", None),
    ("Thu, 30 Apr 2015 08:57:00 MET", _t(2015, 4, 30, 7, 57, 0)),
    ("Thu, 30 Apr 2015 08:57:00 MEST", _t(2015, 4, 30, 6, 57, 0)),
    ("Thu, 01 Jan 0100 00:00:01 +0100", _t(99, 12, 31, 23, 0, 1)),
    ("Thu, 01 Jan 04 19:48:21 GMT", _t(2004, 1, 1, 19, 48, 21)),
    ("Thu, 01 Jan 2004 19:48:21 GMT", _t(2004, 1, 1, 19, 48, 21)),
    ("Thu,  5 Apr 2012 10:00:00 GMT", _t(2012, 4, 5, 10, 0, 0)),
    ("Wed, 19 Aug 2009 18:28:00 Etc/GMT", _t(2009, 8, 19, 18, 28, 0)),
    ("Wed, 19 Feb 2012 22:40:00 GMT-01:01", _t(2012, 2, 19, 23, 41, 0)),
    ("Wed, 19 Feb 2012 22:40:00 -01:01", _t(2012, 2, 19, 23, 41, 0)),
    ("Mon, 13 Feb, 2012 06:28:00 UTC", _t(2012, 2, 13, 6, 28, 0)),
    ("Thu, 01 Jan 2004 00:00 GMT", _t(2004, 1, 1, 0, 0, 0)),
    ("Thu, 01 Jan 2004", _t(2004, 1, 1, 0, 0, 0)),
    ("Mon, 26 January 2004 16:31:00 AT", _t(2004, 1, 26, 20, 31, 0)),
    ("Mon, 26 January 2004 16:31:00 ET", _t(2004, 1, 26, 21, 31, 0)),
    ("Mon, 26 January 2004 16:31:00 CT", _t(2004, 1, 26, 22, 31, 0)),
    ("Mon, 26 January 2004 16:31:00 MT", _t(2004, 1, 26, 23, 31, 0)),
    ("Mon, 26 January 2004 16:31:00 PT", _t(2004, 1, 27, 0, 31, 0)),
    ("Thu Aug 30 2012 17:26:16 +0200", _t(2012, 8, 30, 15, 26, 16)),
    ("Fri,24 Nov 2023 18:28:36 -0000", _t(2023, 11, 24, 18, 28, 36)),
    ("Sun, 16 Dec 2012 1:2:3:4 GMT", None),
    ("Sun, 16 zzz 2012 11:47:32 GMT", None),
    ("Sun, Dec x 2012 11:47:32 GMT", None),
    ("Sun, 16 Dec zz 11:47:32 GMT", None),
    ("Sun, 16 Dec 2012 11:47:32 +zz:00", None),
    ("Sun, 16 Dec 2012 11:47:32 +00:zz", None),
    ("Sun, 99 Jun 2009 12:00:00 GMT", None),
    ("Sun, 31 Dec 9999 23:59:59 -9999", None),
    ("Sun Jan  4 16:29:06 2004", _t(2004, 1, 4, 16, 29, 6)),
    ("Sun Jul 15 01:16:00 +0000 2012", _t(2012, 7, 15, 1, 16, 0)),
    ("2003-12-31T10:14:55Z", _t(2003, 12, 31, 10, 14, 55)),
    ("2003-12-31T10:14:55-08:00", _t(2003, 12, 31, 18, 14, 55)),
    ("2003-12-31T18:14:55+08:00", _t(2003, 12, 31, 10, 14, 55)),
    ("2007-04-23T23:25:47.538+10:00", _t(2007, 4, 23, 13, 25, 47)),
    ("2003-12-31", _t(2003, 12, 31, 0, 0, 0)),
    ("2003-12", _t(2003, 12, 1, 0, 0, 0)),
    ("2003", _t(2003, 1, 1, 0, 0, 0)),
    ("2004-02-28T18:14:55-08:00", _t(2004, 2, 29, 2, 14, 55)),
    ("2003-02-28T18:14:55-08:00", _t(2003, 3, 1, 2, 14, 55)),
    ("2000-02-28T18:14:55-08:00", _t(2000, 2, 29, 2, 14, 55)),
    ("9999-12-31T23:59:59-99:99", None),
    ("2003-12-31T25:14:55Z", None),
    ("2003-12-31T10:61:55Z", None),
    ("2003-12-31T10:14:61Z", None),
    ("22013", None),
    ("013", None),
    ("2013-01-27-01", None),
    ("2013-01-28T11:30:00-06:00Textra", None),
    ("2013-xx-27", None),
    ("2013-01-28T09:xx:00Z", None),
    ("2013-01-28T09:00:00+00:xx", None),
    ("2004-07-08 23:56:58 -00:20", _t(2004, 7, 9, 0, 16, 58)),
    ("2004-07-08 23:56:58", _t(2004, 7, 8, 23, 56, 58)),
    ("2004-07-08 23:56:58.0", _t(2004, 7, 8, 23, 56, 58)),
]


@pytest.mark.parametrize(("text", "expected"), FEEDPARSER)
def test_feedparsers_date_cases(text: str, expected: datetime | None) -> None:
    assert read(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tue, 10 Jun 2003 09:41:01 -04:00", _t(2003, 6, 10, 13, 41, 1)),  # colon offset
        ("Tue, 10 Jun 2003 09:41:01 CEST", _t(2003, 6, 10, 7, 41, 1)),
        ("Tue, 10 Jan 2003 09:41:01 CET", _t(2003, 1, 10, 8, 41, 1)),
        ("Tue, 10 Jun 2003 09:41:01 BST", _t(2003, 6, 10, 8, 41, 1)),
        ("Tue, 10 Jun 2003 09:41:01 AEST", _t(2003, 6, 9, 23, 41, 1)),
        ("Tue, 10 Jun 2003 09:41:01 JST", _t(2003, 6, 10, 0, 41, 1)),
        ("Tue, 10 Jul 2003 09:41:01 ET", _t(2003, 7, 10, 13, 41, 1)),  # EDT in July
        ("2024-03-31T02:30:00+05:30", _t(2024, 3, 30, 21, 0, 0)),
        ("Tue, 10 Jun 2003 09:41:01 IST", None),  # India, Ireland or Israel: not guessed
        ("Tue, 10 Jun 2003 09:41:01 XYZ", None),
        ("Tue, 10 Jun 2003 09:41:01 +2500", None),
    ],
)
def test_zones_are_read_where_they_name_one_offset_and_only_there(
    text: str, expected: datetime | None
) -> None:
    assert read(text) == expected


@pytest.mark.parametrize("name", sorted(CHECKED_IN))
def test_each_zone_name_is_what_tzdata_says_it_is(name: str) -> None:
    """Each abbreviation's offset, against a zone of the time-zone database that uses it, on
    a day of the year that zone uses it (January or July)."""
    zone = ZoneInfo(CHECKED_IN[name])
    for month in (1, 7):
        at = datetime(2024, month, 15, 12, tzinfo=zone)
        if at.tzname() == name:
            assert at.utcoffset() == timedelta(hours=ZONES[name]), name
            return
    pytest.fail(f"{CHECKED_IN[name]} does not use {name} in January or July")


def test_every_named_zone_is_checked_or_is_utc() -> None:
    assert set(ZONES) - set(CHECKED_IN) == {"UT", "UTC", "GMT", "Z", "ETC/GMT", "ETC/UTC"}
    assert all(ZoneInfo(z) for z in GENERIC.values())


RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
<link>https://e.org/</link>
<item><title>Bern</title><link>https://e.org/1</link>
<pubDate>Tue, 10 Jun 2025 09:41:01 CEST</pubDate></item>
<item><title>Dublin?</title><link>https://e.org/2</link>
<pubDate>Tue, 10 Jun 2025 09:41:01 IST</pubDate></item>
</channel></rss>"""


def test_a_feed_items_date_in_an_unknown_zone_is_estimated_not_utc() -> None:
    bern, dublin = parse_feed(RSS)
    assert bern.sent == _t(2025, 6, 10, 7, 41, 1) and not bern.sent_estimated
    assert dublin.sent_estimated  # first-seen time, marked so; never read as 09:41 UTC
