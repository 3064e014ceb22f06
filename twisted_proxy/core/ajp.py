"""
The Apache JServ Protocol, version 1.3 (AJP13), as pure encoding: what the
proxy sends a servlet container (Tomcat). What it reads back is
L{twisted_proxy.core.ajpreply}'s.

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

Strict, as Apache learned it must be (CVE-2022-26377): no packet longer than
L{MAX_PACKET}, no body packet longer than one packet carries, no string with
a NUL; anything else is an L{AJPError}.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "CPING",
    "END_OF_BODY",
    "MAX_BODY_CHUNK",
    "MAX_PACKET",
    "AJPError",
    "ForwardAttributes",
    "bodyPacket",
    "forwardRequest",
]

MAX_PACKET = 8192
"""The largest packet either side sends (Tomcat's default C{packetSize})."""

MAX_BODY_CHUNK = MAX_PACKET - 6
"""The most body one packet carries: less its 4-byte head and chunk length."""

_TO_CONTAINER = b"\x12\x34"

CPING = _TO_CONTAINER + b"\x00\x01\x0a"
"""Is a container there? (It answers C{CPONG}.)"""

END_OF_BODY = _TO_CONTAINER + b"\x00\x00"
"""The empty body packet: the request's body is over."""

_FORWARD_REQUEST = 2

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
