"""
The private Twisted state we rely on, checked against the installed Twisted
so that an upgrade that renames it fails here first.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections import deque
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._http2 import H2Connection
from twisted.web.http import HTTPChannel, Request

from tests.tlsfiles import ServingTLS, TestCA
from twisted_proxy._twisted_internals import (
    DirectTLSFactory,
    DirectTLSProtocol,
    H2ConnectionBase,
    pendingRequestLine,
    sendNow,
)


class _SeeHead(Request):
    seen: list[tuple[bytes, bytes, bytes]] = []

    def gotLength(self, length: Any) -> None:
        _SeeHead.seen.append(pendingRequestLine(self.channel))
        super().gotLength(length)


def test_pendingRequestLineDuringGotLength() -> None:
    """The request line is readable once the head is in, before the body."""
    channel = HTTPChannel()
    channel.requestFactory = _SeeHead  # type: ignore[assignment]
    channel.makeConnection(StringTransport())
    channel.dataReceived(
        b"POST /a%2Fb?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n"
    )
    assert _SeeHead.seen[-1] == (b"POST", b"/a%2Fb?x=1", b"HTTP/1.1")
    channel.connectionLost(None)  # type: ignore[arg-type]


class _FakeReactor:
    """Just enough reactor for a tcp.Connection that is never registered."""

    def addWriter(self, writer: object) -> None:
        self.writing = True

    def removeWriter(self, writer: object) -> None:
        self.writing = False

    def addReader(self, reader: object) -> None:
        pass

    def removeReader(self, reader: object) -> None:
        pass


def test_sendNowWritesThroughAnIdleTCPConnection() -> None:
    """On an idle TCP connection the bytes go to the socket at once, unqueued."""
    left, right = socket.socketpair()
    try:
        left.setblocking(False)
        reactor = _FakeReactor()
        conn = tcp.Connection(left, None, reactor)  # type: ignore[arg-type]
        conn.connected = True
        sendNow(conn, b"hello")
        assert right.recv(10) == b"hello"
        assert conn.dataBuffer == b""
        assert conn._tempDataBuffer == []
        assert not getattr(reactor, "writing", False)
        # Something queued already: the new bytes queue behind it, in order.
        conn._tempDataBuffer.append(b"first")
        conn._tempDataLen = 5
        sendNow(conn, b"second")
        assert conn._tempDataBuffer == [b"first", b"second"]
        assert reactor.writing
    finally:
        left.close()
        right.close()


def test_sendNowQueuesOnOtherTransports() -> None:
    """Transports that are not plain TCP are written the ordinary way."""
    transport = StringTransport()
    sendNow(transport, b"data")
    assert transport.value() == b"data"


def test_h2ConnectionPrivatesStillThere() -> None:
    """The private parts of Twisted's H2Connection that H2ConnectionBase uses exist."""
    for name in (
        "_requestReceived",
        "_requestDataReceived",
        "_requestEnded",
        "_requestAborted",
        "_requestDone",
        "_sendPrioritisedData",
        "_tryToWriteControlData",
        "_send100Continue",
    ):
        assert callable(getattr(H2Connection, name)), name
    assert (
        "_cancelTimeouts" in inspect.signature(H2Connection.connectionLost).parameters
    )
    connection = H2Connection(Clock())
    assert connection._outboundStreamQueues == {}
    assert connection._sendingDeferred is None
    assert isinstance(connection._log, Logger)
    for name in ("remainingOutboundWindow", "timeoutConnection"):
        assert callable(getattr(H2Connection, name)), name
    assert connection.site is None  # set by the proxy, not by Twisted


class _Hooked(H2ConnectionBase):
    """Records which public method each of Twisted's private calls reached."""

    def __init__(self) -> None:
        super().__init__(Clock())
        self.calls: list[tuple[str, object]] = []

    def headersReceived(self, event: Any) -> None:
        self.calls.append(("headersReceived", event))

    def dataFrameReceived(self, event: Any) -> None:
        self.calls.append(("dataFrameReceived", event))

    def streamEnded(self, event: Any) -> None:
        self.calls.append(("streamEnded", event))

    def streamReset(self, event: Any) -> None:
        self.calls.append(("streamReset", event))

    def streamDone(self, streamID: int) -> None:
        self.calls.append(("streamDone", streamID))

    def sendPrioritisedData(self, *args: object) -> None:
        self.calls.append(("sendPrioritisedData", args))

    def lostConnection(self, reason: Failure, byTwisted: bool = False) -> None:
        self.calls.append(("lostConnection", byTwisted))


def test_h2ConnectionBaseHandsTwistedsCallsOn() -> None:
    """Each private method Twisted calls reaches the public one standing for it."""
    connection = _Hooked()
    connection._requestReceived("headers")
    connection._requestDataReceived("data")
    connection._requestEnded("ended")
    connection._requestAborted("reset")
    connection._requestDone(3)
    connection._sendPrioritisedData(None)
    connection.connectionLost(Failure(ConnectionDone()))
    connection.connectionLost(Failure(ConnectionDone()), _cancelTimeouts=False)
    assert connection.calls == [
        ("headersReceived", "headers"),
        ("dataFrameReceived", "data"),
        ("streamEnded", "ended"),
        ("streamReset", "reset"),
        ("streamDone", 3),
        ("sendPrioritisedData", (None,)),
        ("lostConnection", False),
        ("lostConnection", True),
    ]


def test_h2ConnectionBaseQueuesAndSendLoop() -> None:
    """Queued chunks are read per stream and in all; a sleeping send loop wakes."""
    connection = H2ConnectionBase(Clock())
    marker = object()
    connection._outboundStreamQueues = {1: deque([b"ab", marker]), 3: deque([b"c"])}
    assert list(connection.queuedChunks(1)) == [b"ab", marker]
    assert list(connection.queuedChunks(5)) == []
    assert list(connection.allQueuedChunks()) == [b"ab", marker, b"c"]
    connection.wakeSendLoop()  # nothing asleep: nothing to do
    woken: list[object] = []
    sleeping: Deferred[None] = Deferred()
    sleeping.addCallback(woken.append)
    connection._sendingDeferred = sleeping
    connection.wakeSendLoop()
    assert woken == [None]
    assert connection._sendingDeferred is None
    assert connection.h2Log.namespace == connection._log.namespace


class _Collecting(Protocol):
    def connectionMade(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def _toServer(client: SSL.Connection, server: Any) -> None:
    with contextlib.suppress(SSL.WantReadError):
        server.dataReceived(client.bio_read(65536))


def test_directTLSSendsEachRecordAtOnce(tmp_path: Path) -> None:
    """
    A listener's TLS connection writes its handshake and a response written
    with sendNow to the TCP transport at once, leaving no timer behind; it
    declares the TCP transport's interfaces, as Twisted's does.
    """
    clock = Clock()
    app = _Collecting()
    factory = DirectTLSFactory(
        ServingTLS(TestCA(tmp_path).issue("localhost")),
        False,
        Factory.forProtocol(lambda: app),
        clock,
    )
    server = factory.buildProtocol(None)
    wire = StringTransport()
    server.makeConnection(wire)
    assert isinstance(server, DirectTLSProtocol)
    assert IPushProducer.providedBy(server)
    assert IConsumer.providedBy(server)
    client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    client.set_connect_state()
    for _ in range(10):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
            break
        _toServer(client, server)
        client.bio_write(wire.value())
        wire.clear()
    client.send(b"GET / HTTP/1.1\r\n\r\n")
    _toServer(client, server)
    assert app.received == b"GET / HTTP/1.1\r\n\r\n"
    sendNow(server, b"HTTP/1.1 200 OK\r\n\r\n")
    client.bio_write(wire.value())
    assert client.recv(100) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert clock.getDelayedCalls() == []
