"""
What the relay reads of a client's request, for HTTP requests and WebSocket
handshakes alike: its address, scheme and port (asked of the channel once per
connection), its headers in order, what the balancer may look at, and the
error page when the proxy answers it itself.
"""

from __future__ import annotations

from typing import Any

from twisted_proxy.balancer.keys import RequestFacts, headerLookup
from twisted_proxy.core.headers import ClientInfo
from twisted_proxy.frontends.request import ProxiedRequest, errorHeaders, hostHeader

__all__ = [
    "clientAddress",
    "clientInfo",
    "clientScheme",
    "headerPairs",
    "listenerPort",
    "requestFacts",
    "respondError",
]


def clientScheme(request: Any) -> str:
    """The scheme the client used: asked of the channel once per connection."""
    channel = request.channel
    scheme: str | None = getattr(channel, "scheme", None)
    if scheme is None:
        scheme = "https" if request.isSecure() else "http"
        channel.scheme = scheme
    return scheme


def listenerPort(request: Any) -> int:
    """The port the client connected to (for X-Forwarded-Port), once per connection."""
    channel = request.channel
    port: int | None = getattr(channel, "listenerPort", None)
    if port is None:
        port = int(getattr(request.getHost(), "port", 0))
        channel.listenerPort = port
    return port


def headerPairs(request: Any) -> list[tuple[bytes, bytes]]:
    """The request's headers as (name, value) pairs, in order."""
    headers = request.requestHeaders
    pairs = getattr(headers, "pairs", None)
    if pairs is not None:
        return pairs()  # type: ignore[no-any-return]
    # twisted.web's Headers
    return [(n, v) for n, vs in headers.getAllRawHeaders() for v in vs]


def requestFacts(request: Any, pairs: list[tuple[bytes, bytes]]) -> RequestFacts:
    """What stickiness and hashing may look at in C{request}."""
    return RequestFacts(
        clientAddress=clientAddress(request),
        target=request.uri,
        header=headerLookup(pairs),
        secure=clientScheme(request) == "https",
    )


def clientAddress(request: Any) -> str:
    """
    The client's IP address, as text ("" when it has none): asked of the
    channel once per connection.
    """
    channel = request.channel
    text: str | None = getattr(channel, "clientAddressText", None)
    if text is None:
        address = request.getClientAddress()
        text = str(getattr(address, "host", "") or "")
        if channel is not None:
            channel.clientAddressText = text
    return text


def clientInfo(request: Any) -> ClientInfo:
    """What the forwarding headers say of the client."""
    return ClientInfo(
        address=clientAddress(request),
        scheme=clientScheme(request),
        port=listenerPort(request),
        host=hostHeader(request),
    )


def respondError(
    request: Any,
    status: int,
    message: str,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    """Answer C{request} with the proxy's own error page."""
    if isinstance(request, ProxiedRequest):
        request.respondError(status, message, headers)
        return
    body = (message + "\n").encode()
    request.setResponseCode(status)
    for name, value in errorHeaders(None, len(body), headers):
        request.responseHeaders.addRawHeader(name, value)
    request.write(body)
    request.finish()
