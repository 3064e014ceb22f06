"""
The proxy's own HTTP/1.1 server: the front end of every C{[[listen]]}.

A bare twisted.web C{Site} answering a fixed body cost 55.5 µs of CPU per
request under wrk, against 27.6 µs for a plain protocol in front of the whole
upstream leg (measured on the benchmark's machine): twisted.web's
C{HTTPChannel} and C{Request} cost more than the proxying. This server reads
a request head in one piece (L{twisted_proxy.core.http11}), streams the body to the
resource as it arrives, and writes the response head and body in one system
call. Its requests (L{twisted_proxy.frontends.http1request}) offer the part
of twisted.web's C{IRequest} that the proxy's resources use, so the same
L{ReverseProxyResource} serves here and mounted in an ordinary twisted.web
C{Site}; its output side, writes and the client's flow control, is
L{twisted_proxy.frontends.http1output}. The factory is the listener's site
(L{twisted_proxy.frontends.listener}), whose registry the channels join.

Limits a public listener needs: head size (431/414), head time (408,
slowloris), idle keep-alive time, body size (413), strict framing (400).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import (
    IAddress,
    IPushProducer,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy._twisted_internals import (
    replaceProtocol,
)
from twisted_proxy.core.http11 import (
    CHUNKED,
    NO_BODY,
    ChunkedDecoder,
    HTTPError,
    RequestHead,
    checkHeadStart,
    parseRequestHead,
)
from twisted_proxy.core.timer import PurposeTimer
from twisted_proxy.frontends.http1output import ChannelOutput
from twisted_proxy.frontends.http1request import HeaderList, ProxyRequest
from twisted_proxy.frontends.listener import (
    IListenerConnection,
    ListenerSite,
    SendTimeout,
)
from twisted_proxy.frontends.request import errorHeaders, reasonPhrase, refusal

# Channel states.
_HEAD = 0  # reading a request head
_BODY = 1  # reading a request body
_WAIT = 2  # request read; its response is not done yet

# What the connection's one timer is for.
_FIRST = "first"  # connected, nothing sent yet: header_timeout, then close
_PARTIAL = "partial"  # half a head: header_timeout, then 408
_IDLE = "idle"  # between requests: idle_timeout, then close
_UPLOAD = "upload"  # a body stalls: idle_timeout, then 408 or cut

# Pipelined bytes held while a response is pending, before reading pauses.
_PIPELINE_LIMIT = 65536
# Answered before its body was all in (the backend answered early), a request
# has the rest of its body read and dropped, up to this much, so that the
# connection stays usable; past it the connection is closed.
_DISCARD_LIMIT = 1 << 20


@implementer(IPushProducer, IListenerConnection)
class HTTPServerChannel(ChannelOutput, Protocol):
    """
    One client connection: requests read one after another (pipelined ones
    wait), each body streamed to its resource, responses written straight to
    the socket. It is the transport's producer, and hands pauses on to the
    backend connection that produces the current response.
    """

    transport: Any  # an ITCPTransport (or TLS) once connected
    discardsBody = True
    protocolName = "http/1.1"

    def __init__(self, site: HTTPProxyFactory) -> None:
        self.site = site
        self.factory = site
        self.request: ProxyRequest | None = None
        self.persistent = True
        self.abandoned = False
        self.secure = False
        # Per connection, worked out on first use: "http"/"https", local port.
        self.scheme: str | None = None
        self.listenerPort: int | None = None
        self._buffer = b""
        self._state = _HEAD
        self._remaining = 0
        self._decoder: ChunkedDecoder | None = None
        self._discarded = 0
        self._looping = False
        self._readPaused = False
        self._writePaused = False
        self._producer: IPushProducer | None = None
        self._corked: list[bytes] | None = None
        self._host: Any = None
        self._timer = PurposeTimer(site.reactor.callLater, self._timerFired)
        # While the client takes none of its response: send_timeout.
        self._sendTimeout = SendTimeout(
            site.reactor, site.settings.send_timeout, self._sendTimedOut
        )

    # -- Protocol --

    @property
    def busy(self) -> bool:
        """A request is being read or answered."""
        return self.request is not None

    def connectionMade(self) -> None:
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        self.secure = ISSLTransport.providedBy(transport)
        transport.registerProducer(self, True)
        self._timer.arm(self.site.settings.header_timeout, _FIRST)

    def dataReceived(self, data: bytes) -> None:
        if self.abandoned:
            return
        state = self._state
        if state == _BODY:
            if self._timer.purpose == _UPLOAD:
                self._timer.extend(self.site.settings.idle_timeout)
            data = self._feedBody(data)
            if not data or self.abandoned:
                return
            state = self._state
        if state == _WAIT:
            self._buffer += data
            if len(self._buffer) > _PIPELINE_LIMIT and not self._readPaused:
                self._readPaused = True
                self.transport.pauseProducing()
            return
        self._buffer += data
        self._readHeads()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._timer.close()
        self._sendTimeout.close()
        self.site.connections.remove(self)
        request, self.request = self.request, None
        if request is not None:
            request.connectionLost(reason)

    # -- reading --

    def _readHeads(self) -> None:
        if self._looping:
            return
        self._looping = True
        try:
            while self._state == _HEAD and self._buffer and not self.abandoned:
                if not self._readOneHead():
                    break
        finally:
            self._looping = False

    def _readOneHead(self) -> bool:
        buffer = self._buffer
        if buffer[:2] == b"\r\n":
            # RFC 9112 2.2: empty lines before a request line are ignored.
            buffer = buffer.lstrip(b"\r\n")
            self._buffer = buffer
            if not buffer:
                return False
        limit = self.site.settings.max_header_bytes
        end = buffer.find(b"\r\n\r\n", 0, limit + 4)
        if end < 0:
            try:
                checkHeadStart(buffer[:limit])
            except HTTPError as e:
                self.refuse(e.status, e.message, _firstLine(buffer))
                return False
            if len(buffer) > limit:
                if b"\r\n" not in buffer[:limit]:
                    self.refuse(414, "request line too long")
                else:
                    self.refuse(431, "request head too large")
            elif self._timer.purpose == _FIRST:
                # The clock started when the client connected: its head is
                # due within header_timeout of that, not of its first byte.
                self._timer.purpose = _PARTIAL
            elif self._timer.purpose != _PARTIAL:
                # A keep-alive connection: from the request's first byte.
                self._timer.arm(self.site.settings.header_timeout, _PARTIAL)
            return False
        head, self._buffer = buffer[:end], buffer[end + 4 :]
        try:
            parsed = parseRequestHead(head, self.site.settings.max_headers)
        except HTTPError as e:
            self.refuse(e.status, e.message, _firstLine(head))
            return False
        self._startRequest(parsed)
        return True

    def _startRequest(self, head: RequestHead) -> None:
        self._timer.forget()  # the timer, if running, is ignored now
        request = ProxyRequest(self, head)
        self.request = request
        if not head.keepAlive:
            self.persistent = False
        if head.length == NO_BODY:
            self._state = _WAIT
        else:
            self._state = _BODY
            if head.length == CHUNKED:
                self._decoder = ChunkedDecoder(
                    request.handleContentChunk, self._bodyEnd
                )
            else:
                self._decoder = None
                self._remaining = head.length
            self._timer.arm(self.site.settings.idle_timeout, _UPLOAD)
        gate = self.site.connectGate
        if gate is not None and head.method == b"CONNECT":
            self.persistent = False
            if head.length != NO_BODY:
                request.respondError(400, "a CONNECT request has no body")
            else:
                gate.start(request)
            return
        if self.site.clientCertHeader is not None:
            self.site.prepareRequest(request, self.transport)
        problem = refusal(
            request,
            None if head.length == CHUNKED else head.length,
            self.site.settings.merge_slashes,
        )
        if problem is not None:
            # Refused on its head alone: answer, then close (nothing after it
            # on this connection is to be trusted).
            self.persistent = False
            request.respondError(*problem)
            return
        if request.target is None:
            # OPTIONS *: the proxy answers for itself.
            request.respondOptions()
            return
        # Expect: 100-continue goes on to the backend, whose 100 (or silence)
        # asks the client for its body: never before the route, its access
        # list and the backend have let the request through.
        request.expectContinue = head.expectContinue and self._state == _BODY
        request.bodyConsumer = self.site.resource.startStream(request)
        if self._state == _WAIT:
            consumer, request.bodyConsumer = request.bodyConsumer, None
            if consumer is not None:
                consumer.bodyEnd()
        elif self._buffer and not self.abandoned:
            data, self._buffer = self._buffer, b""
            rest = self._feedBody(data)
            self._buffer = rest + self._buffer

    def _feedBody(self, data: bytes) -> bytes:
        request = self.request
        if request is None:
            # The rest of an answered request's body: dropped, within limits.
            self._discarded += len(data)
            if self._discarded > _DISCARD_LIMIT:
                self.abandoned = True
                self.loseConnection()
                return b""
        decoder = self._decoder
        if decoder is not None:
            try:
                return decoder.feed(data)
            except HTTPError as e:
                self._badBody(e)
                return b""
        remaining = self._remaining
        piece, rest = data[:remaining], data[remaining:]
        self._remaining = remaining - len(piece)
        if piece and request is not None:
            request.handleContentChunk(piece)
        if not self._remaining and self._state == _BODY:
            self._bodyEnd()
        return rest

    def _bodyEnd(self) -> None:
        self._decoder = None
        if self._timer.purpose == _UPLOAD:
            self._timer.forget()
        request = self.request
        if request is None:
            # The body of a request answered early is all read: next request.
            self._state = _HEAD
            self._timer.arm(self.site.settings.idle_timeout, _IDLE)
            return
        self._state = _WAIT
        request.bodyComplete = True
        consumer, request.bodyConsumer = request.bodyConsumer, None
        if consumer is not None:
            consumer.bodyEnd()

    def _badBody(self, error: HTTPError) -> None:
        request = self.request
        if request is not None:
            request.refuseBody(error.status, error.message)
        else:
            self.abortConnection()

    def keepsAlive(self) -> bool:
        """Whether the connection stays open once the current response is done."""
        if not self.persistent or self.abandoned:
            return False
        # As requestDone decides: the rest of an unread body may be too long.
        return not (
            self._state == _BODY
            and self._decoder is None
            and self._remaining > _DISCARD_LIMIT
        )

    def requestDone(self, request: ProxyRequest) -> None:
        """The response to C{request} is complete."""
        if request is not self.request:
            return
        self.request = None
        self._producer = None
        if not self.persistent or self.abandoned:
            self.loseConnection()
            return
        if self._state == _BODY:
            # Answered before its body was all in: read the rest and drop it.
            remaining = self._remaining if self._decoder is None else 0
            if remaining > _DISCARD_LIMIT:
                self.loseConnection()
                return
            self._discarded = 0
            if self._readPaused:
                self._readPaused = False
                self.transport.resumeProducing()
            return
        self._state = _HEAD
        self._timer.arm(self.site.settings.idle_timeout, _IDLE)
        if self._readPaused:
            self._readPaused = False
            self.transport.resumeProducing()
        if self._buffer:
            self._readHeads()

    def getHost(self) -> Any:
        """The local address (asked of the socket once per connection)."""
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def getPeer(self) -> Any:
        """The client's address."""
        return self.transport.getPeer()

    def loseConnection(self) -> None:
        """Close once what was written is sent."""
        self.uncork()
        self._timer.cancel()
        transport = self.transport
        if transport is not None:
            if self.secure:
                # TLS sends its close alert only once no producer is left.
                transport.unregisterProducer()
            transport.loseConnection()

    def cutShort(self, reason: str) -> None:
        """The connection is about to be cut for C{reason}: its response says so."""
        if self.request is not None:
            self.request.cutShort(reason)

    def drain(self) -> None:
        """
        The listener stops: close once the response under way is done, or
        now when there is none.
        """
        if self.request is not None:
            self.persistent = False
        else:
            self.abandoned = True
            self.loseConnection()

    def abortConnection(self) -> None:
        """Cut the connection now."""
        self.abandoned = True
        self._timer.cancel()
        self._cancelSendTimer()
        if self.transport is not None:
            self.transport.abortConnection()

    def detach(self, protocol: Any) -> bytes:
        """
        Hand the connection to C{protocol} (a WebSocket bridge's client leg):
        this channel stops reading and timing, lets go of the transport, and
        leaves the listener's connections. Return the bytes the client sent
        after the current request's head, for C{protocol} to read first.
        """
        self.abandoned = True
        self._timer.cancel()
        self._cancelSendTimer()
        transport = self.transport
        transport.unregisterProducer()
        if self._readPaused:
            self._readPaused = False
            transport.resumeProducing()
        leftover, self._buffer = self._buffer, b""
        self.request = None
        self.site.connections.remove(self)
        replaceProtocol(transport, protocol)
        protocol.makeConnection(transport)
        return leftover

    def refuse(
        self, status: int, message: str, requestLine: bytes | None = None
    ) -> None:
        """
        Answer C{status} outside any request and close the connection;
        C{requestLine} is what the client sent as one, for the access log.
        """
        if self.abandoned:
            return
        self.abandoned = True
        self.persistent = False
        body = (message + "\n").encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reasonPhrase(status))]
        for name, value in errorHeaders(
            self.site, len(body), [(b"Connection", b"close")]
        ):
            head.append(b"%s: %s\r\n" % (name, value))
        head.append(b"\r\n")
        self.writeSequence([*head, body])
        peer = str(getattr(self.transport.getPeer(), "host", "-"))
        if self.site.accessLog is not None:
            line = requestLine or b""
            if self.request is not None:
                line = self.request.requestLine or b""
            self.site.accessLog.logRefusal(peer, line, status, len(body))
        self.site._log.info(
            "refused {peer}: {status} {message}",
            peer=peer,
            status=status,
            message=message,
        )
        self.loseConnection()

    # -- the one timer --

    def _timerFired(self, purpose: str | None) -> None:
        if purpose in (_FIRST, _IDLE):
            self.abandoned = True
            self.loseConnection()
        elif purpose == _PARTIAL:
            self.refuse(408, "request head not received in time")
        elif purpose == _UPLOAD:
            request = self.request
            if request is not None:
                request.refuseBody(408, "request body not received in time")
            else:
                self.abortConnection()


def _firstLine(data: bytes) -> bytes:
    """The first line of C{data} (to a CR or LF), at most 8 KiB of it."""
    return data[:8192].split(b"\n", 1)[0].split(b"\r", 1)[0]


class HTTPProxyFactory(ListenerSite):
    """
    Builds L{HTTPServerChannel}s for one set of listeners: the listener's
    site (L{ListenerSite}: the router, the limits of C{[proxy]}, the access
    log, and the registry that graceful shutdown drains) serving HTTP/1.1.
    """

    _log = Logger()

    def buildProtocol(self, addr: IAddress | None) -> HTTPServerChannel:
        channel = HTTPServerChannel(self)
        self.connections.add(channel)
        return channel


__all__ = [
    "HTTPProxyFactory",
    "HTTPServerChannel",
    "HeaderList",
]
