"""
Plain HTTP on a TLS listener, with no sockets: the first-bytes classifier;
the sniffing protocol on an in-memory transport that, like a TCP connection,
reads into whatever protocol it holds; and TLS handshakes in memory (iosim)
through it, on a Clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.tlsfiles import TestCA
from twisted_proxy.accesslog.logger import AccessLogger
from twisted_proxy.config.model import (
    HeaderDirectives,
    Listener,
    ListenerTLS,
    ProxySettings,
)
from twisted_proxy.frontends.http1 import HTTPProxyFactory
from twisted_proxy.frontends.request import IStreamingResource
from twisted_proxy.frontends.tlssniff import (
    PLAIN_HTTP_BODY,
    TLSSniffingFactory,
    TLSSniffingProtocol,
    classifyFirstBytes,
    headComplete,
    plainHTTPResponse,
    requestLine,
)
from twisted_proxy.tls.server import ServerTLS

PLAIN_GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
# The start of a TLS 1.2 ClientHello record: handshake, version, length.
CLIENT_HELLO = b"\x16\x03\x01\x00\xf4\x01\x00\x00\xf0\x03\x03" + bytes(range(32))

# -- the classifier -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "need more"),
        (b"\x16", "tls"),
        (CLIENT_HELLO, "tls"),
        (b"G", "need more"),
        (b"GET", "need more"),
        (b"GET ", "http"),
        (PLAIN_GET, "http"),
        (b"POST /form HTTP/1.1\r\n", "http"),
        (b"HEAD / HTTP/1.0\r\n", "http"),
        (b"PUT /x", "http"),
        (b"DELETE /x", "http"),
        (b"OPTIONS * HTTP/1.1", "http"),
        (b"PATCH /x", "http"),
        (b"CONNECT host:443 HTTP/1.1", "http"),
        (b"TRACE / HTTP/1.1", "http"),
        (b"A" * 20, "need more"),
        (b"A" * 20 + b" ", "http"),
        (b"A" * 21, "other"),
        (b"get / HTTP/1.1", "other"),
        (b" GET / HTTP/1.1", "other"),
        (b"\r\nGET / HTTP/1.1", "other"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "other"),
        (b"\x80\x2e\x01\x00\x02", "other"),  # an SSL 2 ClientHello
        (b"PRI * HTTP/2.0\r\n", "http"),  # h2 prior knowledge: clear text too
        (b"\x00\x00", "other"),
    ],
)
def test_classifyFirstBytes(data: bytes, kind: str) -> None:
    """A handshake record, a request line, too little to tell, or something else."""
    assert classifyFirstBytes(data) == kind


def test_headComplete() -> None:
    """An empty line ends a head, with CRLF or bare LF; C{start} skips what was seen."""
    assert not headComplete(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert headComplete(PLAIN_GET)
    assert headComplete(b"GET / HTTP/1.0\n\n")
    assert headComplete(b"GET / HTTP/1.0\r\n\r\n", start=14)
    assert not headComplete(b"GET / HTTP/1.0\r\n\r\n", start=16)


def test_requestLine() -> None:
    """The first line without its end; nothing when it is not all there."""
    assert requestLine(PLAIN_GET) == b"GET / HTTP/1.1"
    assert requestLine(b"GET /x HTTP/1.0\nHost: x\n\n") == b"GET /x HTTP/1.0"
    assert requestLine(b"GET /" + b"a" * 100) == b""


# -- the protocol in front of a recording stand-in for TLS ------------------------


class Wire(StringTransport):
    """A connection in memory that reads into C{protocol}, as TCP does."""

    def __init__(self, protocol: Protocol) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "203.0.113.7", 50000))
        self.protocol: Any = protocol
        protocol.makeConnection(self)

    def deliver(self, data: bytes) -> None:
        """Bytes from the client, to whichever protocol reads now."""
        self.protocol.dataReceived(data)

    def close(self) -> None:
        """The connection is gone."""
        self.protocol.connectionLost(Failure(ConnectionDone()))

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class StandIn(Protocol):
    """Takes the place of the TLS protocol: records what reaches it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True


@implementer(IStreamingResource)
class Answer:
    """Answers every request 200 "ok"; records the targets it saw."""

    streaming = True

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def startStream(self, request: Any) -> None:
        self.seen.append(request.uri)
        request.setResponseCode(200)
        request.responseHeaders.addRawHeader(b"Content-Length", b"2")
        request.write(b"ok")
        request.finish()


def site(
    clock: Any = None, listener: Listener | None = None, **settings: Any
) -> HTTPProxyFactory:
    return HTTPProxyFactory(
        Answer(),  # type: ignore[arg-type]
        ProxySettings(**settings),
        clock if clock is not None else MemoryReactorClock(),
        listener=listener,
    )


def sniffing(
    front: HTTPProxyFactory | None = None,
) -> tuple[Wire, StandIn, HTTPProxyFactory]:
    """A sniffer in front of a L{StandIn}, connected on a L{Wire}."""
    front = front if front is not None else site()
    standIn = StandIn()
    factory = TLSSniffingFactory(Factory.forProtocol(lambda: standIn), front)
    protocol = factory.buildProtocol(IPv4Address("TCP", "203.0.113.7", 50000))
    assert protocol is not None
    return Wire(protocol), standIn, front


def parse(response: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = [(n, v) for n, _, v in (line.partition(b": ") for line in lines)]
    return status, headers, body


def test_plainRequestGets400AndClose() -> None:
    """A plain request: the 400 head and body, then close; TLS sees nothing."""
    wire, standIn, _ = sniffing()
    wire.deliver(PLAIN_GET)
    status, headers, body = parse(wire.value())
    assert status == b"HTTP/1.1 400 Bad Request"
    assert [n for n, _ in headers] == [
        b"Date",
        b"Content-Type",
        b"Content-Length",
        b"Server",
        b"Connection",
    ]
    values = dict(headers)
    assert values[b"Content-Type"] == b"text/plain; charset=utf-8"
    assert values[b"Content-Length"] == b"%d" % len(PLAIN_HTTP_BODY)
    assert values[b"Server"] == b"twisted-proxy"
    assert values[b"Connection"] == b"close"
    assert body == PLAIN_HTTP_BODY
    assert body == b"the plain HTTP request was sent to the HTTPS port; use https://\n"
    assert wire.disconnecting
    assert standIn.chunks == []


def test_plainRequestAnsweredOnceItsHeadIsIn() -> None:
    """A request head in pieces is answered at its empty line, not before."""
    wire, standIn, _ = sniffing()
    for piece in (b"G", b"ET / HTT", b"P/1.1\r\nHost: x\r", b"\n"):
        wire.deliver(piece)
        assert wire.value() == b""
    wire.deliver(b"\r\n")
    assert wire.value().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert wire.disconnecting
    # What follows the head is dropped.
    wire.deliver(b"more")
    assert standIn.chunks == []


def test_oversizedPlainHeadAnsweredAtTheLimit() -> None:
    """A head past max_header_bytes without its end gets the 400 all the same."""
    wire, _, _ = sniffing(site(max_header_bytes=1024))
    wire.deliver(b"GET /" + b"a" * 1000)
    assert wire.value() == b""
    wire.deliver(b"a" * 100)
    assert wire.value().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert wire.disconnecting


def test_listenerResponseHeadersWithoutHSTS() -> None:
    """The listener's response headers are sent; HSTS is not, over plain HTTP."""
    tls = ListenerTLS(certificate="c.pem", key="c.key", hsts=300, where="listen[0]")
    front = site(
        listener=Listener("tcp:0", tls=tls),
        server_tokens="off",
        response_headers=HeaderDirectives(set=(("X-Frame-Options", "DENY"),)),
    )
    response, sent = plainHTTPResponse(front)
    _, headers, body = parse(response)
    names = [n for n, _ in headers]
    assert b"Strict-Transport-Security" not in names
    assert b"Server" not in names
    assert (b"X-Frame-Options", b"DENY") in headers
    assert headers[-1] == (b"Connection", b"close")
    assert sent == len(body)


def test_otherBytesClosedQuietly() -> None:
    """Neither TLS nor HTTP: closed with nothing written."""
    wire, standIn, _ = sniffing()
    wire.deliver(b"SSH-2.0-OpenSSH_9.6\r\n")
    assert wire.value() == b""
    assert wire.disconnecting
    assert standIn.chunks == []


def test_tlsRecordPassedWholeAndTransportHandedOver() -> None:
    """The first TLS packet reaches TLS unchanged, and TLS then reads directly."""
    wire, standIn, _ = sniffing()
    wire.deliver(CLIENT_HELLO)
    assert standIn.chunks == [CLIENT_HELLO]
    assert wire.protocol is standIn
    wire.deliver(b"next")
    assert standIn.chunks == [CLIENT_HELLO, b"next"]
    assert wire.value() == b""
    assert not wire.disconnecting


def test_tlsRecordOneByteAtATime() -> None:
    """A ClientHello that arrives a byte at a time reaches TLS whole, in order."""
    wire, standIn, _ = sniffing()
    for index in range(len(CLIENT_HELLO)):
        wire.deliver(CLIENT_HELLO[index : index + 1])
    assert b"".join(standIn.chunks) == CLIENT_HELLO
    # Handed over at the first byte: nothing was held back.
    assert standIn.chunks[0] == b"\x16"
    assert wire.protocol is standIn


def test_connectionLostReachesTLS() -> None:
    """A connection lost while sniffing is lost for TLS (and its channel) too."""
    wire, standIn, _ = sniffing()
    wire.deliver(b"GE")
    wire.close()
    assert standIn.lost


def test_refusalLoggedAndInAccessLog() -> None:
    """The refusal gets an info line and an access-log line with status 400."""
    clock = MemoryReactorClock()
    lines: list[str] = []
    front = site(clock)
    front.accessLog = AccessLogger('%h "%r" %>s %b', lines.append, None, clock)
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
    try:
        wire, _, _ = sniffing(front)
        wire.deliver(b"POST /form HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        globalLogPublisher.removeObserver(events.append)  # type: ignore[arg-type]
    front.accessLog.flush()
    assert lines == [f'203.0.113.7 "POST /form HTTP/1.1" 400 {len(PLAIN_HTTP_BODY)}\n']
    assert "refused 203.0.113.7: 400 plain HTTP on a TLS listener" in [
        formatEvent(e) for e in events
    ]


def test_interfaces() -> None:
    """The factory and its protocols are what Twisted expects of them."""
    wire, _, front = sniffing()
    factory = TLSSniffingFactory(Factory.forProtocol(StandIn), front)
    assert verifyObject(IProtocolFactory, factory)
    assert verifyObject(IProtocol, wire.protocol)
    assert isinstance(wire.protocol, TLSSniffingProtocol)


# -- in front of real TLS and the listener's channel --------------------------------


class Client(Protocol):
    """An HTTPS client: sends one request once connected, keeps the reply."""

    def __init__(self) -> None:
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"GET /secure HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def tlsListener(
    tmp_path: Path, **settings: Any
) -> tuple[TLSSniffingFactory, HTTPProxyFactory, MemoryReactorClock, TestCA]:
    """A listener's TLS factory behind the sniffer, as ProxyService builds it."""
    ca = TestCA(tmp_path)
    leaf = ca.issue("localhost", "127.0.0.1")
    tls = ListenerTLS(
        certificate=str(leaf.certificate), key=str(leaf.key), where="listen[0].tls"
    )
    clock = MemoryReactorClock()
    front = site(clock, Listener("tcp:0", tls=tls), **settings)
    tlsFactory = TLSMemoryBIOFactory(ServerTLS(tls), False, front, clock)
    return TLSSniffingFactory(tlsFactory, front), front, clock, ca


def test_httpsThroughTheSniffer(tmp_path: Path) -> None:
    """A TLS client is served as before; afterwards TCP reads straight into TLS."""
    factory, front, clock, ca = tlsListener(tmp_path)
    address = IPv4Address("TCP", "127.0.0.1", 443)
    server = factory.buildProtocol(address)
    assert server is not None
    client = Client()
    options = optionsForClientTLS(
        "localhost", trustRoot=Certificate.loadPEM(ca.certificate.read_bytes())
    )
    clientSide = TLSMemoryBIOFactory(
        options, True, Factory.forProtocol(lambda: client), clock
    ).buildProtocol(address)
    serverTransport = FakeTransport(server, isServer=True)
    pump = connect(
        server,
        serverTransport,
        clientSide,
        FakeTransport(clientSide, isServer=False),
        clock=clock,
    )
    pump.flush()
    assert client.received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert client.received.endswith(b"\r\n\r\nok")
    assert front.resource.seen == [b"/secure"]
    # By design no per-read cost: the transport's protocol is TLS itself.
    tls = serverTransport.protocol
    assert isinstance(tls, TLSMemoryBIOProtocol)
    assert tls in factory.tlsFactory.protocols  # type: ignore[attr-defined]


def test_headerTimeoutClosesSilentClient(tmp_path: Path) -> None:
    """A client that sends nothing is closed after header_timeout, silently."""
    factory, front, clock, _ = tlsListener(tmp_path, header_timeout=5.0)
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    wire = Wire(protocol)
    clock.advance(4.9)
    assert not wire.disconnecting
    clock.advance(0.1)
    assert wire.disconnecting
    assert wire.value() == b""
    wire.close()
    assert front.channels == set()
    assert clock.getDelayedCalls() == []


def test_headerTimeoutClosesHalfAMethod(tmp_path: Path) -> None:
    """A client that stops inside its first word is closed by header_timeout too."""
    factory, _, clock, _ = tlsListener(tmp_path, header_timeout=5.0)
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    wire = Wire(protocol)
    wire.deliver(b"GE")
    clock.advance(5.0)
    assert wire.disconnecting
    assert wire.value() == b""


def test_drainClosesConnectionStillSniffing(tmp_path: Path) -> None:
    """A graceful stop closes a connection still being sniffed, and then fires."""
    factory, front, _, _ = tlsListener(tmp_path)
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    wire = Wire(protocol)
    wire.deliver(b"GET")
    drained = front.drain()
    assert wire.disconnecting
    fired: list[object] = []
    drained.addCallback(fired.append)
    assert fired == []
    wire.close()
    assert fired == [None]


def test_abortAllCutsConnectionStillSniffing(tmp_path: Path) -> None:
    """When the grace period is over, a connection still being sniffed is cut."""
    factory, front, _, _ = tlsListener(tmp_path)
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    wire = Wire(protocol)
    front.abortAll()
    assert wire.disconnected
    wire.close()
    assert front.channels == set()
