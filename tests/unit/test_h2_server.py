"""
HTTP/2 to clients without sockets: an C{h2} client state machine talks to an
L{H2ProxyConnection} over a StringTransport on a Clock, with a resource in
memory; and TLS handshakes in memory (iosim) show what ALPN hands the
connection to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHandshakeListener,
    IProtocolFactory,
    IPushProducer,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from zope.interface import directlyProvides, implementer
from zope.interface.verify import verifyObject

from tests.h2frames import takeGoAways
from tests.tlsfiles import TestCA
from twisted_proxy.accesslog.logger import AccessLogger
from twisted_proxy.config.model import Listener, ListenerTLS, ProxySettings
from twisted_proxy.frontends.http1 import HTTPProxyFactory, HTTPServerChannel
from twisted_proxy.frontends.http2 import (
    STREAM_BUFFER,
    H2ProxyConnection,
    NegotiatingFactory,
    _Negotiating,
)
from twisted_proxy.frontends.http2request import H2Request
from twisted_proxy.frontends.request import IStreamingResource

# -- a resource, a client, and a connection between them ------------------------


class Body:
    """What a resource got of one request's body."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ended = False

    def bodyData(self, data: bytes) -> None:
        self.chunks.append(data)

    def bodyEnd(self) -> None:
        self.ended = True


@implementer(IStreamingResource)
class Resource:
    """Records each request as it is routed; C{answer} may respond at once."""

    streaming = True

    def __init__(self, answer: Callable[[Any], object] | None = None) -> None:
        self.requests: list[H2Request] = []
        self.bodies: list[Body] = []
        self.answer = answer

    def startStream(self, request: Any) -> Body | None:
        self.requests.append(request)
        body = Body()
        self.bodies.append(body)
        if self.answer is not None:
            self.answer(request)
        return None if request.finished else body


def answer(
    request: Any, status: int = 200, body: bytes = b"ok", *headers: tuple[bytes, bytes]
) -> None:
    """Respond to C{request} in full."""
    request.setResponseCode(status)
    request.responseHeaders.addRawHeader(b"Content-Length", b"%d" % len(body))
    for name, value in headers:
        request.responseHeaders.addRawHeader(name, value)
    request.write(body)
    request.finish()


class AccessLog:
    """Keeps the requests the listener logs."""

    def __init__(self) -> None:
        self.logged: list[Any] = []

    def logRequest(self, request: Any) -> None:
        self.logged.append(request)

    def logRefusal(
        self, remoteHost: str, requestLine: bytes, status: int, sent: int
    ) -> None:
        pass


def front(
    resource: Resource, listener: Listener | None = None, **settings: Any
) -> tuple[HTTPProxyFactory, Clock]:
    clock = Clock()
    site = HTTPProxyFactory(
        resource,  # type: ignore[arg-type]
        ProxySettings(**settings),
        clock,
        accessLog=AccessLog(),
        listener=listener,
    )
    return site, clock


class Transport(StringTransport):
    """
    The TLS connection, in memory; with a C{limit}, it pauses its producer
    once it holds more than that, as a TCP transport does when the client's
    socket is full.
    """

    limit: int | None = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def write(self, data: bytes) -> None:
        super().write(data)
        limit = self.limit
        full = limit is not None and len(self.io.getvalue()) > limit
        if full and self.producer and self.producerState == "producing":
            self.producerState = "paused"
            self.producer.pauseProducing()


class Peer:
    """An h2 client and the proxy's connection, bytes moved by L{flush}."""

    def __init__(self, site: HTTPProxyFactory, clock: Clock) -> None:
        self.clock = clock
        self.site = site
        self.server = H2ProxyConnection(site)
        self.transport = Transport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8443),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 50000),
        )
        directlyProvides(self.transport, ISSLTransport)
        site.channels.add(self.server)
        self.server.makeConnection(self.transport)
        self.transport.registerProducer(self.server, True)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config)
        self.client.initiate_connection()
        self.events: list[Any] = []
        # (last stream, error code) of each GOAWAY: h2's client state machine
        # refuses the frames of open streams after one, so they are kept apart.
        self.goaways: list[tuple[int, int]] = []
        self._frames = b""
        # Open the window again for what arrives (a client reading promptly).
        self.acknowledge = True
        self.flush()

    def flush(self) -> None:
        """Move bytes both ways, running Twisted's send loop, until all is still."""
        for _ in range(10000):
            moved = False
            out = self.client.data_to_send()
            if out:
                self.server.dataReceived(out)
                moved = True
            if self.turn():
                moved = True
            data = self.transport.value()
            if data:
                self.transport.clear()
                moved = True
                for event in self.client.receive_data(self._goaways(data)):
                    self.events.append(event)
                    if self.acknowledge and isinstance(event, h2.events.DataReceived):
                        self.client.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
            if not moved:
                return
        raise AssertionError("the connection never went quiet")

    def turn(self) -> bool:
        """
        One reactor turn: run the calls that are due now, not the ones they
        schedule for now (Clock.advance would, and never return from a loop
        that reschedules itself). Whether any ran.
        """
        now = self.clock.seconds()
        due = [c for c in self.clock.calls if c.getTime() <= now]
        for call in due:
            self.clock.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)
        return bool(due)

    def _goaways(self, data: bytes) -> bytes:
        """C{data} without its GOAWAY frames, which are noted in L{goaways}."""
        passed, self._frames, found = takeGoAways(self._frames + data)
        self.goaways.extend(found)
        return passed

    def request(
        self,
        streamID: int,
        method: bytes = b"GET",
        path: bytes = b"/page",
        headers: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
    ) -> None:
        """Send a request head; C{end}: no body follows."""
        self.client.send_headers(
            streamID,
            [
                (b":method", method),
                (b":path", path),
                (b":scheme", b"https"),
                (b":authority", b"www.example.test"),
                *(headers or []),
            ],
            end_stream=end,
        )
        self.flush()

    def send(self, streamID: int, data: bytes, end: bool = False) -> None:
        """Send body bytes on C{streamID}, in frames as large as allowed."""
        size = self.client.max_outbound_frame_size
        pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            self.client.send_data(streamID, piece, end_stream=end and last)
        self.flush()

    def of(self, kind: type, streamID: int | None = None) -> list[Any]:
        """The events of C{kind} received (for C{streamID} if given)."""
        return [
            e
            for e in self.events
            if isinstance(e, kind)
            and (streamID is None or getattr(e, "stream_id", None) == streamID)
        ]

    def response(self, streamID: int) -> tuple[dict[bytes, bytes], bytes, bool]:
        """(headers, body, ended) of C{streamID}'s response."""
        heads = self.of(h2.events.ResponseReceived, streamID)
        headers = dict(heads[0].headers) if heads else {}
        body = b"".join(e.data for e in self.of(h2.events.DataReceived, streamID))
        ended = bool(self.of(h2.events.StreamEnded, streamID))
        return headers, body, ended

    def windowUpdates(self, streamID: int) -> int:
        """How many WINDOW_UPDATE frames the client got for C{streamID}."""
        return len(self.of(h2.events.WindowUpdated, streamID))


@implementer(IPushProducer)
class Producer:
    """A backend's response body: writes while not paused, counts its pauses."""

    def __init__(self, request: Any, total: int, chunk: int = 16384) -> None:
        self.request = request
        self.total = total
        self.chunk = b"x" * chunk
        self.sent = 0
        self.paused = False
        self.pauses = 0
        request.setResponseCode(200)
        request.responseHeaders.addRawHeader(b"Content-Length", b"%d" % total)
        request.registerProducer(self, True)
        request.write(b"")

    def pump(self) -> None:
        """Write until paused or done."""
        while not self.paused and self.sent < self.total:
            self.request.write(self.chunk)
            self.sent += len(self.chunk)
        if self.sent >= self.total and not self.request.finished:
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True


# -- the request, as the resource sees it --------------------------------------


def test_routedOnceEveryHeaderIsIn() -> None:
    """Headers after content-length are in when the request is routed, as h2 sent it."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(
        1,
        b"POST",
        b"/up?x=1",
        [(b"content-length", b"3"), (b"x-after", b"yes")],
        end=False,
    )
    [request] = resource.requests
    assert (request.method, request.uri, request.path) == (b"POST", b"/up?x=1", b"/up")
    assert request.clientproto == b"HTTP/2"
    assert request.getHeader(b"x-after") == b"yes"
    assert request.requestHeaders.getRawHeaders(b"host") == [b"www.example.test"]
    assert request.isSecure()
    assert request.clientAddress() == "192.0.2.7"
    peer.send(1, b"abc", end=True)
    assert resource.bodies[0].chunks == [b"abc"]
    assert resource.bodies[0].ended


def test_answeredAtOnce() -> None:
    """A request answered while being routed (a 404) gets its whole response."""
    resource = Resource(lambda r: r.respondError(404, "no route for this request"))
    site, clock = front(resource)
    peer = Peer(site, clock)
    peer.request(1)
    headers, body, ended = peer.response(1)
    assert headers[b":status"] == b"404"
    assert headers[b"server"] == b"twisted-proxy"
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert (body, ended) == (b"no route for this request\n", True)
    [logged] = site.accessLog.logged  # type: ignore[union-attr]
    assert (logged.clientproto, logged.code, logged.method) == (b"HTTP/2", 404, b"GET")


def test_refusedOnTheHeadAlone() -> None:
    """CONNECT is 405 and a declared body over max_body_bytes 413, without routing."""
    resource = Resource()
    peer = Peer(*front(resource, max_body_bytes=10))
    peer.client.send_headers(
        1, [(b":method", b"CONNECT"), (b":authority", b"elsewhere:443")]
    )
    peer.flush()
    headers, _, _ = peer.response(1)
    assert headers[b":status"] == b"405"
    assert headers[b"allow"].startswith(b"GET, HEAD")
    peer.request(3, b"PUT", b"/big", [(b"content-length", b"11")], end=False)
    headers, _, ended = peer.response(3)
    assert (headers[b":status"], ended) == (b"413", True)
    assert resource.requests == []


def test_connectOnATunnellingListenerIs405OverHTTP2() -> None:
    """
    A listener that opens CONNECT tunnels over HTTP/1.1 answers an HTTP/2
    CONNECT (RFC 9113 8.5) 405, saying so; nothing is routed or connected.
    """
    resource = Resource()
    site, clock = front(resource)
    site.connectGate = object()  # any gate: HTTP/2 never reaches it
    peer = Peer(site, clock)
    peer.client.send_headers(
        1, [(b":method", b"CONNECT"), (b":authority", b"127.0.0.1:443")], True
    )
    peer.flush()
    headers, body, ended = peer.response(1)
    assert (headers[b":status"], ended) == (b"405", True)
    assert body == b"CONNECT tunnels are opened over HTTP/1.1 only\n"
    assert resource.requests == []


def test_bodyLengthAsTheBackendWillSeeIt() -> None:
    """A body without content-length goes chunked; a head ending the stream: none."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(1, b"POST", b"/stream", end=False)
    peer.request(3, b"POST", b"/empty", end=True)
    streamed, empty = resource.requests
    assert streamed.requestHeaders.getRawHeaders(b"transfer-encoding") == [b"chunked"]
    assert not empty.requestHeaders.hasHeader(b"transfer-encoding")
    assert resource.bodies[1].ended


def test_hostOnceFromAuthority() -> None:
    """An :authority and the same Host header make one Host (not a 400)."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(1, headers=[(b"host", b"www.example.test")])
    assert resource.requests[0].requestHeaders.getRawHeaders(b"host") == [
        b"www.example.test"
    ]


def test_clientCertificateHeaderCannotBeForged() -> None:
    """The listener's client-certificate header is dropped when a client sends it."""
    tls = ListenerTLS(certificate="c.pem", key="c.key", client_cert_header="X-Cert")
    resource = Resource()
    peer = Peer(*front(resource, Listener("tcp:0", tls=tls)))
    peer.request(1, headers=[(b"x-cert", b"CN=admin")])
    assert not resource.requests[0].requestHeaders.hasHeader(b"x-cert")


# -- the response ---------------------------------------------------------------


def test_connectionSpecificHeadersNeverSent() -> None:
    """A backend's Connection, Keep-Alive, Transfer-Encoding... stay out of h2."""
    hopByHop = [
        (b"Connection", b"keep-alive, X-Gone"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"h2c"),
        (b"TE", b"gzip"),
        (b"X-Kept", b"yes"),
    ]
    resource = Resource(lambda r: answer(r, 200, b"body", *hopByHop))
    peer = Peer(*front(resource))
    peer.request(1)
    headers, body, ended = peer.response(1)
    assert (headers[b":status"], body, ended) == (b"200", b"body", True)
    assert headers[b"x-kept"] == b"yes"
    for name in (b"connection", b"keep-alive", b"proxy-connection", b"upgrade"):
        assert name not in headers
    assert b"transfer-encoding" not in headers
    assert b"te" not in headers


def test_resetCutsOneStreamOnly() -> None:
    """A response cut short resets its stream (INTERNAL_ERROR); others go on."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(1)
    peer.request(3)
    cut, other = resource.requests
    cut.setResponseCode(200)
    cut.write(b"part")
    cut.abortConnection("backend-closed")
    peer.flush()
    [reset] = peer.of(h2.events.StreamReset, 1)
    assert reset.error_code == ErrorCodes.INTERNAL_ERROR
    assert cut.clientGone
    answer(other, 200, b"whole")
    peer.flush()
    assert peer.response(3)[1:] == (b"whole", True)


def test_clientResetReachesTheRequest() -> None:
    """A client resetting its stream is, to the request, a client gone."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(1)
    gone: list[bool] = []
    resource.requests[0].whenClientGone(lambda: gone.append(True))
    peer.client.reset_stream(1, ErrorCodes.CANCEL)
    peer.flush()
    assert gone == [True]
    assert peer.server.streams == {}


# -- flow control ---------------------------------------------------------------


def test_pausedUploadWithholdsWindowUpdates() -> None:
    """A paused request's body waits in the stream, and no WINDOW_UPDATE goes out."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(1, b"PUT", b"/slow", end=False)
    request = resource.requests[0]
    request.channel.transport.pauseProducing()
    peer.send(1, b"b" * 60000)
    assert resource.bodies[0].chunks == []
    assert peer.windowUpdates(1) == 0
    assert peer.client.local_flow_control_window(1) == 65535 - 60000
    request.channel.transport.resumeProducing()
    peer.flush()
    assert b"".join(resource.bodies[0].chunks) == b"b" * 60000
    assert peer.windowUpdates(1) == 1
    assert peer.client.local_flow_control_window(1) == 65535


def test_oneWaitingUploadDoesNotStallOthers() -> None:
    """A paused stream holding a full window leaves room for other uploads."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(1, b"PUT", b"/slow", end=False)
    resource.requests[0].channel.transport.pauseProducing()
    peer.send(1, b"s" * 65535)
    peer.request(3, b"PUT", b"/fast", end=False)
    peer.send(3, b"f" * 65535, end=True)
    assert b"".join(resource.bodies[1].chunks) == b"f" * 65535
    assert resource.bodies[1].ended


def test_clientWindowPausesBackend() -> None:
    """The backend pauses when the client's window is used up, resumes as it opens."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.acknowledge = False
    peer.request(1)
    producer = Producer(resource.requests[0], 200000)
    producer.pump()
    peer.flush()
    assert producer.paused
    assert producer.sent < 65535 + len(producer.chunk)
    # Nothing more can go: Twisted's send loop sleeps instead of spinning.
    assert not peer.turn()
    received = len(peer.response(1)[1])
    peer.client.acknowledge_received_data(received, 1)
    peer.flush()
    assert not producer.paused
    producer.pump()
    peer.flush()
    assert len(peer.response(1)[1]) == received + 65535


def stalledStream(
    resource: Resource, site: HTTPProxyFactory, clock: Clock
) -> tuple[Peer, Producer]:
    """Stream 1, its response written until the window the client never opens."""
    peer = Peer(site, clock)
    peer.acknowledge = False
    peer.request(1)
    producer = Producer(resource.requests[0], 200000)
    producer.pump()
    peer.flush()
    return peer, producer


def test_streamGivenNoWindowIsResetAfterSendTimeout() -> None:
    """
    A client that gives a stream no window for send_timeout has the stream
    reset (its backend is stopped); a window opened in time starts it over.
    """
    resource = Resource()
    site, clock = front(resource, send_timeout=10.0)
    peer, producer = stalledStream(resource, site, clock)
    assert producer.paused
    clock.advance(9.0)
    peer.client.acknowledge_received_data(len(peer.response(1)[1]), 1)
    peer.flush()
    producer.pump()
    peer.flush()
    clock.advance(9.0)
    peer.flush()
    assert not peer.of(h2.events.StreamReset, 1)
    clock.advance(1.0)
    peer.flush()
    assert [e.error_code for e in peer.of(h2.events.StreamReset, 1)] == [
        ErrorCodes.INTERNAL_ERROR
    ]
    assert resource.requests[0].clientGone


def test_streamResetForSendTimeoutIsLoggedSo() -> None:
    """
    A stream reset for send_timeout gets its access-log line: X,
    send-timeout, and only the body bytes that reached the client (not those
    still queued on the stream).
    """
    resource = Resource()
    site, clock = front(resource, send_timeout=10.0)
    written: list[str] = []
    fmt = "%>s %b %X %{PROXY_END_REASON}e"
    site.accessLog = AccessLogger(fmt, written.append, None, clock)
    peer, producer = stalledStream(resource, site, clock)
    clock.advance(10.0)
    peer.flush()
    assert peer.of(h2.events.StreamReset, 1)
    received = len(peer.response(1)[1])
    assert 0 < received < producer.sent
    site.accessLog.flush()
    assert written == [f"200 {received} X send-timeout\n"]


def test_bufferBoundedWhateverWindowTheClientGives() -> None:
    """A client with a 2 GiB window not reading: the backend pauses at STREAM_BUFFER."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.client.increment_flow_control_window(2**31 - 1 - 65535)
    peer.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    peer.request(1)
    total = 8 * 1024 * 1024
    producer = Producer(resource.requests[0], total)
    # The client reads 64 KiB at a time: its socket is full beyond that.
    peer.transport.limit = 65536
    # The client's socket is full: TLS pauses the connection.
    peer.server.pauseProducing()
    producer.pump()
    peer.flush()
    assert producer.paused
    assert peer.server.queuedBytes() <= STREAM_BUFFER + len(producer.chunk)
    # It reads again: everything arrives, the backend paused again and again.
    while not peer.response(1)[2]:
        peer.transport.producerState = "producing"
        peer.server.resumeProducing()
        peer.flush()
        producer.pump()
        peer.flush()
        assert peer.server.queuedBytes() <= STREAM_BUFFER + len(producer.chunk)
    assert len(peer.response(1)[1]) == total
    assert producer.pauses > 10


# -- answers before the body is in ------------------------------------------------


def test_bodyAfterTheAnswerIsDropped() -> None:
    """
    Answered mid-upload: after the response the stream is reset with NO_ERROR,
    and DATA the client still had in flight harms nothing.
    """
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(1, b"POST", b"/upload", end=False)
    peer.send(1, b"first")
    answer(resource.requests[0], 413, b"too big")
    peer.flush()
    headers, body, ended = peer.response(1)
    assert (headers[b":status"], body, ended) == (b"413", b"too big", True)
    [reset] = peer.of(h2.events.StreamReset, 1)
    assert reset.error_code == ErrorCodes.NO_ERROR
    # A client that had more in flight: its frames are taken and dropped.
    peer.server.dataReceived(
        _frames(b"\x00", 1, b"late") + _frames(b"\x00", 1, b"", flags=1)
    )
    peer.request(3)
    answer(resource.requests[1])
    peer.flush()
    assert peer.response(3)[1:] == (b"ok", True)
    assert not peer.transport.disconnecting


def _frames(kind: bytes, streamID: int, payload: bytes, flags: int = 0) -> bytes:
    """One raw frame, as a client with more in flight would still send it."""
    return (
        len(payload).to_bytes(3, "big")
        + kind
        + bytes([flags])
        + streamID.to_bytes(4, "big")
        + payload
    )


def test_bodyOverTheLimitMidStream() -> None:
    """A body without a length passing max_body_bytes is answered 413, then reset."""
    resource = Resource()
    peer = Peer(*front(resource, max_body_bytes=10))
    peer.request(1, b"POST", b"/upload", end=False)
    peer.send(1, b"0123456789")
    assert peer.response(1)[0] == {}
    peer.send(1, b"!")
    headers, body, ended = peer.response(1)
    assert (headers[b":status"], body, ended) == (
        b"413",
        b"request body too large\n",
        True,
    )
    [reset] = peer.of(h2.events.StreamReset, 1)
    assert reset.error_code == ErrorCodes.NO_ERROR
    assert resource.bodies[0].chunks == [b"0123456789"]


def test_stalledUploadIsRequestTimeout() -> None:
    """A body that stops arriving for idle_timeout is answered 408."""
    resource = Resource()
    site, clock = front(resource, idle_timeout=30.0)
    peer = Peer(site, clock)
    peer.request(1, b"POST", b"/upload", end=False)
    clock.advance(20)
    peer.send(1, b"some")
    clock.advance(20)
    peer.flush()
    assert peer.response(1)[0] == {}
    clock.advance(10)
    peer.flush()
    assert peer.response(1)[0][b":status"] == b"408"


# -- idle, drain and close ---------------------------------------------------------


def test_idleConnectionClosedStreamsKeptOpen() -> None:
    """A stream waiting on its backend keeps the connection; idleness closes it."""
    resource = Resource()
    site, clock = front(resource, idle_timeout=30.0)
    peer = Peer(site, clock)
    peer.request(1)
    clock.advance(100)
    peer.flush()
    assert not peer.transport.disconnecting
    answer(resource.requests[0])
    peer.flush()
    clock.advance(30)
    peer.flush()
    assert peer.goaways == [(1, ErrorCodes.NO_ERROR)]
    assert peer.transport.disconnecting
    assert peer.transport.producer is None


def test_drainLetsOpenStreamsFinish() -> None:
    """Draining: GOAWAY at once, the open stream answered, then the close."""
    resource = Resource()
    site, clock = front(resource)
    peer = Peer(site, clock)
    peer.request(1)
    drained = site.drain()
    peer.flush()
    assert peer.goaways == [(1, ErrorCodes.NO_ERROR)]
    assert not peer.transport.disconnecting
    answer(resource.requests[0], 200, b"last")
    peer.flush()
    assert peer.response(1)[1:] == (b"last", True)
    assert peer.goaways == [(1, ErrorCodes.NO_ERROR)] * 2
    assert peer.transport.disconnecting
    assert not drained.called
    peer.server.connectionLost(Failure(ConnectionDone()))
    assert drained.called
    assert site.channels == set()


def test_streamsOpenedAfterGoAwayRefused() -> None:
    """A stream the client opened before it saw GOAWAY is refused, so it can retry."""
    resource = Resource()
    peer = Peer(*front(resource))
    peer.request(1)
    peer.server.drain()
    peer.request(3, path=b"/late")
    assert peer.goaways == [(1, ErrorCodes.NO_ERROR)]
    [refused] = peer.of(h2.events.StreamReset, 3)
    assert refused.error_code == ErrorCodes.REFUSED_STREAM
    assert len(resource.requests) == 1


def test_drainIdleClosesAtOnce() -> None:
    """A connection without streams says GOAWAY and closes as the drain begins."""
    peer = Peer(*front(Resource()))
    peer.server.drain()
    peer.flush()
    assert peer.goaways == [(0, ErrorCodes.NO_ERROR)]
    assert peer.transport.disconnecting


def test_abortAllCutsHTTP2Connections() -> None:
    """When the grace period is over the HTTP/2 connection is cut too."""
    site, clock = front(Resource())
    peer = Peer(site, clock)
    peer.request(1)
    site.abortAll()
    assert peer.transport.disconnecting


# -- ALPN: what the TLS connection is handed to ----------------------------------


class Client(Protocol):
    """A TLS client that records what it receives."""

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def handshake(
    tmp_path: Path, offer: list[bytes]
) -> tuple[HTTPProxyFactory, Any, Client, Any, Clock]:
    """An h2-enabled TLS listener and a client offering C{offer}, in memory."""
    from twisted_proxy.tls.server import ServerTLS

    ca = TestCA(tmp_path)
    leaf = ca.issue("localhost")
    tls = ListenerTLS(
        certificate=str(leaf.certificate), key=str(leaf.key), alpn=("h2", "http/1.1")
    )
    resource = Resource(lambda r: answer(r, 200, b"hello"))
    site, clock = front(resource, Listener("tcp:0", tls=tls))
    serverFactory = TLSMemoryBIOFactory(
        ServerTLS(tls), False, NegotiatingFactory(site), clock
    )
    client = Client()
    options = optionsForClientTLS(
        "localhost",
        trustRoot=Certificate.loadPEM(ca.certificate.read_bytes()),
        acceptableProtocols=offer,
    )
    clientFactory = TLSMemoryBIOFactory(
        options, True, Factory.forProtocol(lambda: client), clock
    )
    address = IPv4Address("TCP", "127.0.0.1", 443)
    serverSide = serverFactory.buildProtocol(address)
    clientSide = clientFactory.buildProtocol(address)
    pump = connect(
        serverSide,
        FakeTransport(serverSide, isServer=True),
        clientSide,
        FakeTransport(clientSide, isServer=False),
        clock=clock,
    )
    pump.flush()
    return site, serverSide, client, pump, clock


def test_h2NegotiatedSpeaksHTTP2(tmp_path: Path) -> None:
    """ALPN h2: TLS is handed an HTTP/2 connection; the HTTP/1.1 channel is gone."""
    site, tls, client, pump, clock = handshake(tmp_path, [b"h2", b"http/1.1"])
    assert isinstance(tls.wrappedProtocol, H2ProxyConnection)
    assert site.channels == {tls.wrappedProtocol}
    # The HTTP/1.1 channel's header timer went with it.
    owners = [getattr(call.func, "__self__", None) for call in clock.calls]
    assert not any(isinstance(owner, HTTPServerChannel) for owner in owners)
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    h2client = h2.connection.H2Connection(config)
    h2client.initiate_connection()
    h2client.send_headers(
        1,
        [
            (b":method", b"GET"),
            (b":path", b"/"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
        ],
        end_stream=True,
    )
    client.transport.write(h2client.data_to_send())  # type: ignore[union-attr]
    for _ in range(5):
        pump.flush()
    events = h2client.receive_data(client.received)
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert data == b"hello"


@pytest.mark.parametrize("offer", [[b"http/1.1"], []])
def test_otherwiseTheHTTP11ChannelItself(tmp_path: Path, offer: list[bytes]) -> None:
    """Without h2 chosen, TLS is handed the listener's own HTTP/1.1 channel."""
    site, tls, client, pump, _ = handshake(tmp_path, offer)
    [channel] = site.channels
    assert isinstance(channel, HTTPServerChannel)
    assert tls.wrappedProtocol is channel
    client.transport.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")  # type: ignore[union-attr]
    pump.flush()
    assert client.received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert client.received.endswith(b"hello")


def test_interfaces() -> None:
    """The negotiating protocol hears of the handshake; its factory is a factory."""
    site, _ = front(Resource())
    factory = NegotiatingFactory(site)
    assert verifyObject(IProtocolFactory, factory)
    protocol = factory.buildProtocol(None)
    assert isinstance(protocol, _Negotiating)
    assert verifyObject(IHandshakeListener, protocol)
