"""
The Apache JServ Protocol, version 1.3 (AJP13), as pure encoding and
parsing: what the proxy sends a servlet container (Tomcat) and reads back.

Packets from the proxy start with C{0x12 0x34} and a 2-byte length; the
container's start with C{AB}. A request is one C{FORWARD_REQUEST} packet (the
method, the target, the client's address, whether it came over TLS, its
headers with the common names coded, and attributes such as the query
string, the sticky route and the connector's C{secret}), then, when the
request has a body, body packets: the first at once, each next one when the
container asks (C{GET_BODY_CHUNK}), an empty one to end it. The container
answers with C{SEND_HEADERS}, C{SEND_BODY_CHUNK}s and C{END_RESPONSE}
(saying whether the connection may be reused). C{CPING}/C{CPONG} checks that
a container is there.

Strict both ways, as Apache learned it must be (CVE-2022-26377): no packet
longer than L{MAX_PACKET}, no body packet longer than asked or than what is
left of a declared length, every field read to its length and nothing left
over; anything else is an L{AJPError} and the connection is not used again.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CPING",
    "END_OF_BODY",
    "MAX_BODY_CHUNK",
    "MAX_PACKET",
    "AJPError",
    "BodyChunk",
    "BodyCount",
    "CPong",
    "EndResponse",
    "ForwardAttributes",
    "GetBodyChunk",
    "Message",
    "ResponseHead",
    "ResponseReader",
    "bodyPacket",
    "checkedHead",
    "forwardRequest",
]

MAX_PACKET = 8192
"""The largest packet either side sends (Tomcat's default C{packetSize})."""

MAX_BODY_CHUNK = MAX_PACKET - 6
"""The most body one packet carries: less its 4-byte head and chunk length."""

_TO_CONTAINER = b"\x12\x34"
_FROM_CONTAINER = b"AB"

CPING = _TO_CONTAINER + b"\x00\x01\x0a"
"""Is a container there? (It answers C{CPONG}.)"""

END_OF_BODY = _TO_CONTAINER + b"\x00\x00"
"""The empty body packet: the request's body is over."""

_FORWARD_REQUEST = 2
_SEND_BODY_CHUNK = 3
_SEND_HEADERS = 4
_END_RESPONSE = 5
_GET_BODY_CHUNK = 6
_CPONG = 9

_METHODS = {
    name: code
    for code, name in enumerate(
        (
            b"OPTIONS",
            b"GET",
            b"HEAD",
            b"POST",
            b"PUT",
            b"DELETE",
            b"TRACE",
            b"PROPFIND",
            b"PROPPATCH",
            b"MKCOL",
            b"COPY",
            b"MOVE",
            b"LOCK",
            b"UNLOCK",
            b"ACL",
            b"REPORT",
            b"VERSION-CONTROL",
            b"CHECKIN",
            b"CHECKOUT",
            b"UNCHECKOUT",
            b"SEARCH",
            b"MKWORKSPACE",
            b"UPDATE",
            b"LABEL",
            b"MERGE",
            b"BASELINE-CONTROL",
            b"MKACTIVITY",
        ),
        1,
    )
}
_STORED_METHOD = 0xFF

_REQUEST_HEADERS = {
    name: 0xA000 + code
    for code, name in enumerate(
        (
            b"accept",
            b"accept-charset",
            b"accept-encoding",
            b"accept-language",
            b"authorization",
            b"connection",
            b"content-type",
            b"content-length",
            b"cookie",
            b"cookie2",
            b"host",
            b"pragma",
            b"referer",
            b"user-agent",
        ),
        1,
    )
}

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

# Attribute codes.
_REMOTE_USER = 0x03
_AUTH_TYPE = 0x04
_QUERY_STRING = 0x05
_JVM_ROUTE = 0x06
_SSL_CERT = 0x07
_SSL_CIPHER = 0x08
_SSL_KEY_SIZE = 0x0B
_REQ_ATTRIBUTE = 0x0A
_SECRET = 0x0C
_STORED_METHOD_ATTRIBUTE = 0x0D
_ARE_DONE = 0xFF


class AJPError(ValueError):
    """Bytes or values that are not AJP13 as this proxy speaks it."""


@dataclass(slots=True)
class ForwardAttributes:
    """
    The attributes of a request. Tomcat answers 403 to request attributes
    its connector's C{allowedRequestAttributesPattern} does not allow, so
    only those it knows are sent (C{AJP_REMOTE_PORT}, C{AJP_LOCAL_ADDR},
    C{AJP_SSL_PROTOCOL}) besides the coded ones.
    """

    queryString: bytes | None = None
    route: bytes | None = None
    secret: bytes | None = None
    remoteUser: bytes | None = None
    authType: bytes | None = None
    remotePort: int | None = None
    localAddress: bytes | None = None
    sslCipher: bytes | None = None
    sslKeySize: int | None = None
    sslProtocol: bytes | None = None
    sslCertificate: bytes | None = None


_pack16 = struct.Struct("!H").pack
_NONE = b"\xff\xff"
"""A string that is absent (its length 0xFFFF, no bytes)."""

# Each header name seen, as it goes on the wire (its code, or the string),
# by the name as written: a bounded cache.
_HEADER_NAMES: dict[bytes, bytes] = {}
_HEADER_NAMES_KEPT = 512


def _headerName(name: bytes) -> bytes:
    """C{name} as a request header's name goes on the wire (and cached)."""
    code = _REQUEST_HEADERS.get(name.lower())
    if code is not None:
        wire = _pack16(code)
    elif len(name) >= 0xA000 or 0 in name or not name:
        raise AJPError(f"a header name AJP cannot carry: {name[:40]!r}")
    else:
        wire = _pack16(len(name)) + name + b"\x00"
    if len(_HEADER_NAMES) >= _HEADER_NAMES_KEPT:
        _HEADER_NAMES.clear()
    _HEADER_NAMES[name] = wire
    return wire


def _string(value: bytes | None) -> bytes:
    if value is None:
        return _NONE
    if 0 in value:
        raise AJPError("a NUL byte in an AJP string")
    if len(value) >= 0xFFFF:
        raise AJPError("an AJP string longer than 65534 bytes")
    return _pack16(len(value)) + value + b"\x00"


def _integer(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise AJPError(f"{value} does not fit an AJP integer")
    return _pack16(value)


def _packet(body: bytes) -> bytes:
    if len(body) + 4 > MAX_PACKET:
        raise AJPError(
            f"an AJP packet of {len(body) + 4} bytes, more than {MAX_PACKET}"
        )
    return _TO_CONTAINER + _pack16(len(body)) + body


def forwardRequest(
    method: bytes,
    protocol: bytes,
    uri: bytes,
    remoteAddress: bytes,
    serverName: bytes,
    serverPort: int,
    secure: bool,
    headers: Sequence[tuple[bytes, bytes]],
    attributes: ForwardAttributes | None = None,
) -> bytes:
    """
    The C{FORWARD_REQUEST} packet: C{uri} without its query (that goes in
    C{attributes}), C{headers} as (name, value) pairs as they should reach
    the container. Raises L{AJPError} when it does not fit one packet.
    """
    code = _METHODS.get(method.upper())
    parts = [
        bytes((_FORWARD_REQUEST, code if code is not None else _STORED_METHOD)),
        _string(protocol),
        _string(uri),
        _string(remoteAddress),
        _string(remoteAddress),
        _string(serverName),
        _integer(serverPort),
        b"\x01" if secure else b"\x00",
        _integer(len(headers)),
    ]
    append = parts.append
    known = _HEADER_NAMES.get
    pack = _pack16
    # Each header's name and value written out here rather than by
    # _string: this loop is most of a request's packet.
    for name, value in headers:
        wire = known(name)
        if wire is None:
            wire = _headerName(name)
        size = len(value)
        if size >= 0xFFFF or 0 in value:
            raise AJPError(f"a header value AJP cannot carry: {name[:40]!r}")
        append(wire + pack(size) + value + b"\x00")
    if attributes is not None:
        _attributes(append, attributes, method if code is None else None)
    elif code is None:
        append(bytes((_STORED_METHOD_ATTRIBUTE,)) + _string(method))
    append(bytes((_ARE_DONE,)))
    return _packet(b"".join(parts))


def _attributes(
    append: Callable[[bytes], None], a: ForwardAttributes, storedMethod: bytes | None
) -> None:
    if a.remoteUser is not None:
        append(bytes((_REMOTE_USER,)) + _string(a.remoteUser))
    if a.authType is not None:
        append(bytes((_AUTH_TYPE,)) + _string(a.authType))
    if a.queryString is not None:
        append(bytes((_QUERY_STRING,)) + _string(a.queryString))
    if a.route is not None:
        append(bytes((_JVM_ROUTE,)) + _string(a.route))
    if a.sslCertificate is not None:
        append(bytes((_SSL_CERT,)) + _string(a.sslCertificate))
    if a.sslCipher is not None:
        append(bytes((_SSL_CIPHER,)) + _string(a.sslCipher))
    if a.sslKeySize is not None:
        append(bytes((_SSL_KEY_SIZE,)) + _integer(a.sslKeySize))
    if a.remotePort is not None:
        append(_REMOTE_PORT + _string(b"%d" % a.remotePort))
    if a.localAddress is not None:
        append(_LOCAL_ADDR + _string(a.localAddress))
    if a.sslProtocol is not None:
        append(_SSL_PROTOCOL + _string(a.sslProtocol))
    if a.secret is not None:
        append(bytes((_SECRET,)) + _string(a.secret))
    if storedMethod is not None:
        append(bytes((_STORED_METHOD_ATTRIBUTE,)) + _string(storedMethod))


# The named attributes' code and name, as they go on the wire.
_REMOTE_PORT = bytes((_REQ_ATTRIBUTE,)) + _string(b"AJP_REMOTE_PORT")
_LOCAL_ADDR = bytes((_REQ_ATTRIBUTE,)) + _string(b"AJP_LOCAL_ADDR")
_SSL_PROTOCOL = bytes((_REQ_ATTRIBUTE,)) + _string(b"AJP_SSL_PROTOCOL")


def bodyPacket(data: bytes) -> bytes:
    """One body packet: at most L{MAX_BODY_CHUNK} bytes of the request body."""
    if not data:
        raise AJPError("an empty body packet ends the body: use END_OF_BODY")
    if len(data) > MAX_BODY_CHUNK:
        raise AJPError(f"{len(data)} body bytes, more than one packet carries")
    return _packet(_pack16(len(data)) + data)


# -- what the container sends --


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
