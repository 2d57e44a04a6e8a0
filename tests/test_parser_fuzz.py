"""Arbitrary bytes never crash a parser: they give notices or one clear SourceError."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarion.sources import PARSERS
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
    kind=st.sampled_from(sorted(PARSERS)),
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
        notices = PARSERS[kind](data, "")
    except SourceError as exc:
        assert str(exc)
    else:
        assert isinstance(notices, list)
