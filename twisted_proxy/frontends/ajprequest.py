"""
A client's request as an C{ajp://} backend gets it: one AJP13
C{FORWARD_REQUEST} packet (L{twisted_proxy.core.ajp}) with what a servlet
asks of its request: the method, the path and (apart) the query, the
client's address and port, the listener's address and port, the server
name the client asked for, whether it came over TLS and with which cipher
and protocol, the headers as this hop sends them, and the member's route and
the connector's C{secret}.
"""

from __future__ import annotations

from typing import Any

from twisted_proxy.config.model import Member, Route
from twisted_proxy.core.ajp import ForwardAttributes, forwardRequest
from twisted_proxy.core.response import Headers
from twisted_proxy.frontends.clientinfo import clientAddress, listenerPort

__all__ = ["ajpHead"]


def ajpHead(
    request: Any,
    path: bytes,
    headers: Headers,
    framing: tuple[bytes | None, int | None, bool],
    serverName: bytes,
    backend: Member | Route,
) -> bytes:
    """
    The C{FORWARD_REQUEST} packet for C{request} to go to C{path} (with its
    query) with the rewritten C{headers}; C{serverName} when the client sent
    no Host. C{framing} is the body's: already read (its bytes), its
    Content-Length, sent chunked. C{backend}, a balancer member or the
    route of one backend, has the C{secret} and (a member) the route.
    Raises L{twisted_proxy.core.ajp.AJPError} when it does not fit a packet
    (8 KiB, Tomcat's C{packetSize}).
    """
    buffered, length, chunked = framing
    route = backend.route if isinstance(backend, Member) else None
    secret = backend.secret
    uri, mark, query = path.partition(b"?")
    if buffered is not None:
        # The length of the body as read, not as the client framed it.
        headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        if buffered or length is not None:
            headers.append((b"Content-Length", b"%d" % len(buffered)))
    elif chunked:
        # Advisory only (the body travels in packets): a servlet container
        # reads a form's parameters from a body of unknown length only when
        # it says so, as mod_proxy_ajp passes it on.
        headers = [*headers, (b"Transfer-Encoding", b"chunked")]
    host = _hostName(headers) or serverName
    peerPort, localAddress = _ends(request)
    secure = bool(request.isSecure())
    cipher, bits, protocol = _tlsFacts(request) if secure else (None, None, None)
    return forwardRequest(
        request.method,
        request.clientproto or b"HTTP/1.1",
        uri,
        clientAddress(request).encode("ascii", "replace"),
        host,
        listenerPort(request),
        secure,
        headers,
        ForwardAttributes(
            queryString=query if mark else None,
            route=route.encode("utf-8") if route else None,
            secret=secret.encode("utf-8") if secret else None,
            remotePort=peerPort,
            localAddress=localAddress,
            sslCipher=cipher,
            sslKeySize=bits,
            sslProtocol=protocol,
        ),
    )


def _hostName(headers: Headers) -> bytes | None:
    """The host name of the Host header (without its port), if any."""
    for name, value in headers:
        if name.lower() == b"host":
            if value.startswith(b"["):
                # An IPv6 literal, bracketed.
                return value[: value.find(b"]") + 1]
            name, colon, _ = value.rpartition(b":")
            return name if colon else value
    return None


def _ends(request: Any) -> tuple[int | None, bytes | None]:
    """
    The client's port and the listener's address, asked of the client
    connection once.
    """
    channel = request.channel
    ends: tuple[int | None, bytes | None] | None = getattr(channel, "ajpEnds", None)
    if ends is None:
        port = getattr(request.getClientAddress(), "port", None)
        host = getattr(request.getHost(), "host", None)
        local = host.encode("ascii") if isinstance(host, str) and host else None
        ends = (port if isinstance(port, int) else None, local)
        if channel is not None:
            channel.ajpEnds = ends
    return ends


def _tlsFacts(request: Any) -> tuple[bytes | None, int | None, bytes | None]:
    """
    The client's TLS cipher, its key size and the protocol version, asked
    of the TLS connection once per client connection.
    """
    channel = request.channel
    facts: tuple[bytes | None, int | None, bytes | None] | None = getattr(
        channel, "ajpTLSFacts", None
    )
    if facts is None:
        facts = (None, None, None)
        getHandle = getattr(getattr(channel, "transport", None), "getHandle", None)
        connection: Any = getHandle() if getHandle is not None else None
        if connection is not None and hasattr(connection, "get_cipher_name"):
            cipher = connection.get_cipher_name()
            bits = connection.get_cipher_bits()
            version = connection.get_protocol_version_name()
            facts = (
                cipher.encode("ascii") if cipher else None,
                bits if isinstance(bits, int) and 0 <= bits <= 0xFFFF else None,
                version.encode("ascii") if version else None,
            )
        channel.ajpTLSFacts = facts
    return facts
