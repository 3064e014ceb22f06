"""
The private twisted.web state we rely on, checked against the installed Twisted
so that an upgrade that renames it fails here first.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel, Request

from twisted_proxy._twisted_internals import (
    BadRequestHook,
    pendingRequestLine,
    sendContinue,
    takeBufferedData,
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


def test_bufferedDataAndContinue() -> None:
    """Pipelined bytes can be taken out; 100 Continue is written on demand."""
    channel = HTTPChannel()
    transport = StringTransport()
    channel.makeConnection(transport)
    channel._dataBuffer.append(b"next")
    assert takeBufferedData(channel) == b"next"
    assert takeBufferedData(channel) == b""
    sendContinue(channel)
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    channel.connectionLost(None)  # type: ignore[arg-type]


def test_badRequestHookReplacesTwistedsAnswer() -> None:
    """A malformed header reaches the channel's badRequest()."""
    called: list[bool] = []

    class Channel(BadRequestHook, HTTPChannel):
        def badRequest(self) -> None:
            called.append(True)
            self.transport.loseConnection()  # type: ignore[union-attr]

    channel = Channel()
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
    assert called == [True]
    assert transport.value() == b""
    channel.connectionLost(None)  # type: ignore[arg-type]
