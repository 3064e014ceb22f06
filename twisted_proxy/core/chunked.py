"""
The one decoder of HTTP/1.1 chunked coding (RFC 9112 7.1), with no I/O: a
client's request body and a backend's response body are read by the same
rules.

It is strict where leniency lets a body be read two ways (request smuggling,
response splitting): a chunk size is 1 to 16 hex digits, every line ends in
CRLF (a bare LF or CR is refused), no control byte but HTAB in a chunk line
or trailer, chunk data exactly as long as its size says (one byte more is
refused at once), trailer lines that are C{name: value}. A line may be 4096
bytes (extensions included), the trailers 64 KiB in all; trailers are read
and dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["MAX_LINE", "MAX_TRAILERS", "ChunkedDecoder", "ChunkedError"]

MAX_LINE = 4096
"""Bytes a chunk-size or trailer line may have, its CRLF left out."""
MAX_TRAILERS = 65536
"""Bytes of trailer lines a body may end with, in all."""

# What RFC 9110 allows in a token (a trailer's name).
_TCHAR = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Control bytes a line may not carry (HTAB is whitespace; CR and LF are
# allowed only as the CRLF that ends it).
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Decoder states.
_SIZE = 0
_DATA = 1
_DATA_END = 2
_TRAILER = 3
_DONE = 4


class ChunkedError(Exception):
    """The bytes are not chunked coding; the message says what is wrong."""


class ChunkedDecoder:
    """
    Decode a chunked body piece by piece: C{onData} for each piece of
    content, C{onEnd} once the last chunk and the trailers are read;
    L{feed} returns the bytes past the end of the body.
    """

    def __init__(
        self, onData: Callable[[bytes], object], onEnd: Callable[[], object]
    ) -> None:
        self._onData = onData
        self._onEnd = onEnd
        self._state = _SIZE
        self._remaining = 0
        self._buffer = b""
        self._trailerBytes = 0

    @property
    def done(self) -> bool:
        """Whether the last chunk and the trailers have been read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> bytes:
        """Consume C{data}; raise L{ChunkedError} if it is not chunked coding."""
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        while data:
            state = self._state
            if state == _DATA:
                remaining = self._remaining
                if len(data) <= remaining:
                    self._remaining = remaining - len(data)
                    if not self._remaining:
                        self._state = _DATA_END
                    self._onData(data)
                    return b""
                piece, data = data[:remaining], data[remaining:]
                self._remaining = 0
                self._state = _DATA_END
                self._onData(piece)
                continue
            if state == _DONE:
                return data
            if state == _DATA_END and data[:2] != b"\r\n"[: len(data)]:
                # Chunk data longer than its size: refused at once.
                raise ChunkedError("missing CRLF after chunk data")
            end = data.find(b"\n")
            # A line of MAX_LINE bytes is followed by its CR, then the LF.
            if end < 0:
                if len(data) > MAX_LINE + 1:
                    raise ChunkedError(f"chunk line longer than {MAX_LINE} bytes")
                self._buffer = data
                return b""
            if end > MAX_LINE + 1:
                # However the line arrived: the same limit as while it waits.
                raise ChunkedError(f"chunk line longer than {MAX_LINE} bytes")
            if not end or data[end - 1] != 13:  # 13: CR
                raise ChunkedError("bare LF in a chunked body")
            line, data = data[: end - 1], data[end + 1 :]
            if _CONTROL.search(line) is not None or b"\r" in line:
                raise ChunkedError("a control character in a chunked body")
            if state == _DATA_END:
                if line:
                    raise ChunkedError("missing CRLF after chunk data")
                self._state = _SIZE
            elif state == _SIZE:
                size = line.split(b";", 1)[0].strip(b" \t")
                if not size or len(size) > 16 or not _HEX.issuperset(size):
                    raise ChunkedError("malformed chunk size")
                self._remaining = int(size, 16)
                self._state = _DATA if self._remaining else _TRAILER
            elif not line:
                self._state = _DONE
                self._onEnd()
            else:
                name, sep, _ = line.partition(b":")
                if not sep or not name or not _TCHAR.issuperset(name):
                    raise ChunkedError("malformed trailer line")
                self._trailerBytes += len(line)
                if self._trailerBytes > MAX_TRAILERS:
                    raise ChunkedError("trailers too large")
        return b""
