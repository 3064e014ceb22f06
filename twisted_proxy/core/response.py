"""
An HTTP/1.1 response parser with no I/O: bytes in, callbacks out.

It frames a backend's response (status line, headers, then a body delimited by
Content-Length, chunked coding or the connection's close) and hands the
decoded body on as it arrives, never holding a whole body. It knows the
request method so that HEAD, 1xx, 204 and 304 responses end at their headers.

A backend is held to the grammar a client is: a status line of exactly
C{HTTP/1.x SP 3DIGIT [SP reason]}, header names that are tokens, no control
byte but HTAB in a reason or a value (so no CR or LF outside a CRLF), a head
of at most 64 KiB with its interim responses, no 101 unless one was asked
for, and a chunked body decoded by the very decoder a client's request body
is (L{twisted_proxy.core.chunked}). What breaks it is a L{ResponseParseError}
whose text names the fault, quoting at most a few dozen of the backend's bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twisted_proxy.core.chunked import ChunkedDecoder, ChunkedError

Headers = list[tuple[bytes, bytes]]

_MAX_HEAD = 65536
"""Bytes of response head (interim heads included), blank line included."""
_MAX_INTERIM = 16
_SHOWN = 40
"""How many of the backend's bytes a fault quotes."""
_VERSION = re.compile(rb"HTTP/1\.[0-9]")
# RFC 9110 5.6.2: token = 1*tchar.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# Anything but HTAB, SP, VCHAR and obs-text (RFC 9112 4 and RFC 9110 5.5).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


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
_CHUNKS = 2
_DONE = 3


def _shown(data: bytes) -> str:
    """C{data} quoted for a fault, cut short so a backend cannot flood the log."""
    if len(data) > _SHOWN:
        return f"{data[:_SHOWN]!r}..."
    return repr(data)


def _parseHead(head: bytes) -> tuple[bytes, int, bytes, Headers]:
    """
    Parse a response head (without its blank line) into version, status,
    reason and headers; raise L{ResponseParseError} at the first fault.
    """
    lines = head.split(b"\r\n")
    # A CR or LF left in a line was not part of a CRLF: the control-byte checks
    # of the reason, the names and the values below refuse it.
    statusLine = lines[0]
    version, sep, rest = statusLine.partition(b" ")
    if not sep or _VERSION.fullmatch(version) is None:
        raise ResponseParseError(f"bad status line {_shown(statusLine)}")
    code, _, reason = rest.partition(b" ")
    if not code:
        raise ResponseParseError(f"bad status line {_shown(statusLine)}")
    if len(code) != 3 or not code.isdigit() or not b"100" <= code <= b"599":
        raise ResponseParseError(f"bad status code {_shown(code)}")
    if _CONTROL.search(reason) is not None:
        raise ResponseParseError("control character in the reason phrase")
    headers: Headers = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            # Obsolete line folding (RFC 9112 5.2): replaced by a space, the
            # folded part held to the same rules as the value it extends.
            if not headers:
                raise ResponseParseError("continuation line before any header")
            foldedName, folded = headers[-1]
            more = line.strip(b" \t")
            if _CONTROL.search(more) is not None:
                raise ResponseParseError(
                    f"control character in the value of {_shown(foldedName)}"
                )
            if more:
                headers[-1] = (foldedName, folded + b" " + more if folded else more)
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ResponseParseError(f"bad header line {_shown(line)}")
        if _TOKEN.fullmatch(name) is None:
            raise ResponseParseError(f"header name is not a token: {_shown(name)}")
        value = value.strip(b" \t")
        if _CONTROL.search(value) is not None:
            raise ResponseParseError(
                f"control character in the value of {_shown(name)}"
            )
        headers.append((name, value))
    return version, int(code), reason, headers


class ResponseParser:
    """
    Parse one response at a time from a backend connection.

    :param onHead: called with (status, reason, headers) once the head is in;
        interim 1xx responses (other than 101) are skipped, up to 16 of them.
    :param onData: called with each piece of decoded body.
    :param onEnd: called when the response is complete.
    :param onInterim: called with the status of each interim response
        skipped (a 100 Continue the client may be waiting for).
    """

    def __init__(
        self,
        onHead: Callable[[int, bytes, Headers], object],
        onData: Callable[[bytes], object],
        onEnd: Callable[[], object],
        onInterim: Callable[[int], object] | None = None,
    ) -> None:
        self._onHead = onHead
        self._onData = onData
        self._onEnd = onEnd
        self._onInterim = onInterim
        self._state = _DONE
        self._buffer = b""
        self._remaining = 0
        self.framing = _NONE
        self.keepAlive = False
        self.bodyStarted = False
        self.bytesReceived = 0
        self._method = b""
        self._allowUpgrade = False
        self._headBytes = 0
        self._interim = 0
        self._scanned = 0
        self._chunks: ChunkedDecoder | None = None

    def expect(self, method: bytes, allowUpgrade: bool = False) -> None:
        """
        Get ready for the response to a request made with C{method}.

        :param allowUpgrade: whether the request asked for an upgrade, so that
            a 101 is its answer; otherwise a 101 is a fault (the backend would
            take the connection over for a protocol nobody agreed to).
        """
        self._method = method
        self._allowUpgrade = allowUpgrade
        self._state = _HEAD
        self._buffer = b""
        self._headBytes = 0
        self._interim = 0
        self._scanned = 0
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
            elif state == _CHUNKS:
                data = self._feedChunks(data)
            else:
                return data
        return b""

    @property
    def lengthLeft(self) -> int:
        """
        The bytes of a Content-Length body still to come, when nothing of
        them is buffered here (so they may be taken from the socket by
        someone else, see L{moved}); 0 otherwise.
        """
        if self._state == _BODY and self.framing == _LENGTH and not self._buffer:
            return self._remaining
        return 0

    def moved(self, count: int) -> None:
        """
        C{count} bytes of the body went from the backend to the client past
        this parser (spliced): counted as received, and the response ends
        when they were the last.
        """
        if count > self.lengthLeft:
            raise ValueError(f"{count} bytes moved, {self.lengthLeft} expected")
        self.bytesReceived += count
        self._remaining -= count
        if not self._remaining:
            self._state = _DONE
            self._ended(b"")

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
        budget = _MAX_HEAD - self._headBytes
        # Only a blank line within the budget ends an acceptable head, however
        # much arrived at once.
        end = data.find(b"\r\n\r\n", self._scanned, budget)
        if end < 0:
            if len(data) >= budget:
                raise ResponseParseError(f"response head larger than {_MAX_HEAD} bytes")
            if data.count(b"\n") != data.count(b"\r\n"):
                # A head of bare-LF lines never ends in CRLF CRLF: refused now,
                # not after the backend timeout.
                raise ResponseParseError("bare LF in the response head")
            self._buffer = data
            # A head trickled in byte by byte is not searched again from its start.
            self._scanned = max(0, len(data) - 3)
            return b""
        self._scanned = 0
        head, rest = data[:end], data[end + 4 :]
        version, status, reason, headers = _parseHead(head)
        if status == 101 and not self._allowUpgrade:
            raise ResponseParseError("unrequested 101 Switching Protocols")
        if 100 <= status < 200 and status != 101:
            # Interim response (100 Continue, 103 Early Hints): wait for the real one.
            self._interim += 1
            if self._interim > _MAX_INTERIM:
                raise ResponseParseError(f"more than {_MAX_INTERIM} interim responses")
            self._headBytes += end + 4
            if self._onInterim is not None:
                self._onInterim(status)
            return rest
        self._startBody(version, status, headers)
        if self.framing == _CHUNKED:
            # RFC 9112 6.3: a Content-Length beside chunked coding is wrong
            # and must not reach the client, who would frame by it.
            headers = [h for h in headers if h[0].lower() != b"content-length"]
        self.bodyStarted = True
        self._onHead(status, reason, headers)
        if self._state == _DONE:
            self._ended(rest)
        return rest

    def _startBody(self, version: bytes, status: int, headers: Headers) -> None:
        length: int | None = None
        chunked = False
        connection = b""
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                # Eighteen digits are an exabyte; more would only slow int() down
                # (or make it raise, past 4300).
                if not value.isdigit() or len(value) > 18:
                    raise ResponseParseError(f"bad Content-Length {_shown(value)}")
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
        if status == 101:
            # What follows is another protocol: never an HTTP connection again.
            self.framing = _NONE
            self._state = _DONE
            self.keepAlive = False
        elif self._method == b"HEAD" or status in (204, 304):
            self.framing = _NONE
            self._state = _DONE
        elif chunked:
            self.framing = _CHUNKED
            self._state = _CHUNKS
            # Its end is told by done, after the bytes past it are known.
            self._chunks = ChunkedDecoder(self._onData, lambda: None)
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
        self._ended(rest)
        return rest

    def _feedChunks(self, data: bytes) -> bytes:
        chunks = self._chunks
        assert chunks is not None
        try:
            rest = chunks.feed(data)
        except ChunkedError as e:
            raise ResponseParseError(str(e)) from None
        if chunks.done:
            self._chunks = None
            self._state = _DONE
            self._ended(rest)
        return rest

    def _ended(self, rest: bytes) -> None:
        """
        The response is complete; C{rest} arrived with its end. A backend that
        sends more than it was asked for is confused or smuggling a response:
        its connection is not to be asked again.
        """
        if rest:
            self.keepAlive = False
        self._onEnd()
