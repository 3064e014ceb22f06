"""
The FORWARD_REQUEST an ajp:// backend gets for a client's request: built
from the request's facts, compared with the packet those facts make.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address

from twisted_proxy.config.model import Member, Route
from twisted_proxy.core.ajp import AJPError, ForwardAttributes, forwardRequest
from twisted_proxy.frontends.ajprequest import ajpHead


class Channel:
    """The client connection, with a TLS handle when it came over TLS."""

    def __init__(self, tls: Any = None) -> None:
        self.transport = type("T", (), {"getHandle": lambda _: tls})() if tls else None


class Handle:
    """What pyOpenSSL's connection says of the TLS session."""

    def get_cipher_name(self) -> str:
        return "TLS_AES_128_GCM_SHA256"

    def get_cipher_bits(self) -> int:
        return 128

    def get_protocol_version_name(self) -> str:
        return "TLSv1.3"


ROUTE = Route(path="/")
"""A route to one backend, without a secret."""
PLAIN = (None, None, False)
"""No body."""


class Request:
    def __init__(
        self,
        method: bytes = b"GET",
        peer: Any = None,
        host: Any = None,
        secure: bool = False,
    ) -> None:
        self.method = method
        self.clientproto = b"HTTP/1.1"
        self.channel = Channel(Handle() if secure else None)
        self._peer = peer or IPv4Address("TCP", "192.0.2.7", 50123)
        self._host = host or IPv4Address("TCP", "127.0.0.1", 8443)
        self._secure = secure

    def getClientAddress(self) -> Any:
        return self._peer

    def getHost(self) -> Any:
        return self._host

    def isSecure(self) -> bool:
        return self._secure


def test_aPlainGet() -> None:
    """Path and query apart, the client's address and port, the Host's name."""
    headers = [(b"Host", b"www.example.test:8443"), (b"Accept", b"*/*")]
    packet = ajpHead(Request(), b"/app/x?a=1&b", headers, PLAIN, b"proxy", ROUTE)
    assert packet == forwardRequest(
        b"GET",
        b"HTTP/1.1",
        b"/app/x",
        b"192.0.2.7",
        b"www.example.test",
        8443,
        False,
        headers,
        ForwardAttributes(
            queryString=b"a=1&b", remotePort=50123, localAddress=b"127.0.0.1"
        ),
    )


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"[2001:db8::1]:8443", b"[2001:db8::1]"),
        (b"[2001:db8::1]", b"[2001:db8::1]"),
        (b"example.test", b"example.test"),
    ],
)
def test_theServerNameIsTheHostsName(host: bytes, name: bytes) -> None:
    packet = ajpHead(Request(), b"/", [(b"Host", host)], PLAIN, b"proxy", ROUTE)
    assert packet == forwardRequest(
        b"GET", b"HTTP/1.1", b"/", b"192.0.2.7", name, 8443, False, [(b"Host", host)],
        ForwardAttributes(remotePort=50123, localAddress=b"127.0.0.1"),
    )  # fmt: skip


def test_noHostGivesTheProxysName() -> None:
    packet = ajpHead(Request(), b"/", [], PLAIN, b"proxy.test", ROUTE)
    assert packet == forwardRequest(
        b"GET", b"HTTP/1.1", b"/", b"192.0.2.7", b"proxy.test", 8443, False, [],
        ForwardAttributes(remotePort=50123, localAddress=b"127.0.0.1"),
    )  # fmt: skip


def test_aRoutesSecret() -> None:
    """One backend's route: its secret, no member route."""
    route = Route(path="/", secret="s3cret")
    packet = ajpHead(Request(), b"/", [], PLAIN, b"p", route)
    assert packet == forwardRequest(
        b"GET", b"HTTP/1.1", b"/", b"192.0.2.7", b"p", 8443, False, [],
        ForwardAttributes(
            secret=b"s3cret", remotePort=50123, localAddress=b"127.0.0.1"
        ),
    )  # fmt: skip


def test_aSecureRequestFromAMemberWithASecret() -> None:
    """TLS facts, the member's route and secret; IPv6 addresses as text."""
    request = Request(
        b"PROPFIND",
        peer=IPv6Address("TCP", "2001:db8::7", 40000),
        host=IPv6Address("TCP", "::1", 443),
        secure=True,
    )
    member = Member("ajp://h", "ajp", "h", 8009, route="node2", secret="s3")
    packet = ajpHead(request, b"/dav/", [(b"Host", b"h")], PLAIN, b"p", member)
    assert packet == forwardRequest(
        b"PROPFIND",
        b"HTTP/1.1",
        b"/dav/",
        b"2001:db8::7",
        b"h",
        443,
        True,
        [(b"Host", b"h")],
        ForwardAttributes(
            route=b"node2",
            secret=b"s3",
            remotePort=40000,
            localAddress=b"::1",
            sslCipher=b"TLS_AES_128_GCM_SHA256",
            sslKeySize=128,
            sslProtocol=b"TLSv1.3",
        ),
    )


def test_bodyFraming() -> None:
    """
    A body read already: its length as read; one of unknown length: said
    chunked (a container reads a form's fields from it only then).
    """
    headers = [(b"Host", b"h"), (b"Content-Length", b"99")]
    buffered = ajpHead(
        Request(b"POST"), b"/", headers, (b"abc", 99, False), b"p", ROUTE
    )
    chunked = ajpHead(
        Request(b"POST"), b"/", [(b"Host", b"h")], (None, None, True), b"p", ROUTE
    )
    facts = ForwardAttributes(remotePort=50123, localAddress=b"127.0.0.1")
    assert buffered == forwardRequest(
        b"POST", b"HTTP/1.1", b"/", b"192.0.2.7", b"h", 8443, False,
        [(b"Host", b"h"), (b"Content-Length", b"3")], facts,
    )  # fmt: skip
    assert chunked == forwardRequest(
        b"POST", b"HTTP/1.1", b"/", b"192.0.2.7", b"h", 8443, False,
        [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")], facts,
    )  # fmt: skip


def test_aHeadLargerThanAPacketIsRefused() -> None:
    with pytest.raises(AJPError, match="more than 8192"):
        ajpHead(Request(), b"/", [(b"X-Big", b"x" * 9000)], PLAIN, b"p", ROUTE)
