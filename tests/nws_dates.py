"""Resolve the weather.gov test proxy's relative-date tokens against a fixed clock.

Grammar (weather-gov/weather.gov `api-proxy/relative-dates.md`): `date:now[:hour]` or
`date:today HH:mm:±h`, then optionally one adjustment `±N unit` (some files omit the `+`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

CLOCK = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
_TOKEN = re.compile(
    r'"date:(?:(now)(?::hour)?|today (\d\d):(\d\d):([+-]?\d+))'
    r'(?: ([+-]?)(\d+) (d|days?|h|hours?|m|minutes?|s|seconds?))?"'
)
_UNIT = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def _replace(m: re.Match[str], clock: datetime) -> str:
    if m.group(1):
        base = clock
    else:
        tz = timezone(timedelta(hours=int(m.group(4))))
        local = clock.astimezone(tz)
        base = local.replace(hour=int(m.group(2)), minute=int(m.group(3)), second=0, microsecond=0)
    if m.group(6):
        amount = int(m.group(6)) * (-1 if m.group(5) == "-" else 1)
        base += timedelta(**{_UNIT[m.group(7)[0]]: amount})
    return f'"{base.isoformat()}"'


def resolve(body: bytes, clock: datetime = CLOCK) -> bytes:
    text = body.decode()
    out = _TOKEN.sub(lambda m: _replace(m, clock), text)
    assert '"date:' not in out, "an unknown date token is left"
    return out.encode()
