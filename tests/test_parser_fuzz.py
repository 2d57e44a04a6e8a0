"""Arbitrary bytes never crash a parser: they give notices or one clear SourceError."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarion.sources import parsers
from clarion.sources.base import SourceError
from tests.conftest import fixture_bytes

SEEDS = [
    fixture_bytes("cap/weather.cap"),
    fixture_bytes("cap/canada.cap"),
    fixture_bytes("feeds/onefoottsunami.atom")[:4000],
]


def _mutate(data: bytes, cuts: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for pos, length, insert in cuts:
        pos %= max(1, len(out))
        out[pos : pos + length] = insert
    return bytes(out)


@settings(
    max_examples=int(os.environ.get("CLARION_FUZZ_EXAMPLES", "200")),
    suppress_health_check=[HealthCheck.too_slow],
    deadline=None,
)
@given(
    kind=st.sampled_from(sorted(parsers())),
    data=st.one_of(
        st.binary(max_size=2000),
        st.builds(
            _mutate,
            st.sampled_from(SEEDS),
            st.lists(
                st.tuples(st.integers(0, 10_000), st.integers(0, 50), st.binary(max_size=20)),
                max_size=5,
            ),
        ),
    ),
)
def test_parsers_only_raise_source_error(kind: str, data: bytes) -> None:
    try:
        notices = parsers()[kind](data, "")
    except SourceError as exc:
        assert str(exc)
    else:
        assert isinstance(notices, list)


def _nest(open_: str, close: str, depth: int, inner: str = "1") -> bytes:
    return (open_ * depth + inner + close * depth).encode()


# Structures random bytes never reach: what an attacker sends on purpose. 3 KB of `[` crashed
# three parsers; a 5,000-digit integer, NaN and a NUL poisoned rows; deep XML, long strings and
# unexpected encodings are here too.
STRUCTURAL = [
    b"[" * 3000,
    _nest("[", "]", 3000),
    _nest('{"a":', "}", 3000),
    _nest('{"type": "FeatureCollection", "features": [', "]}", 1, _nest("[", "]", 2000).decode()),
    b'{"type": "FeatureCollection", "features": [' + b"1" * 5000 + b"]}",
    b'{"page": {"name": "x"}, "incidents": [' + b"9" * 5000 + b"]}",
    b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": NaN}]}',
    b'{"identifier": "a\\u0000b", "sent": "2026-01-01T00:00:00Z", "headline": "x"}',
    b'{"identifier": "x", "sent": "9999-12-31T23:59:59-12:00", "headline": "x"}',
    b"<a>" * 5000 + b"</a>" * 5000,
    b"<?xml version='1.0' encoding='UTF-16'?><alert/>",
    "<?xml version='1.0' encoding='ISO-8859-1'?><rss><channel><item><title>\xe9</title>"
    "</item></channel></rss>".encode("latin-1"),
    b"\xff\xfe<\x00a\x00l\x00e\x00r\x00t\x00/\x00>\x00",
    b'<rss version="2.0"><channel><item><title>'
    + b"x" * 2_000_000
    + b"</title></item></channel></rss>",
    b'{"entity": [{"id": "' + b"e" * 100_000 + b'"}]}',
]


def test_structural_attacks_give_only_clear_errors() -> None:
    for kind in sorted(parsers()):
        for body in STRUCTURAL:
            try:
                notices = parsers()[kind](body, "")
            except SourceError as exc:
                assert str(exc), (kind, body[:40])
            else:
                assert isinstance(notices, list), (kind, body[:40])
