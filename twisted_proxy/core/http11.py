"""
HTTP/1.1 request framing with no I/O: a request head parsed from bytes, and
the chunked-body decoder (L{twisted_proxy.core.chunked}'s) that answers 400.
Errors carry the status a server answers them with.

The rules are RFC 9112's, strict where leniency lets a request be read two
ways (request smuggling): Content-Length beside Transfer-Encoding, differing
Content-Lengths, a coding other than exactly chunked, obsolete line folding,
whitespace before a header's colon, lines ending in a bare LF, control
characters in the target, in values, in chunk lines and trailers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_proxy.core import chunked

Headers = list[tuple[bytes, bytes]]

# What RFC 9110 allows in a token (method, header name).
_TCHAR = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# Control bytes a head may not carry anywhere (HTAB is whitespace; CR and LF
# are allowed only as CRLF, which is checked by counting).
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What a request-target may hold: printable ASCII and bytes outside ASCII.
_TARGET_BYTES = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")

MAX_HEADERS = 100
"""Header fields a request may have, by default (C{max_headers})."""

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
    """C{HTTP/1.0} or C{HTTP/1.1}: a later 1.x is answered as 1.1."""
    headers: Headers
    length: int
    """Body bytes to read; L{NO_BODY}, or L{CHUNKED}."""
    keepAlive: bool
    expectContinue: bool
    headBytes: int
    requestLine: bytes = b""
    """The request line as received."""


def parseRequestLine(line: bytes) -> tuple[bytes, bytes, bytes]:
    """
    Split a request line into method, target and version (C{HTTP/1.0} or
    C{HTTP/1.1}); raise L{HTTPError} for what must be refused.
    """
    parts = line.split(b" ")
    if len(parts) != 3:
        if len(parts) == 2 and parts[0] and _TCHAR.issuperset(parts[0]):
            raise HTTPError(400, "HTTP/0.9 request (no protocol version)")
        raise HTTPError(400, "malformed request line")
    method, target, version = parts
    if not method or not _TCHAR.issuperset(method):
        raise HTTPError(400, "malformed request method")
    if not target:
        raise HTTPError(400, "malformed request target")
    if target.translate(None, _TARGET_BYTES):
        raise HTTPError(400, "a control character in the request target")
    if version == b"HTTP/1.1" or version == b"HTTP/1.0":
        return method, target, version
    numbers = _VERSION.fullmatch(version)
    if numbers is None:
        raise HTTPError(400, "malformed request line")
    if numbers.group(1) != b"1":
        raise HTTPError(505, "HTTP version not supported")
    # RFC 9110 6.2: a later HTTP/1.x is answered as the highest we speak.
    return method, target, b"HTTP/1.1"


def checkHeadStart(data: bytes) -> None:
    """
    Refuse an incomplete request head at once when what has arrived already
    cannot become a valid one: a bare LF (a client that ends lines with LF
    alone would otherwise wait for a CRLF CRLF that never comes), or a
    complete request line that is wrong (an HTTP/0.9 request, which waits
    for its answer after one line).
    """
    if data.count(b"\n") != data.count(b"\r\n"):
        raise HTTPError(400, "bare LF in the request head")
    end = data.find(b"\r\n")
    if end >= 0:
        parseRequestLine(data[:end])


def parseRequestHead(head: bytes, maxHeaders: int = MAX_HEADERS) -> RequestHead:
    """
    Parse a request head: everything before the blank line (which is not
    included). Raises L{HTTPError} for what must be refused.
    """
    if _CONTROL.search(head) is not None:
        raise HTTPError(400, "a control character in the request head")
    fields = head.count(b"\r\n")
    if head.count(b"\r") != fields or head.count(b"\n") != fields:
        raise HTTPError(400, "bare CR or LF in the request head")
    if fields > maxHeaders:
        raise HTTPError(400, f"more than {maxHeaders} header fields")
    lines = head.split(b"\r\n")
    requestLine = lines[0]
    method, target, version = parseRequestLine(requestLine)
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
        lower = name.lower()
        if lower == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise HTTPError(400, "malformed Content-Length")
            if lengthSeen is not None:
                if value != lengthSeen:
                    raise HTTPError(400, "conflicting Content-Length headers")
                # The same length twice: forwarded once.
                continue
            lengthSeen = value
        elif lower == b"transfer-encoding":
            transferEncoding = (
                value if transferEncoding is None else transferEncoding + b"," + value
            )
        elif lower == b"connection":
            connection += b"," + value.lower()
        elif lower == b"expect":
            expect = value.lower() == b"100-continue"
        headers.append((name, value))
    if transferEncoding is not None:
        if lengthSeen is not None:
            raise HTTPError(400, "Content-Length with Transfer-Encoding")
        if version == b"HTTP/1.0":
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        _checkTransferEncoding(transferEncoding)
        length = CHUNKED
    elif lengthSeen is not None:
        length = int(lengthSeen)
    tokens = {t.strip() for t in connection.split(b",")} if connection else set()
    # HTTP/1.1 stays open unless told to close; HTTP/1.0 only when it asks
    # (Connection: keep-alive), as Apache and nginx do.
    if version == b"HTTP/1.1":
        keepAlive = b"close" not in tokens
    else:
        keepAlive = b"keep-alive" in tokens and b"close" not in tokens
    return RequestHead(
        method=method,
        target=target,
        version=version,
        headers=headers,
        length=length,
        keepAlive=keepAlive,
        expectContinue=expect and version == b"HTTP/1.1",
        headBytes=len(head) + 4,
        requestLine=requestLine,
    )


def _checkTransferEncoding(value: bytes) -> None:
    """
    Accept exactly C{chunked}: anything else could be framed two ways by the
    proxy and the backend (a coding dropped on the way is a body misread).
    """
    codings = [c.strip(b" \t").lower() for c in value.split(b",")]
    if codings == [b"chunked"]:
        return
    if (
        codings[-1] == b"chunked"
        and codings.count(b"chunked") == 1
        and all(c and _TCHAR.issuperset(c) for c in codings)
    ):
        raise HTTPError(501, "transfer codings other than chunked are not supported")
    raise HTTPError(400, "unsupported Transfer-Encoding")


class ChunkedDecoder(chunked.ChunkedDecoder):
    """
    L{twisted_proxy.core.chunked.ChunkedDecoder} for a request body: what is
    not chunked coding is an L{HTTPError} (400).
    """

    def feed(self, data: bytes) -> bytes:
        """Consume C{data}; raise L{HTTPError} (400) if it is not chunked coding."""
        try:
            return super().feed(data)
        except chunked.ChunkedError as e:
            raise HTTPError(400, str(e)) from None
