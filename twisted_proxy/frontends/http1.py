"""
The proxy's own HTTP/1.1 server: the front end of every C{[[listen]]}.

A bare twisted.web C{Site} answering a fixed body cost 55.5 µs of CPU per
request under wrk, against 27.6 µs for a plain protocol in front of the whole
upstream leg (measured on the benchmark's machine): twisted.web's
C{HTTPChannel} and C{Request} cost more than the proxying. This server reads
a request head in one piece (L{twisted_proxy.core.http11}), streams the body to the
resource as it arrives, and writes the response head and body in one system
call. Its requests offer the part of twisted.web's C{IRequest} that the
proxy's resources use, so the same L{ReverseProxyResource} serves here and
mounted in an ordinary twisted.web C{Site}.

Limits a public listener needs: head size (431/414), head time (408,
slowloris), idle keep-alive time, body size (413), strict framing (400).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from zope.interface import implementer

from twisted import copyright
from twisted_proxy._twisted_internals import (
    pendingWriteBytes,
    replaceProtocol,
    sendNow,
)
from twisted_proxy.config.model import Listener, ProxySettings
from twisted_proxy.core.headers import ResponseHeaderRewriter
from twisted_proxy.core.http11 import (
    CHUNKED,
    NO_BODY,
    ChunkedDecoder,
    HTTPError,
    RequestHead,
    checkHeadStart,
    parseRequestHead,
)
from twisted_proxy.core.logformat import END_SEND_TIMEOUT, END_SHUTDOWN_GRACE
from twisted_proxy.core.routing import normalizeHost
from twisted_proxy.frontends.request import (
    IAccessLog,
    ProxiedRequest,
    errorHeaders,
    reasonPhrase,
    refusal,
)
from twisted_proxy.tls.server import clientSubject, listenerSettings

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

_NO_BODY_STATUSES = frozenset({204, 304})


class HeaderList:
    """
    Headers as a list of (name, value) in arrival order, with the lookups of
    twisted.web's C{Headers} that the proxy uses (names case-insensitive).
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[bytes, bytes]] | None = None) -> None:
        self._items = items if items is not None else []

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """Every header, in order, repeated ones separate."""
        return self._items

    def getRawHeaders(self, name: bytes, default: Any = None) -> Any:
        """The values of C{name}, or C{default}."""
        name = name.lower()
        values = [v for n, v in self._items if n.lower() == name]
        return values or default

    def hasHeader(self, name: bytes) -> bool:
        """Whether C{name} is present."""
        name = name.lower()
        return any(n.lower() == name for n, _ in self._items)

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """(name, values) per name, as twisted.web's C{Headers} yields them."""
        grouped: dict[bytes, tuple[bytes, list[bytes]]] = {}
        for n, v in self._items:
            entry = grouped.get(n.lower())
            if entry is None:
                grouped[n.lower()] = (n, [v])
            else:
                entry[1].append(v)
        return iter(grouped.values())

    def addRawHeader(self, name: bytes | str, value: bytes | str) -> None:
        """Add one header."""
        self._items.append((_bytes(name), _bytes(value)))

    def setRawHeaders(self, name: bytes | str, values: Sequence[bytes | str]) -> None:
        """Replace every C{name} header by C{values}."""
        self.removeHeader(name)
        for value in values:
            self.addRawHeader(name, value)

    def removeHeader(self, name: bytes | str) -> None:
        """Remove every C{name} header."""
        lower = _bytes(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != lower]


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


class ProxyRequest(ProxiedRequest):
    """One request on an L{HTTPServerChannel}."""

    def __init__(self, channel: HTTPServerChannel, head: RequestHead) -> None:
        self.channel = channel
        self.method = head.method
        self.uri = head.target
        self.clientproto = head.version
        self.path = head.target.split(b"?", 1)[0]
        self.args: dict[bytes, list[bytes]] = {}
        self.prepath: list[bytes] = []
        self.requestHeaders = HeaderList(head.headers)
        self.responseHeaders = HeaderList()
        self.code = 200
        self.code_message = b"OK"
        self.startedWriting = False
        self.finished = False
        self.chunked = False
        self.sentLength = 0
        self.producer: IPushProducer | None = None
        self._noBody = False
        self._initProxied(channel.site.reactor.seconds(), channel.site.maxBodyBytes)
        self.headBytes = head.headBytes
        self.bodyComplete = head.length == NO_BODY
        self.requestLine = head.requestLine

    # -- what resources and the access log ask of a request --

    def getClientAddress(self) -> IAddress:
        address: IAddress = self.channel.transport.getPeer()
        return address

    def getHost(self) -> IAddress:
        host: IAddress = self.channel.getHost()
        return host

    def isSecure(self) -> bool:
        return bool(self.channel.secure)

    def getHeader(self, name: bytes) -> bytes | None:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None

    def sendContinue(self) -> None:
        if self.expectContinue and not self.startedWriting and not self.finished:
            self.expectContinue = False
            self.channel.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code
        self.code_message = message or reasonPhrase(code)

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self.producer = producer
        self.channel.registerProducer(producer)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.channel.unregisterProducer()

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("write() after finish()")
        if self.clientGone:
            return
        if not self.startedWriting:
            self._writeHead()
        if self._noBody or not data:
            return
        self.sentLength += len(data)
        if self.chunked:
            self.channel.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            self.channel.write(data)

    def finish(self) -> None:
        if self.finished or self.clientGone:
            return
        if not self.startedWriting:
            self.write(b"")
        if self.chunked:
            self.channel.write(b"0\r\n\r\n")
        self.finished = True
        self.channel.site.log(self)
        self.channel.requestDone(self)

    def _writeHead(self) -> None:
        self.startedWriting = True
        code = self.code
        channel = self.channel
        headers = self.responseHeaders
        self._noBody = (
            self.method == b"HEAD" or code in _NO_BODY_STATUSES or 100 <= code < 200
        )
        if not self._noBody and not headers.hasHeader(b"content-length"):
            if self.clientproto == b"HTTP/1.1":
                headers.addRawHeader(b"Transfer-Encoding", b"chunked")
                self.chunked = True
            else:
                # An HTTP/1.0 client reads to the end of the connection.
                channel.persistent = False
        if not channel.persistent:
            headers.removeHeader(b"connection")
            headers.addRawHeader(b"Connection", b"close")
        elif self.clientproto == b"HTTP/1.0":
            # It asked for keep-alive and the length is known: say it is kept.
            headers.removeHeader(b"connection")
            headers.addRawHeader(b"Connection", b"keep-alive")
        head = [self.clientproto, b" %d " % code, self.code_message, b"\r\n"]
        for name, value in headers.pairs():
            head.extend((name, b": ", value, b"\r\n"))
        head.append(b"\r\n")
        channel.writeSequence(head)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """The client's connection is gone."""
        self._lostClient()

    def keepsConnection(self) -> bool:
        return bool(self.channel.keepsAlive())

    def _logUnfinished(self) -> None:
        self.channel.site.log(self)


@implementer(IPushProducer)
class HTTPServerChannel(Protocol):
    """
    One client connection: requests read one after another (pipelined ones
    wait), each body streamed to its resource, responses written straight to
    the socket. It is the transport's producer, and hands pauses on to the
    backend connection that produces the current response.
    """

    transport: Any  # an ITCPTransport (or TLS) once connected
    discardsBody = True

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
        self._timer: IDelayedCall | None = None
        self._timerPurpose: str | None = None
        # While the client takes none of its response: send_timeout.
        self._sendTimer: IDelayedCall | None = None
        self._sendHeld: int | None = None

    # -- Protocol --

    def connectionMade(self) -> None:
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        self.secure = ISSLTransport.providedBy(transport)
        transport.registerProducer(self, True)
        self._arm(self.site.settings.header_timeout, _FIRST)

    def dataReceived(self, data: bytes) -> None:
        if self.abandoned:
            return
        state = self._state
        if state == _BODY:
            if self._timerPurpose == _UPLOAD and self._timer is not None:
                self._timer.reset(self.site.settings.idle_timeout)
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
        self._cancelTimer()
        self._cancelSendTimer()
        self.site._channelGone(self)
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
            elif self._timerPurpose == _FIRST:
                # The clock started when the client connected: its head is
                # due within header_timeout of that, not of its first byte.
                self._timerPurpose = _PARTIAL
            elif self._timerPurpose != _PARTIAL:
                # A keep-alive connection: from the request's first byte.
                self._arm(self.site.settings.header_timeout, _PARTIAL)
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
        self._timerPurpose = None  # the timer, if running, is ignored now
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
            self._arm(self.site.settings.idle_timeout, _UPLOAD)
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
        if self._timerPurpose == _UPLOAD:
            self._timerPurpose = None
        request = self.request
        if request is None:
            # The body of a request answered early is all read: next request.
            self._state = _HEAD
            self._arm(self.site.settings.idle_timeout, _IDLE)
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
        self._arm(self.site.settings.idle_timeout, _IDLE)
        if self._readPaused:
            self._readPaused = False
            self.transport.resumeProducing()
        if self._buffer:
            self._readHeads()

    # -- writing: straight to the socket, batched while corked --

    def cork(self) -> None:
        """Hold writes until L{uncork}, so a response head and body go out as one."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        """Send what was held, in one write."""
        pending, self._corked = self._corked, None
        if pending and self.transport is not None:
            sendNow(self.transport, b"".join(pending))

    def write(self, data: bytes) -> None:
        """Write response bytes."""
        if self._corked is not None:
            self._corked.append(data)
        else:
            sendNow(self.transport, data)

    def writeSequence(self, iovec: Sequence[bytes]) -> None:
        """Write several pieces of response at once."""
        if self._corked is not None:
            self._corked.extend(iovec)
        else:
            sendNow(self.transport, b"".join(iovec))

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
        self._cancelTimer()
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

    def abortConnection(self) -> None:
        """Cut the connection now."""
        self.abandoned = True
        self._cancelTimer()
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
        self._cancelTimer()
        self._cancelSendTimer()
        transport = self.transport
        transport.unregisterProducer()
        if self._readPaused:
            self._readPaused = False
            transport.resumeProducing()
        leftover, self._buffer = self._buffer, b""
        self.request = None
        self.site._channelGone(self)
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

    # -- IPushProducer: the client's socket is full, or has room again --

    def registerProducer(self, producer: IPushProducer) -> None:
        """C{producer} (the backend connection) writes the current response."""
        self._producer = producer
        if self._writePaused:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        """The response's producer is done."""
        self._producer = None

    def pauseProducing(self) -> None:
        self._writePaused = True
        if self._producer is not None:
            self._producer.pauseProducing()
        if self._sendTimer is None:
            self._sendHeld = pendingWriteBytes(self.transport)
            self._sendTimer = self.site.reactor.callLater(
                self.site.settings.send_timeout, self._sendTimedOut
            )

    def resumeProducing(self) -> None:
        self._writePaused = False
        self._cancelSendTimer()
        if self._producer is not None:
            self._producer.resumeProducing()

    def _cancelSendTimer(self) -> None:
        timer, self._sendTimer = self._sendTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _sendTimedOut(self) -> None:
        """The client's socket stayed full for send_timeout: let it go."""
        self._sendTimer = None
        held = pendingWriteBytes(self.transport)
        before, self._sendHeld = self._sendHeld, held
        seconds = self.site.settings.send_timeout
        if held is not None and before is not None and held < before:
            # Slow, not gone: it took some meanwhile.
            self._sendTimer = self.site.reactor.callLater(seconds, self._sendTimedOut)
            return
        peer = str(getattr(self.transport.getPeer(), "host", "-"))
        self.site._log.info(
            "client {peer} took no response bytes for {seconds:g}s (send_timeout):"
            " closing its connection and the backend's",
            peer=peer,
            seconds=seconds,
        )
        self.cutShort(END_SEND_TIMEOUT)
        self.abortConnection()

    def stopProducing(self) -> None:
        if self._producer is not None:
            self._producer.stopProducing()

    # -- the one timer --

    def _arm(self, seconds: float, purpose: str) -> None:
        self._timerPurpose = purpose
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(seconds)
        else:
            self._timer = self.site.reactor.callLater(seconds, self._timerFired)

    def _cancelTimer(self) -> None:
        self._timerPurpose = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timerFired(self) -> None:
        self._timer = None
        purpose, self._timerPurpose = self._timerPurpose, None
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


def _servedName(name: str) -> str:
    """A configured host name as an absolute-form target's host is compared."""
    raw = name.encode("ascii") if name.isascii() else name.encode("idna")
    return (normalizeHost(raw) or b"").decode("ascii")


class HTTPProxyFactory(ServerFactory):
    """
    Builds L{HTTPServerChannel}s for one set of listeners: the root resource
    (the router), the limits of C{[proxy]}, the access log, and a drain for
    graceful shutdown.
    """

    noisy = False
    _log = Logger()

    def __init__(
        self,
        resource: IResource,
        settings: ProxySettings,
        reactor: IReactorTime,
        accessLog: IAccessLog | None = None,
        hostNames: Sequence[str] = (),
        listener: Listener | None = None,
    ) -> None:
        self.resource: Any = resource
        self.settings = settings
        self.reactor = reactor
        self.listener = listener
        self.maxBodyBytes = settings.max_body_bytes
        tls = listener.tls if listener is not None else None
        # The header that carries a verified client certificate's subject.
        self.clientCertHeader: bytes | None = None
        if tls is not None and tls.client_cert_header is not None:
            self.clientCertHeader = tls.client_cert_header.encode("ascii")
        self.responseRewriter = ResponseHeaderRewriter(
            listenerSettings(settings, listener), copyright.version
        )
        self.accessLog = accessLog
        # The names an absolute-form request may carry (we are no open proxy),
        # reduced as routing reduces a Host: no trailing dot, no brackets.
        self.hostNames = frozenset(
            _servedName(n) for n in (settings.server_name, "localhost", *hostNames)
        )
        # Open connections: HTTPServerChannels, and the HTTP/2 connections of
        # twisted_proxy.frontends.http2 (which drain themselves).
        self.channels: set[Any] = set()
        self._drained: Deferred[None] | None = None

    def buildProtocol(self, addr: IAddress | None) -> HTTPServerChannel:
        channel = HTTPServerChannel(self)
        self.channels.add(channel)
        return channel

    def prepareRequest(self, request: Any, transport: Any) -> None:
        """
        Apply what this listener adds to every request whose head is in,
        before it is routed: the client certificate's subject header (a
        client-sent one of that name is always dropped). C{transport} is the
        connection's (TLS) transport.
        """
        name = self.clientCertHeader
        if name is None:
            return
        headers = request.requestHeaders
        headers.removeHeader(name)
        subject = clientSubject(transport)
        if subject is not None:
            headers.addRawHeader(name, subject)

    def log(self, request: ProxiedRequest) -> None:
        """Write C{request}'s access-log line."""
        if self.accessLog is not None:
            self.accessLog.logRequest(request)

    def _channelGone(self, channel: Any) -> None:
        self.channels.discard(channel)
        if self._drained is not None and not self.channels:
            d, self._drained = self._drained, None
            d.callback(None)

    def drain(self) -> Deferred[None]:
        """
        Close idle connections now and the busy ones once their response is
        done; fire when every connection is gone. Stop listening first.
        """
        for channel in list(self.channels):
            if not isinstance(channel, HTTPServerChannel):
                channel.drain()
            elif channel.request is not None:
                channel.persistent = False
            else:
                channel.abandoned = True
                channel.loseConnection()
        if not self.channels:
            return succeed(None)
        self._drained = Deferred()
        return self._drained

    def abortAll(self, reason: str = END_SHUTDOWN_GRACE) -> None:
        """
        Cut every remaining connection (the grace period is over); C{reason}
        is what the access log gives for the responses cut short.
        """
        for channel in list(self.channels):
            # HTTP/1.1 and HTTP/2 connections note it; WebSocket bridges log
            # nothing more once open.
            cut = getattr(channel, "cutShort", None)
            if cut is not None:
                cut(reason)
            channel.abortConnection()


__all__ = [
    "HTTPProxyFactory",
    "HTTPServerChannel",
    "HeaderList",
    "ProxyRequest",
]
