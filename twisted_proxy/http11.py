"""
HTTP/1.1 request framing with no I/O: a request head parsed from bytes, and a
chunked-body decoder. Errors carry the status a server answers them with.

The rules are RFC 9112's, strict where leniency lets a request be read two
ways (request smuggling): Content-Length beside Transfer-Encoding, differing
Content-Lengths, a final coding other than chunked, obsolete line folding,
whitespace before a header's colon, control characters in values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]

# What RFC 9110 allows in a token (method, header name).
_TCHAR = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_BAD_VALUE = (b"\x00", b"\r", b"\n")
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")

NO_BODY = 0
"""C{RequestHead.length} of a request without a body."""
CHUNKED = -1
"""C{RequestHead.length} of a request whose body is chunked."""


class HTTPError(Exception):
    """A request that cannot be served: answer C{status} and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class RequestHead:
    """The request line and headers, and how the body is framed."""

    method: bytes
    target: bytes
    version: bytes
    headers: Headers
    length: int
    """Body bytes to read; L{NO_BODY}, or L{CHUNKED}."""
    keepAlive: bool
    expectContinue: bool
    headBytes: int


def parseRequestHead(head: bytes) -> RequestHead:
    """
    Parse a request head: everything before the blank line (which is not
    included). Raises L{HTTPError} for what must be refused.
    """
    lines = head.split(b"\r\n")
    requestLine = lines[0]
    parts = requestLine.split(b" ")
    if len(parts) != 3:
        raise HTTPError(400, "malformed request line")
    method, target, version = parts
    if not method or not _TCHAR.issuperset(method):
        raise HTTPError(400, "malformed request method")
    if not target or b"\x00" in target or b"\t" in target:
        raise HTTPError(400, "malformed request target")
    if version not in _VERSIONS:
        if version.startswith(b"HTTP/"):
            raise HTTPError(505, "HTTP version not supported")
        raise HTTPError(400, "malformed request line")
    headers: Headers = []
    length = NO_BODY
    lengthSeen: bytes | None = None
    transferEncoding: bytes | None = None
    connection = b""
    expect = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or not _TCHAR.issuperset(name):
            # Includes obs-fold (a line starting with whitespace) and
            # whitespace between the name and the colon.
            raise HTTPError(400, "malformed header line")
        value = value.strip(b" \t")
        for bad in _BAD_VALUE:
            if bad in value:
                raise HTTPError(400, "control character in a header value")
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise HTTPError(400, "malformed Content-Length")
            if lengthSeen is not None and value != lengthSeen:
                raise HTTPError(400, "conflicting Content-Length headers")
            lengthSeen = value
        elif lower == b"transfer-encoding":
            transferEncoding = (
                value if transferEncoding is None else transferEncoding + b"," + value
            )
        elif lower == b"connection":
            connection += b"," + value.lower()
        elif lower == b"expect":
            expect = value.lower() == b"100-continue"
    if transferEncoding is not None:
        if lengthSeen is not None:
            raise HTTPError(400, "Content-Length with Transfer-Encoding")
        codings = [c.strip().lower() for c in transferEncoding.split(b",")]
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise HTTPError(400, "unsupported Transfer-Encoding")
        if version == b"HTTP/1.0":
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        length = CHUNKED
    elif lengthSeen is not None:
        length = int(lengthSeen)
    tokens = {t.strip() for t in connection.split(b",")} if connection else set()
    # HTTP/1.0 keep-alive is not offered: such a client gets Connection: close.
    keepAlive = version == b"HTTP/1.1" and b"close" not in tokens
    return RequestHead(
        method=method,
        target=target,
        version=version,
        headers=headers,
        length=length,
        keepAlive=keepAlive,
        expectContinue=expect and version == b"HTTP/1.1",
        headBytes=len(head) + 4,
    )


# ChunkedDecoder states.
_SIZE = 0
_DATA = 1
_DATA_END = 2
_TRAILER = 3
_DONE = 4
_MAX_LINE = 4096


class ChunkedDecoder:
    """
    Decode a chunked body piece by piece: C{onData} for each piece of
    content, C{onEnd} once; L{feed} returns bytes past the end of the body.
    """

    def __init__(
        self, onData: Callable[[bytes], object], onEnd: Callable[[], object]
    ) -> None:
        self._onData = onData
        self._onEnd = onEnd
        self._state = _SIZE
        self._remaining = 0
        self._buffer = b""

    @property
    def done(self) -> bool:
        """Whether the last chunk and the trailers have been read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> bytes:
        """Consume C{data}; raise L{HTTPError} (400) if it is not chunked coding."""
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
            end = data.find(b"\r\n")
            if end < 0:
                if len(data) > _MAX_LINE:
                    raise HTTPError(400, "chunk line too long")
                self._buffer = data
                return b""
            line, data = data[:end], data[end + 2 :]
            if state == _DATA_END:
                if line:
                    raise HTTPError(400, "malformed chunked body")
                self._state = _SIZE
            elif state == _SIZE:
                size = line.split(b";", 1)[0].strip(b" \t")
                if not size or len(size) > 16 or not _HEX.issuperset(size):
                    raise HTTPError(400, "malformed chunk size")
                self._remaining = int(size, 16)
                self._state = _DATA if self._remaining else _TRAILER
            elif not line:
                self._state = _DONE
                self._onEnd()
        return b""
