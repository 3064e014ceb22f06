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
from collections.abc import Iterable, Sequence
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


@dataclass(frozen=True)
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


def _string(value: bytes | None) -> bytes:
    if value is None:
        return b"\xff\xff"
    if b"\x00" in value:
        raise AJPError("a NUL byte in an AJP string")
    if len(value) >= 0xFFFF:
        raise AJPError("an AJP string longer than 65534 bytes")
    return struct.pack("!H", len(value)) + value + b"\x00"


def _integer(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise AJPError(f"{value} does not fit an AJP integer")
    return struct.pack("!H", value)


def _packet(body: bytes) -> bytes:
    if len(body) + 4 > MAX_PACKET:
        raise AJPError(
            f"an AJP packet of {len(body) + 4} bytes, more than {MAX_PACKET}"
        )
    return _TO_CONTAINER + struct.pack("!H", len(body)) + body


def forwardRequest(
    method: bytes,
    protocol: bytes,
    uri: bytes,
    remoteAddress: bytes,
    serverName: bytes,
    serverPort: int,
    secure: bool,
    headers: Sequence[tuple[bytes, bytes]],
    attributes: ForwardAttributes = ForwardAttributes(),
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
    for name, value in headers:
        coded = _REQUEST_HEADERS.get(name.lower())
        parts.append(_integer(coded) if coded is not None else _string(name))
        parts.append(_string(value))
    parts.extend(_attributes(attributes, method if code is None else None))
    parts.append(bytes((_ARE_DONE,)))
    return _packet(b"".join(parts))


def _attributes(a: ForwardAttributes, storedMethod: bytes | None) -> Iterable[bytes]:
    def coded(code: int, value: bytes | None) -> Iterable[bytes]:
        if value is not None:
            yield bytes((code,)) + _string(value)

    def named(name: bytes, value: bytes | None) -> Iterable[bytes]:
        if value is not None:
            yield bytes((_REQ_ATTRIBUTE,)) + _string(name) + _string(value)

    yield from coded(_REMOTE_USER, a.remoteUser)
    yield from coded(_AUTH_TYPE, a.authType)
    yield from coded(_QUERY_STRING, a.queryString)
    yield from coded(_JVM_ROUTE, a.route)
    yield from coded(_SSL_CERT, a.sslCertificate)
    yield from coded(_SSL_CIPHER, a.sslCipher)
    if a.sslKeySize is not None:
        yield bytes((_SSL_KEY_SIZE,)) + _integer(a.sslKeySize)
    if a.remotePort is not None:
        yield from named(b"AJP_REMOTE_PORT", b"%d" % a.remotePort)
    yield from named(b"AJP_LOCAL_ADDR", a.localAddress)
    yield from named(b"AJP_SSL_PROTOCOL", a.sslProtocol)
    yield from coded(_SECRET, a.secret)
    yield from coded(_STORED_METHOD_ATTRIBUTE, storedMethod)


def bodyPacket(data: bytes) -> bytes:
    """One body packet: at most L{MAX_BODY_CHUNK} bytes of the request body."""
    if not data:
        raise AJPError("an empty body packet ends the body: use END_OF_BODY")
    if len(data) > MAX_BODY_CHUNK:
        raise AJPError(f"{len(data)} body bytes, more than one packet carries")
    return _packet(struct.pack("!H", len(data)) + data)


# -- what the container sends --


@dataclass(frozen=True)
class ResponseHead:
    """C{SEND_HEADERS}: the status, its reason and the headers."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class BodyChunk:
    """C{SEND_BODY_CHUNK}: a piece of the response body."""

    data: bytes


@dataclass(frozen=True)
class GetBodyChunk:
    """C{GET_BODY_CHUNK}: the container wants up to C{size} more body bytes."""

    size: int


@dataclass(frozen=True)
class EndResponse:
    """C{END_RESPONSE}: the response is over; C{reuse} the connection or not."""

    reuse: bool


@dataclass(frozen=True)
class CPong:
    """C{CPONG}: the container answered a C{CPING}."""


Message = ResponseHead | BodyChunk | GetBodyChunk | EndResponse | CPong


class _Fields:
    """Reads one packet's fields, each to its length and no further."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def byte(self) -> int:
        if self._at >= len(self._data):
            raise AJPError("a packet shorter than its fields")
        value = self._data[self._at]
        self._at += 1
        return value

    def integer(self) -> int:
        end = self._at + 2
        if end > len(self._data):
            raise AJPError("a packet shorter than its fields")
        value = int.from_bytes(self._data[self._at : end], "big")
        self._at = end
        return value

    def string(self) -> bytes | None:
        return self.stringOf(self.integer())

    def stringOf(self, size: int) -> bytes | None:
        """A string whose 2-byte length, C{size}, was read already."""
        if size == 0xFFFF:
            return None
        end = self._at + size
        if end + 1 > len(self._data) or self._data[end] != 0:
            raise AJPError("an AJP string that does not end where it says")
        value = self._data[self._at : end]
        self._at = end + 1
        return value

    def raw(self, size: int) -> bytes:
        end = self._at + size
        if end > len(self._data):
            raise AJPError("a body chunk longer than its packet")
        value = self._data[self._at : end]
        self._at = end
        return value

    def rest(self) -> int:
        return len(self._data) - self._at


class ResponseReader:
    """
    The container's packets, parsed as they arrive in any pieces. A
    connection whose bytes raise L{AJPError} is not to be used again.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Message]:
        """The whole messages C{data} completes, in order."""
        buffer = self._buffer + data
        messages: list[Message] = []
        while len(buffer) >= 4:
            if buffer[:2] != _FROM_CONTAINER:
                raise AJPError("a packet that does not start with AB")
            size = int.from_bytes(buffer[2:4], "big")
            if size == 0 or size + 4 > MAX_PACKET:
                raise AJPError(f"a packet of {size} bytes")
            if len(buffer) < size + 4:
                break
            messages.append(_message(buffer[4 : size + 4]))
            buffer = buffer[size + 4 :]
        self._buffer = buffer
        return messages

    @property
    def pending(self) -> int:
        """Bytes received that are not a whole packet yet."""
        return len(self._buffer)


def _message(packet: bytes) -> Message:
    fields = _Fields(packet)
    kind = fields.byte()
    message: Message
    if kind == _SEND_BODY_CHUNK:
        size = fields.integer()
        message = BodyChunk(fields.raw(size))
        # Tomcat ends a chunk with a NUL that its length does not count.
        if fields.rest() == 1 and fields.byte() != 0:
            raise AJPError("a body chunk followed by a byte that is not NUL")
    elif kind == _SEND_HEADERS:
        message = _head(fields)
    elif kind == _END_RESPONSE:
        reuse = fields.byte()
        if reuse not in (0, 1):
            raise AJPError(f"END_RESPONSE with reuse {reuse}")
        message = EndResponse(reuse == 1)
    elif kind == _GET_BODY_CHUNK:
        message = GetBodyChunk(fields.integer())
    elif kind == _CPONG:
        message = CPong()
    else:
        raise AJPError(f"an unknown message {kind} from the container")
    if fields.rest():
        raise AJPError(f"{fields.rest()} bytes after a message's fields")
    return message


def _head(fields: _Fields) -> ResponseHead:
    status = fields.integer()
    if not 100 <= status <= 999:
        raise AJPError(f"status {status}")
    reason = fields.string() or b""
    headers = []
    for _ in range(fields.integer()):
        peek = fields.integer()
        if peek >= 0xA000:
            name = _RESPONSE_HEADERS.get(peek)
            if name is None:
                raise AJPError(f"an unknown coded header {peek:#x}")
        else:
            # A header name as a string: its length was the integer read.
            named = fields.stringOf(peek)
            if not named:
                raise AJPError("an empty header name")
            name = named
        value = fields.string()
        if value is None:
            raise AJPError(f"no value for header {name!r}")
        headers.append((name, value))
    return ResponseHead(status, reason, headers)


# RFC 9110 5.6.2: token = 1*tchar.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# Anything but HTAB, SP, VCHAR and obs-text (RFC 9112 4 and RFC 9110 5.5).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass
class BodyCount:
    """
    What of a response body may still come: its declared length, counted
    down (None: as much as the container sends, until C{END_RESPONSE}), or
    none at all (a HEAD request's, a 204's, a 304's).
    """

    left: int | None
    allowed: bool = True

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
    a request of C{method}. Raises L{AJPError} at the first fault: these
    go to the client as they are, so a CR or LF must never pass.
    """
    if not 200 <= head.status <= 599:
        raise AJPError(f"status {head.status} as a final response")
    if _CONTROL.search(head.reason) is not None:
        raise AJPError("a control byte in the reason phrase")
    length: int | None = None
    for name, value in head.headers:
        if _TOKEN.fullmatch(name) is None:
            raise AJPError(f"a header name that is not a token: {name[:40]!r}")
        if _CONTROL.search(value) is not None:
            raise AJPError(f"a control byte in the value of {name.decode()}")
        if name.lower() == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise AJPError(f"Content-Length {value[:40]!r}")
            if length is not None and int(value) != length:
                raise AJPError("conflicting Content-Length headers")
            length = int(value)
    allowed = method != b"HEAD" and head.status not in (204, 304)
    return BodyCount(length, allowed)
