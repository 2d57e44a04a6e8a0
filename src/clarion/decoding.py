"""An HTTP answer's body decoded as it arrives, never more than asked for at a time.

httpx decodes each chunk it reads whole: `zlib`'s and `zstandard`'s one-shot calls turn an
8 KiB zstd chunk into 256 MiB before any caller can count it (measured: +465-623 MiB of memory
before a 5 MiB cap refused the answer). Here the raw bytes are read (`iter_raw`) and each
`Content-Encoding` is undone by a reader that returns at most `n` bytes per call (gzip's
`GzipFile`, zlib with `max_length`, zstandard's `stream_reader`), so a cap counts every
decoded byte as it is made.

Only the encodings asked for are read (`ACCEPT_ENCODING`); an answer in another one (`br`,
which no installed decoder bounds, or anything unknown) is refused by name.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from typing import Any

ACCEPT_ENCODING = "gzip, deflate, zstd"
CHUNK = 64 * 1024


class DecodingError(ValueError):
    """A body in an encoding not asked for, or one that does not decode."""


class _Raw(io.RawIOBase):
    """The raw chunks of an answer as a file."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class _Deflate(io.RawIOBase):
    """HTTP's `deflate`: zlib-wrapped as RFC 9110 says, or raw deflate as some servers send."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self._z: zlib._Decompress | None = None
        self._tail = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            data = self._tail or self._source.read(CHUNK)
            if self._z is None:
                if not data:
                    return 0
                wrapped = len(data) >= 2 and (data[0] * 256 + data[1]) % 31 == 0
                self._z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            if not data:
                out = self._z.flush()[: len(buffer)]
            else:
                out = self._z.decompress(data, len(buffer))
                self._tail = self._z.unconsumed_tail
            if out or not data:
                buffer[: len(out)] = out
                return len(out)


def _undo(encoding: str, source: Any) -> Any:  # a file read n bytes at a time
    if encoding in ("gzip", "x-gzip"):
        return gzip.GzipFile(fileobj=source, mode="rb")
    if encoding == "deflate":
        return io.BufferedReader(_Deflate(source))
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    raise DecodingError(f"answered in {encoding!r} encoding, which was not asked for")


def decoded(raw: Iterator[bytes], content_encoding: str | None) -> Iterator[bytes]:
    """The body's decoded bytes, `CHUNK` at most at a time, from its raw chunks. Encodings
    listed in `Content-Encoding` were applied in order, so they are undone last first."""
    encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    reader: Any = io.BufferedReader(_Raw(raw))
    for encoding in reversed(encodings):
        if encoding != "identity":
            reader = _undo(encoding, reader)
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    except (OSError, EOFError, zlib.error) as exc:
        raise DecodingError(f"the body does not decode: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("zstandard"):
            raise DecodingError(f"the body does not decode: {exc}") from None
        raise
