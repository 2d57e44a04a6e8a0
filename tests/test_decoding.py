"""Every decoded byte counted as it arrives (security item 7): an 8 KiB zstd answer inflating
to 256 MiB raised memory by 465-623 MiB before the cap refused it, since httpx decodes each
chunk whole. Each fetch Clarion makes of an address someone else chose (a source, a fediverse
key or an alert's image through `bounded_get`, a link card) is measured here with Python's
own allocation tracer while a bomb in each encoding is refused."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import zstandard

from clarion.decoding import ACCEPT_ENCODING, DecodingError, decoded
from clarion.net import TooLarge, bounded_get
from clarion.sources.base import FetchState, SourceError, conditional_get
from tests.fakes.http import FakeServer, Response

INFLATED = 128 * 1024 * 1024  # what each bomb decodes to
PEAK = 32 * 1024 * 1024  # what reading one may allocate at most (the caps are 1-5 MiB)


def _zeros() -> Iterator[bytes]:
    block = b"\0" * (1024 * 1024)
    for _ in range(INFLATED // len(block)):
        yield block


def _compress(encoding: str) -> bytes:
    if encoding == "zstd":
        z = zstandard.ZstdCompressor(level=3).compressobj()
        return b"".join(z.compress(b) for b in _zeros()) + z.flush()
    if encoding == "gzip":
        g = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        g = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    else:  # raw deflate, as some servers send `deflate`
        g = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return b"".join(g.compress(b) for b in _zeros()) + g.flush()


BOMBS = {e: _compress(e) for e in ("zstd", "gzip", "deflate", "raw-deflate")}


@pytest.fixture(scope="module")
def bomb_server() -> Iterator[FakeServer]:
    def handle(req: Any) -> Response:
        encoding = req.path.strip("/").split("/")[0]
        header = "deflate" if encoding == "raw-deflate" else encoding
        return Response(
            200,
            raw=BOMBS[encoding],
            content_type="text/html",
            headers={"Content-Encoding": header},
        )

    with FakeServer(handle) as s:
        yield s


def _peak(read: Callable[[], object]) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        read()
        error: BaseException | None = None
    except Exception as exc:
        error = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return error, peak


def _source(http: httpx.Client, url: str) -> object:
    return conditional_get(
        http, url, FetchState(), what="source t", accept="*/*", max_bytes=5 << 20
    )


def _bounded(http: httpx.Client, url: str) -> object:  # fediverse keys, alert images
    return bounded_get(http, url, max_bytes=1 << 20, seconds=30)


def _link_card(http: httpx.Client, url: str) -> object:
    from clarion.channels.bluesky import _read

    return _read(http, url, 1_000_000, ("text/html",))


@pytest.mark.parametrize("encoding", sorted(BOMBS))
@pytest.mark.parametrize(
    ("fetch", "refusal"),
    [
        (_source, (SourceError, "more than 5,242,880 bytes")),
        (_bounded, (TooLarge, "more than 1,048,576 bytes")),
        (_link_card, (ValueError, "over 1,000,000 bytes")),
    ],
    ids=["source", "key-or-image", "link-card"],
)
def test_a_bomb_in_any_encoding_is_refused_before_it_inflates(
    bomb_server: FakeServer, fetch: Any, refusal: tuple[type, str], encoding: str
) -> None:
    assert len(BOMBS[encoding]) < 256 * 1024  # small on the wire
    with httpx.Client() as http:
        error, peak = _peak(lambda: fetch(http, f"{bomb_server.url}/{encoding}/x"))
    kind, words = refusal
    assert isinstance(error, kind) and words in str(error), error
    assert peak < PEAK, f"{peak:,} bytes allocated reading a {encoding} bomb"


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
        ("gzip, zstd", lambda b: zstandard.ZstdCompressor().compress(gzip.compress(b))),
        ("", lambda b: b),
    ],
)
def test_every_encoding_asked_for_decodes_whole(encoding: str, encode: Any) -> None:
    body = b"<feed>" + bytes(range(256)) * 4000 + b"</feed>"
    raw = encode(body)
    chunks = [raw[i : i + 777] for i in range(0, len(raw), 777)]  # odd cuts, as a network makes
    out = list(decoded(iter(chunks), encoding))
    assert b"".join(out) == body and max(map(len, out)) <= 64 * 1024
    # Raw deflate (no zlib header) as some servers send `deflate`:
    z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert b"".join(decoded(iter([z.compress(body) + z.flush()]), "deflate")) == body


def test_an_encoding_not_asked_for_or_a_broken_body_is_refused_by_name() -> None:
    assert "br" not in ACCEPT_ENCODING.split(", ")
    with pytest.raises(DecodingError, match="'br' encoding, which was not asked for"):
        list(decoded(iter([b"\x1b\x00"]), "br"))
    for encoding in ("gzip", "deflate", "zstd"):
        with pytest.raises(DecodingError, match="does not decode"):
            list(decoded(iter([b"this is not compressed at all" * 10]), encoding))
