"""
The front-end channel on a StringTransport and a Clock: what a client sees for
heads that are slow, large, pipelined or refused, with a resource in memory.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from twisted_proxy.config.model import ProxySettings
from twisted_proxy.frontends.http1 import HTTPProxyFactory, HTTPServerChannel
from twisted_proxy.frontends.http1request import ProxyRequest
from twisted_proxy.frontends.request import IStreamingResource


@implementer(IStreamingResource)
class Echo:
    """Answers each request with what it saw, once its body is in."""

    streaming = True

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes, bytes]] = []
        self.held: list[ProxyRequest] = []
        self.hold = False

    def startStream(self, request: Any) -> Any:
        resource = self
        body: list[bytes] = []

        class Consumer:
            def bodyData(self, data: bytes) -> None:
                body.append(data)

            def bodyEnd(self) -> None:
                resource.seen.append((request.method, request.uri, b"".join(body)))
                if resource.hold:
                    resource.held.append(request)
                    return
                request.setResponseCode(200)
                request.responseHeaders.addRawHeader(b"Content-Length", b"2")
                request.write(b"ok")
                request.finish()

        return Consumer()


def connect(
    **settings: Any,
) -> tuple[HTTPServerChannel, StringTransport, Echo, Clock]:
    clock = Clock()
    echo = Echo()
    factory = HTTPProxyFactory(echo, ProxySettings(**settings), clock)  # type: ignore[arg-type]
    channel = factory.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, echo, clock


def test_oneRequestOneWrite() -> None:
    """A request is answered, head and body, and the connection stays open."""
    channel, transport, echo, clock = connect()
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert echo.seen == [(b"GET", b"/x", b"")]
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.value().endswith(b"\r\n\r\nok")
    assert not transport.disconnecting


def test_pipelinedRequestsAnsweredInOrder() -> None:
    """Two requests in one packet are answered one after the other, in order."""
    channel, transport, echo, clock = connect()
    echo.hold = True
    channel.dataReceived(
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert [s[1] for s in echo.seen] == [b"/1"]
    first = echo.held.pop()
    echo.hold = False
    first.setResponseCode(200)
    first.responseHeaders.addRawHeader(b"Content-Length", b"1")
    first.write(b"1")
    first.finish()
    assert [s[1] for s in echo.seen] == [b"/1", b"/2"]
    assert transport.value().count(b"HTTP/1.1 200 OK") == 2


def test_bodySplitAcrossPackets() -> None:
    """A Content-Length body reaches the resource whole, however it arrives."""
    channel, transport, echo, clock = connect()
    channel.dataReceived(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nab")
    channel.dataReceived(b"cd")
    assert echo.seen == []
    channel.dataReceived(b"ef")
    assert echo.seen == [(b"POST", b"/u", b"abcdef")]


def test_slowHeadGets408() -> None:
    """Half a head for header_timeout seconds: 408 and closed."""
    channel, transport, echo, clock = connect(header_timeout=5.0)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHo")
    clock.advance(4.9)
    assert transport.value() == b""
    clock.advance(0.2)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_headDueFromTheConnectionStart() -> None:
    """
    On a new connection the head is due within header_timeout of connecting:
    a first byte late in that time does not restart the clock, nor do later
    bytes (a partial head was once held for twice header_timeout).
    """
    channel, transport, echo, clock = connect(header_timeout=5.0)
    clock.advance(4.0)
    channel.dataReceived(b"GET / HT")
    clock.advance(0.5)
    channel.dataReceived(b"TP/1.1\r\nHo")
    clock.advance(0.4)
    assert transport.value() == b""
    clock.advance(0.1)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert clock.getDelayedCalls() == []


def test_keepAliveHeadDueFromItsFirstByte() -> None:
    """On a kept-alive connection, the next head is due from its first byte."""
    channel, transport, echo, clock = connect(header_timeout=5.0, idle_timeout=30.0)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    transport.clear()
    clock.advance(20.0)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHo")
    clock.advance(4.9)
    assert transport.value() == b""
    clock.advance(0.1)
    assert transport.value().startswith(b"HTTP/1.1 408 ")


def test_clientThatTakesNothingIsLetGo() -> None:
    """
    A client whose socket stays full for send_timeout is cut (its backend
    goes with it once the connection is lost); one that drains its socket
    meanwhile starts the clock again.
    """
    channel, transport, echo, clock = connect(send_timeout=10.0)
    echo.hold = True
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    channel.pauseProducing()
    clock.advance(9.9)
    channel.resumeProducing()
    channel.pauseProducing()
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting
    assert channel.abandoned
    assert clock.getDelayedCalls() == []


def test_silentConnectionClosedWithoutResponse() -> None:
    """A client that connects and says nothing is closed after header_timeout."""
    channel, transport, echo, clock = connect(header_timeout=5.0)
    clock.advance(5.0)
    assert transport.value() == b""
    assert transport.disconnecting


def test_idleKeepAliveClosed() -> None:
    """After a response, idle_timeout of silence closes the connection."""
    channel, transport, echo, clock = connect(idle_timeout=30.0)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_headTooLarge() -> None:
    """A head over max_header_bytes is 431; an endless request line 414."""
    channel, transport, echo, clock = connect(max_header_bytes=1024)
    channel.dataReceived(b"GET / HTTP/1.1\r\nX: " + b"a" * 2000)
    assert transport.value().startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    channel, transport, echo, clock = connect(max_header_bytes=1024)
    channel.dataReceived(b"GET /" + b"a" * 2000)
    assert transport.value().startswith(b"HTTP/1.1 414 ")
    assert echo.seen == []


def test_malformedChunkIs400() -> None:
    """A bad chunk size is answered 400 and the connection closed."""
    channel, transport, echo, clock = connect()
    channel.dataReceived(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    assert transport.disconnecting
    assert echo.seen == []


def test_expectContinueLeftToTheResource() -> None:
    """
    The channel does not answer Expect: 100-continue itself: the request
    says the client waits, and 100 goes out only when the resource (the
    proxy, once the backend agrees) calls sendContinue, at most once.
    """
    channel, transport, echo, clock = connect()
    channel.dataReceived(
        b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
        b"Content-Length: 2\r\n\r\n"
    )
    assert transport.value() == b""
    request = channel.request
    assert request is not None
    assert request.expectContinue
    request.sendContinue()
    request.sendContinue()
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    channel.dataReceived(b"ok")
    assert echo.seen == [(b"PUT", b"/", b"ok")]


def test_noContinueWithoutExpectOrBody() -> None:
    """sendContinue writes nothing for a request that did not ask."""
    channel, transport, echo, clock = connect()
    echo.hold = True
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n")
    [request] = echo.held
    assert not request.expectContinue
    request.sendContinue()
    assert transport.value() == b""


def test_http10GetsConnectionClose() -> None:
    """An HTTP/1.0 client is answered in HTTP/1.0 and the connection closed."""
    channel, transport, echo, clock = connect()
    channel.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Connection: close\r\n" in transport.value()
    assert transport.disconnecting


def test_clientPausesTheResponseProducer() -> None:
    """A full client socket pauses the producer of the response, and resumes it."""
    channel, transport, echo, clock = connect()
    echo.hold = True
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    request = echo.held.pop()
    events: list[str] = []

    class Producer:
        def pauseProducing(self) -> None:
            events.append("pause")

        def resumeProducing(self) -> None:
            events.append("resume")

        def stopProducing(self) -> None:
            events.append("stop")

    request.registerProducer(Producer(), True)  # type: ignore[arg-type]
    channel.pauseProducing()
    channel.resumeProducing()
    request.unregisterProducer()
    channel.pauseProducing()
    assert events == ["pause", "resume"]


def test_stalledUploadGets408() -> None:
    """A body that stops arriving for idle_timeout seconds is answered 408."""
    channel, transport, echo, clock = connect(idle_timeout=10.0)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12")
    clock.advance(9)
    channel.dataReceived(b"34")
    clock.advance(9)
    assert transport.value() == b""
    clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.disconnecting
    assert echo.seen == []
