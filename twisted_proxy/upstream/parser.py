"""
An HTTP/1.1 response parser with no I/O: bytes in, callbacks out.

It frames a backend's response (status line, headers, then a body delimited by
Content-Length, chunked coding or the connection's close) and hands the
decoded body on as it arrives, never holding a whole body. It knows the
request method so that HEAD, 1xx, 204 and 304 responses end at their headers.
"""

from __future__ import annotations

from collections.abc import Callable

Headers = list[tuple[bytes, bytes]]

_MAX_HEAD = 65536
_MAX_CHUNK_LINE = 4096
_HEX = frozenset(b"0123456789abcdefABCDEF")
_TOKEN_BAD = frozenset(b" \t\r\n:\x00")


class ResponseParseError(Exception):
    """The backend sent something that is not an HTTP/1.1 response."""


# Body framing kinds.
_NONE = 0
_LENGTH = 1
_CHUNKED = 2
_CLOSE = 3

# Parser states.
_HEAD = 0
_BODY = 1
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_CRLF = 4
_TRAILERS = 5
_DONE = 6


def _parseHead(head: bytes) -> tuple[bytes, int, bytes, Headers]:
    lines = head.split(b"\r\n")
    statusLine = lines[0]
    parts = statusLine.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ResponseParseError(f"bad status line {statusLine[:80]!r}")
    version = parts[0]
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise ResponseParseError(f"bad status code {code[:20]!r}")
    reason = parts[2] if len(parts) == 3 else b""
    headers: Headers = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in b" \t":
            # Obsolete line folding (RFC 9112 5.2): join onto the previous value.
            if not headers:
                raise ResponseParseError("continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or not _TOKEN_BAD.isdisjoint(name):
            raise ResponseParseError(f"bad header line {line[:80]!r}")
        value = value.strip(b" \t")
        if b"\x00" in value or b"\r" in value or b"\n" in value:
            raise ResponseParseError("control character in a header value")
        headers.append((name, value))
    return version, int(code), reason, headers


class ResponseParser:
    """
    Parse one response at a time from a backend connection.

    :param onHead: called with (status, reason, headers) once the head is in;
        interim 1xx responses (other than 101) are skipped.
    :param onData: called with each piece of decoded body.
    :param onEnd: called when the response is complete.
    """

    def __init__(
        self,
        onHead: Callable[[int, bytes, Headers], object],
        onData: Callable[[bytes], object],
        onEnd: Callable[[], object],
    ) -> None:
        self._onHead = onHead
        self._onData = onData
        self._onEnd = onEnd
        self._state = _DONE
        self._buffer = b""
        self._remaining = 0
        self.framing = _NONE
        self.keepAlive = False
        self.bodyStarted = False
        self.bytesReceived = 0

    def expect(self, method: bytes) -> None:
        """Get ready for the response to a request made with C{method}."""
        self._method = method
        self._state = _HEAD
        self._buffer = b""
        self.bodyStarted = False
        self.bytesReceived = 0

    @property
    def complete(self) -> bool:
        """Whether the response we were waiting for has ended."""
        return self._state == _DONE

    @property
    def closeDelimited(self) -> bool:
        """Whether the body ends only when the backend closes the connection."""
        return self.framing == _CLOSE

    def feed(self, data: bytes) -> bytes:
        """
        Consume C{data}; return any bytes that arrived after the response ended
        (which a well-behaved backend never sends).
        """
        self.bytesReceived += len(data)
        if self._state == _BODY and not self._buffer:
            # The common case on a big body: no copying, no looping.
            return self._feedBody(data)
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        while data:
            state = self._state
            if state == _HEAD:
                data = self._feedHead(data)
            elif state == _BODY:
                data = self._feedBody(data)
            elif state == _CHUNK_DATA:
                data = self._feedChunkData(data)
            elif state == _DONE:
                return data
            else:
                data = self._feedChunkLine(data)
        return b""

    def noMoreData(self) -> bool:
        """
        The connection closed. Returns True when that ended the response
        cleanly (a close-delimited body), False when the response was cut.
        """
        if self._state == _BODY and self.framing == _CLOSE:
            self._state = _DONE
            self._onEnd()
            return True
        return self._state == _DONE

    def _feedHead(self, data: bytes) -> bytes:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > _MAX_HEAD:
                raise ResponseParseError("response head too large")
            self._buffer = data
            return b""
        head, rest = data[:end], data[end + 4 :]
        version, status, reason, headers = _parseHead(head)
        if 100 <= status < 200 and status != 101:
            # Interim response (100 Continue, 103 Early Hints): wait for the real one.
            return rest
        self._startBody(version, status, headers)
        if self.framing == _CHUNKED:
            # RFC 9112 6.3: a Content-Length beside chunked coding is wrong
            # and must not reach the client, who would frame by it.
            headers = [h for h in headers if h[0].lower() != b"content-length"]
        self.bodyStarted = True
        self._onHead(status, reason, headers)
        if self._state == _DONE:
            self._onEnd()
        return rest

    def _startBody(self, version: bytes, status: int, headers: Headers) -> None:
        length: int | None = None
        chunked = False
        connection = b""
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit():
                    raise ResponseParseError(f"bad Content-Length {value[:40]!r}")
                if length is not None and int(value) != length:
                    raise ResponseParseError("conflicting Content-Length headers")
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
                if not chunked:
                    length = None
            elif lower == b"connection":
                connection += b"," + value.lower()
        tokens = {t.strip() for t in connection.split(b",")}
        if version == b"HTTP/1.1":
            self.keepAlive = b"close" not in tokens
        else:
            self.keepAlive = b"keep-alive" in tokens
        if self._method == b"HEAD" or status in (204, 304) or status == 101:
            self.framing = _NONE
            self._state = _DONE
        elif chunked:
            self.framing = _CHUNKED
            self._state = _CHUNK_SIZE
        elif length is not None:
            self.framing = _LENGTH
            self._remaining = length
            self._state = _BODY if length else _DONE
        else:
            self.framing = _CLOSE
            self.keepAlive = False
            self._state = _BODY
        if self.framing == _CHUNKED and length is not None:
            # RFC 9112 6.3: chunked wins, and the message must not be reused.
            self.keepAlive = False

    def _feedBody(self, data: bytes) -> bytes:
        if self.framing == _CLOSE:
            self._onData(data)
            return b""
        remaining = self._remaining
        if len(data) < remaining:
            self._remaining = remaining - len(data)
            self._onData(data)
            return b""
        piece, rest = data[:remaining], data[remaining:]
        self._remaining = 0
        self._state = _DONE
        if piece:
            self._onData(piece)
        self._onEnd()
        return rest

    def _feedChunkData(self, data: bytes) -> bytes:
        remaining = self._remaining
        if len(data) < remaining:
            self._remaining = remaining - len(data)
            self._onData(data)
            return b""
        piece, rest = data[:remaining], data[remaining:]
        self._remaining = 0
        self._state = _CHUNK_CRLF
        self._onData(piece)
        return rest

    def _feedChunkLine(self, data: bytes) -> bytes:
        end = data.find(b"\r\n")
        if end < 0:
            if len(data) > _MAX_CHUNK_LINE:
                raise ResponseParseError("chunk line too long")
            self._buffer = data
            return b""
        line, rest = data[:end], data[end + 2 :]
        state = self._state
        if state == _CHUNK_CRLF:
            if line:
                raise ResponseParseError("missing CRLF after chunk data")
            self._state = _CHUNK_SIZE
        elif state == _CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip(b" \t")
            if not size or not _HEX.issuperset(size) or len(size) > 16:
                raise ResponseParseError(f"bad chunk size {line[:40]!r}")
            n = int(size, 16)
            if n:
                self._remaining = n
                self._state = _CHUNK_DATA
            else:
                self._state = _TRAILERS
        elif not line:
            # The empty line that ends the trailers (which are dropped).
            self._state = _DONE
            self._onEnd()
        return rest
