"""
Response compression (mod_deflate's job for the proxy): the decisions are pure,
the encoder a thin zlib wrapper that flushes per piece so streams stay live.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

Headers = list[tuple[bytes, bytes]]

DEFAULT_LEVEL = 6
"""zlib's own default, and so mod_deflate's (C{DeflateCompressionLevel})."""
GZIP_WBITS = 16 + 15
"""A gzip wrapper round deflate with the full 32 KiB window, as mod_deflate uses."""
MEM_LEVEL = 8
"""
zlib's default: measured as fast as mod_deflate's 9 (C{bench/compress.py}),
with 128 KiB less state for each response being compressed.
"""


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


def _mediaType(headers: Headers) -> bytes | None:
    """The response's media type, lower case and without parameters."""
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return None


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
    for name, _ in headers:
        lower = name.lower()
        if lower == b"content-encoding" or lower == b"content-range":
            return False
    return _mediaType(headers) in types


def varyHeaders(types: Sequence[bytes], status: int, headers: Headers) -> Headers:
    """
    The response headers with C{Vary: Accept-Encoding} if the body the client
    gets could depend on that header: a 200 of a listed type, compressed or not
    (and a 304 standing for one, which must carry the 200's Vary), so a shared
    cache never hands a gzip body to a client that did not ask for it.
    """
    if not types or status not in (200, 304) or _mediaType(headers) not in types:
        return headers
    return _varyAcceptEncoding(headers)


def _varyAcceptEncoding(headers: Headers) -> Headers:
    """C{Accept-Encoding} added to the first Vary (or a new one), if not there."""
    first = None
    for i, (name, value) in enumerate(headers):
        if name.lower() != b"vary":
            continue
        tokens = {t.strip().lower() for t in value.split(b",")}
        if b"*" in tokens or b"accept-encoding" in tokens:
            return headers
        if first is None:
            first = i
    if first is None:
        return [*headers, (b"Vary", b"Accept-Encoding")]
    out = list(headers)
    name, value = out[first]
    out[first] = (
        name,
        value + b", Accept-Encoding" if value.strip() else b"Accept-Encoding",
    )
    return out


def compressedHeaders(headers: Headers) -> Headers:
    """The response headers once the body is gzipped."""
    out = [(n, v) for n, v in headers if n.lower() not in (b"content-length", b"etag")]
    out.append((b"Content-Encoding", b"gzip"))
    return _varyAcceptEncoding(out)


class GzipStream:
    """
    Gzip a body piece by piece. Each piece (a backend read, or one chunk of
    it) goes to zlib in one call and is flushed at once, so an event stream's
    events are never held back. With the proxy's 64 KiB reads that costs
    little against compressing the whole body in one call: 1-3% at levels 1
    and 6, about 10% at 9 (C{bench/compress.py}).
    """

    def __init__(self, level: int = DEFAULT_LEVEL) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS, MEM_LEVEL)

    def compress(self, data: bytes, flush: bool = True) -> bytes:
        """
        Compress C{data}; with C{flush}, flush it out too. Without, what
        zlib holds back goes out at the next L{flush} (the end of a backend
        read, when it brought several pieces: chunks of a chunked body).
        """
        if not data:
            return b""
        if not flush:
            return self._z.compress(data)
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def flush(self) -> bytes:
        """Everything compressed so far, out."""
        return self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """The gzip trailer."""
        return self._z.flush(zlib.Z_FINISH)
