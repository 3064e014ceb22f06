"""
What a servlet container sends back over AJP13 (the requests are
L{twisted_proxy.core.ajp}'s): C{SEND_HEADERS}, C{SEND_BODY_CHUNK}s, then
C{END_RESPONSE}, with C{GET_BODY_CHUNK} when it wants more of the request's
body and C{CPONG} for a C{CPING}, read from any pieces of the stream.

Strict, as Apache learned it must be (CVE-2022-26377): every field read to
its length and nothing left over, no packet longer than L{MAX_PACKET}; and
an answer is held to what an HTTP/1.1 backend may send (L{checkedHead}),
its body counted against its Content-Length (L{BodyCount}). Anything else is
an L{AJPError} and the connection is not used again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from twisted_proxy.core.ajp import MAX_PACKET, AJPError

__all__ = [
    "BodyChunk",
    "BodyCount",
    "CPong",
    "EndResponse",
    "GetBodyChunk",
    "Message",
    "ResponseHead",
    "ResponseReader",
    "checkedHead",
]

_SEND_BODY_CHUNK = 3
_SEND_HEADERS = 4
_END_RESPONSE = 5
_GET_BODY_CHUNK = 6
_CPONG = 9

_RESPONSE_HEADERS = {
    0xA000 + code: name
    for code, name in enumerate(
        (
            b"Content-Type",
            b"Content-Language",
            b"Content-Length",
            b"Date",
            b"Last-Modified",
            b"Location",
            b"Set-Cookie",
            b"Set-Cookie2",
            b"Servlet-Engine",
            b"Status",
            b"WWW-Authenticate",
        ),
        1,
    )
}


@dataclass(slots=True)
class ResponseHead:
    """C{SEND_HEADERS}: the status, its reason and the headers."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class BodyChunk:
    """C{SEND_BODY_CHUNK}: a piece of the response body."""

    data: bytes


@dataclass(slots=True)
class GetBodyChunk:
    """C{GET_BODY_CHUNK}: the container wants up to C{size} more body bytes."""

    size: int


@dataclass(slots=True)
class EndResponse:
    """C{END_RESPONSE}: the response is over; C{reuse} the connection or not."""

    reuse: bool


@dataclass(slots=True)
class CPong:
    """C{CPONG}: the container answered a C{CPING}."""


Message = ResponseHead | BodyChunk | GetBodyChunk | EndResponse | CPong


class ResponseReader:
    """
    The container's packets, parsed as they arrive in any pieces. A
    connection whose bytes raise L{AJPError} is not to be used again.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Message]:
        """The whole messages C{data} completes, in order."""
        buffer = self._buffer + data if self._buffer else data
        messages: list[Message] = []
        at = 0
        total = len(buffer)
        while total - at >= 4:
            if buffer[at] != 0x41 or buffer[at + 1] != 0x42:
                raise AJPError("a packet that does not start with AB")
            size = buffer[at + 2] << 8 | buffer[at + 3]
            if size == 0 or size + 4 > MAX_PACKET:
                raise AJPError(f"a packet of {size} bytes")
            end = at + 4 + size
            if end > total:
                break
            messages.append(_message(buffer, at + 4, end))
            at = end
        self._buffer = buffer[at:] if at < total else b""
        return messages

    @property
    def pending(self) -> int:
        """Bytes received that are not a whole packet yet."""
        return len(self._buffer)


def _short() -> AJPError:
    return AJPError("a packet shorter than its fields")


def _leftover(count: int) -> AJPError:
    return AJPError(f"{count} bytes after a message's fields")


def _message(data: bytes, at: int, end: int) -> Message:
    """The message in C{data[at:end]}, each field read to its length."""
    kind = data[at]
    size = end - at
    if kind == _SEND_BODY_CHUNK:
        if size < 3:
            raise _short()
        length = data[at + 1] << 8 | data[at + 2]
        stop = at + 3 + length
        if stop > end:
            raise AJPError("a body chunk longer than its packet")
        # Tomcat ends a chunk with a NUL that its length does not count.
        if end - stop == 1:
            if data[stop] != 0:
                raise AJPError("a body chunk followed by a byte that is not NUL")
        elif end != stop:
            raise _leftover(end - stop)
        return BodyChunk(data[at + 3 : stop])
    if kind == _SEND_HEADERS:
        return _head(data, at + 1, end)
    if kind == _END_RESPONSE:
        if size < 2:
            raise _short()
        if size > 2:
            raise _leftover(size - 2)
        reuse = data[at + 1]
        if reuse not in (0, 1):
            raise AJPError(f"END_RESPONSE with reuse {reuse}")
        return EndResponse(reuse == 1)
    if kind == _GET_BODY_CHUNK:
        if size < 3:
            raise _short()
        if size > 3:
            raise _leftover(size - 3)
        return GetBodyChunk(data[at + 1] << 8 | data[at + 2])
    if kind == _CPONG:
        if size > 1:
            raise _leftover(size - 1)
        return CPong()
    raise AJPError(f"an unknown message {kind} from the container")


def _stringAt(data: bytes, at: int, end: int, size: int) -> tuple[bytes | None, int]:
    """
    The string whose 2-byte length C{size} was read, its bytes from C{at}
    on (no further than C{end}), and where the next field starts.
    """
    if size == 0xFFFF:
        return None, at
    stop = at + size
    if stop >= end or data[stop] != 0:
        raise AJPError("an AJP string that does not end where it says")
    return data[at:stop], stop + 1


def _head(data: bytes, at: int, end: int) -> ResponseHead:
    if end - at < 4:
        raise _short()
    status = data[at] << 8 | data[at + 1]
    if not 100 <= status <= 999:
        raise AJPError(f"status {status}")
    reason, at = _stringAt(data, at + 4, end, data[at + 2] << 8 | data[at + 3])
    if at + 2 > end:
        raise _short()
    count = data[at] << 8 | data[at + 1]
    at += 2
    headers = []
    responseHeaders = _RESPONSE_HEADERS
    for _ in range(count):
        if at + 2 > end:
            raise _short()
        peek = data[at] << 8 | data[at + 1]
        at += 2
        if peek >= 0xA000:
            name = responseHeaders.get(peek)
            if name is None:
                raise AJPError(f"an unknown coded header {peek:#x}")
        else:
            # A header name as a string: its length was the integer read.
            named, at = _stringAt(data, at, end, peek)
            if not named:
                raise AJPError("an empty header name")
            name = named
        if at + 2 > end:
            raise _short()
        size = data[at] << 8 | data[at + 1]
        if size == 0xFFFF:
            raise AJPError(f"no value for header {name!r}")
        stop = at + 2 + size
        if stop >= end or data[stop] != 0:
            raise AJPError("an AJP string that does not end where it says")
        headers.append((name, data[at + 2 : stop]))
        at = stop + 1
    if at != end:
        raise _leftover(end - at)
    return ResponseHead(status, reason or b"", headers)


# RFC 9110 5.6.2: token = 1*tchar.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# Anything but HTAB, SP, VCHAR and obs-text (RFC 9112 4 and RFC 9110 5.5).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Header names joined by LF: each one a token.
_TOKENS = re.compile(
    rb"(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+(?:\n[-!#$%&'*+.^_`|~0-9A-Za-z]+)*)?"
)


@dataclass
class BodyCount:
    """
    What of a response body may still come: its declared length, counted
    down (None: as much as the container sends, until C{END_RESPONSE}), or
    none at all (a HEAD request's, a 204's, a 304's).
    """

    left: int | None
    allowed: bool = True
    dated: bool = True
    """Whether the container sent a Date (Tomcat does not over AJP)."""

    def take(self, size: int) -> None:
        """C{size} more body bytes arrived; L{AJPError} when more than due."""
        if not size:
            return
        if not self.allowed:
            raise AJPError("a body chunk in a response that has no body")
        if self.left is not None:
            if size > self.left:
                raise AJPError("a body longer than its Content-Length")
            self.left -= size

    def end(self) -> None:
        """C{END_RESPONSE} arrived; L{AJPError} if the body fell short."""
        if self.allowed and self.left:
            raise AJPError(f"a body {self.left} bytes short of its Content-Length")


def checkedHead(head: ResponseHead, method: bytes) -> BodyCount:
    """
    Hold C{SEND_HEADERS} to what an HTTP/1.1 response may say, as a
    backend's status line and headers are held (a status of 200 to 599, a
    reason and values with no control byte but HTAB, names that are
    tokens, one Content-Length of digits), and say what body may follow for
    a request of C{method}, and whether the container sent a Date. Raises
    L{AJPError} at the first fault: these go to the client as they are, so
    a CR or LF must never pass.
    """
    if not 200 <= head.status <= 599:
        raise AJPError(f"status {head.status} as a final response")
    if _CONTROL.search(head.reason) is not None:
        raise AJPError("a control byte in the reason phrase")
    headers = head.headers
    # All names and all values checked at once; one by one only to say
    # which is at fault.
    names = b"\n".join([name for name, _ in headers])
    values = b"\t".join([value for _, value in headers])
    if _TOKENS.fullmatch(names) is None or _CONTROL.search(values) is not None:
        for name, value in headers:
            if _TOKEN.fullmatch(name) is None:
                raise AJPError(f"a header name that is not a token: {name[:40]!r}")
            if _CONTROL.search(value) is not None:
                raise AJPError(f"a control byte in the value of {name.decode()}")
    lowered = b"\n" + names.lower() + b"\n"
    length: int | None = None
    if lowered.find(b"\ncontent-length\n") >= 0:
        for name, value in headers:
            if name.lower() == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    raise AJPError(f"Content-Length {value[:40]!r}")
                if length is not None and int(value) != length:
                    raise AJPError("conflicting Content-Length headers")
                length = int(value)
    allowed = method != b"HEAD" and head.status not in (204, 304)
    return BodyCount(length, allowed, lowered.find(b"\ndate\n") >= 0)
