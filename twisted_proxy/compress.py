"""
Response compression (mod_deflate's job for the proxy): the decision is pure,
the encoder a thin zlib wrapper that flushes per piece so streams stay live.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

Headers = list[tuple[bytes, bytes]]


def acceptsGzip(acceptEncoding: bytes | None) -> bool:
    """Whether an C{Accept-Encoding} value admits gzip (q=0 refuses it)."""
    if not acceptEncoding:
        return False
    for item in acceptEncoding.lower().split(b","):
        coding, _, params = item.strip().partition(b";")
        if coding.strip() not in (b"gzip", b"*"):
            continue
        q = 1.0
        for param in params.split(b";"):
            key, _, value = param.strip().partition(b"=")
            if key == b"q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        return q > 0
    return False


def shouldCompress(
    types: Sequence[bytes],
    method: bytes,
    status: int,
    acceptEncoding: bytes | None,
    headers: Headers,
) -> bool:
    """
    Compress this response? Only a 200 with a listed media type, not already
    encoded, not a byte range, for a client that accepts gzip. A HEAD gets the
    answer its GET would (the headers say gzip; there is no body to encode).
    """
    if not types or status != 200:
        return False
    if not acceptsGzip(acceptEncoding):
        return False
    contentType = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-encoding" or lower == b"content-range":
            return False
        if lower == b"content-type":
            contentType = value.split(b";", 1)[0].strip().lower()
    return contentType is not None and contentType in types


def compressedHeaders(headers: Headers) -> Headers:
    """The response headers once the body is gzipped."""
    out = [(n, v) for n, v in headers if n.lower() not in (b"content-length", b"etag")]
    out.append((b"Content-Encoding", b"gzip"))
    for name, value in out:
        if name.lower() == b"vary":
            if b"accept-encoding" not in value.lower():
                out.remove((name, value))
                out.append((name, value + b", Accept-Encoding"))
            break
    else:
        out.append((b"Vary", b"Accept-Encoding"))
    return out


class GzipStream:
    """Gzip a body piece by piece; each piece is flushed so nothing waits."""

    def __init__(self, level: int = 6) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        """Compress C{data} and flush it out."""
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """The gzip trailer."""
        return self._z.flush(zlib.Z_FINISH)
