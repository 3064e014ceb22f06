"""
The private Twisted state we rely on, checked against the installed Twisted
so that an upgrade that renames it fails here first.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel, Request

from twisted_proxy._twisted_internals import pendingRequestLine, sendNow


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
