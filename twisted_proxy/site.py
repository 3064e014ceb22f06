"""
The HTTP/1.1 front end: a twisted.web C{Site} whose requests stream.

twisted.web reads a whole request body before C{render()} runs. Here the
request starts its upstream exchange as soon as its head is in and feeds the
body on as it arrives (see DESIGN.md). The channel adds the limits a public
listener needs: head size (431), head time (408, slowloris), body size (413),
and a clear refusal of what a reverse proxy must not do (CONNECT, absolute-form
requests for other hosts).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any
from typing import Protocol as TypingProtocol
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from zope.interface import Attribute, Interface

from twisted import copyright
from twisted_proxy._twisted_internals import (
    BadRequestHook,
    pendingRequestLine,
    sendContinue,
    sendNow,
)
from twisted_proxy.config.model import ProxySettings
from twisted_proxy.headers import ResponseHeaderRewriter

_REASONS = {
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}

_ALLOW = b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"


class IBodyConsumer(TypingProtocol):
    """Where a streaming request hands its body."""

    def bodyData(self, data: bytes) -> None:
        """A piece of the request body arrived."""

    def bodyEnd(self) -> None:
        """The request body is complete."""


class IStreamingResource(Interface):
    """A resource that takes a request as soon as its head is in."""

    streaming = Attribute("True: render the request before its body arrives.")

    def startStream(request: StreamingRequest) -> IBodyConsumer | None:  # type: ignore[misc]
        """
        Begin answering C{request}, whose body has not arrived yet; return who
        takes the body, or None when the request was already answered.
        """


class IAccessLog(TypingProtocol):
    """Writes one access-log line per finished request."""

    def logRequest(self, request: StreamingRequest) -> None:
        """Log C{request}."""

    def logRefusal(
        self, remoteHost: str, requestLine: bytes, status: int, sent: int
    ) -> None:
        """Log a request refused before it became one."""


class StreamingRequest(server.Request):  # type: ignore[misc]
    """
    A request that hands its body on as it arrives.

    In a L{ProxySite} it is the request factory; in any other C{Site} it may
    also be used as one, and then mounting a L{ReverseProxyResource} there
    streams too.
    """

    defaultContentType = None
    channel: Any  # a ProxyChannel, or any HTTPChannel when embedded
    _log = Logger()

    def __init__(self, channel: HTTPChannel, queued: object = None) -> None:
        super().__init__(channel, queued)  # type: ignore[no-untyped-call]
        self.bodyConsumer: IBodyConsumer | None = None
        self.streaming = False
        self.bodyComplete = False
        self.clientGone = False
        self.bytesIn = 0
        self.headBytes = 0
        self.startTime = 0.0
        self.maxBodyBytes = 0
        # What the access log reports as %{BALANCER_WORKER_NAME}e and friends.
        self.logEnv: dict[str, str] = {}
        self._onClientGone: Callable[[], object] | None = None

    # -- called by the channel --

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        site = channel.site
        clock: IReactorTime = site.reactor
        self.startTime = clock.seconds()
        self.method, self.uri, self.clientproto = pendingRequestLine(channel)
        self.path = self.uri.split(b"?", 1)[0]
        self.maxBodyBytes = getattr(site, "maxBodyBytes", 0)
        problem = refusal(self, length)
        if problem is not None:
            status, message = problem
            self.respondError(status, message)
            return
        if length == 0:
            # No body: answered once the channel has finished with the head
            # (answering inside gotLength would confuse it), in requestReceived.
            self.content = io.BytesIO()
            return
        resource = self._traverse()
        if getattr(resource, "streaming", False):
            self.streaming = True
            self.content = None
            self.bodyConsumer = resource.startStream(self)
        else:
            super().gotLength(length)

    def _traverse(self) -> Any:
        site = self.site = self.channel.site
        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        return site.getResourceFor(self)

    def handleContentChunk(self, data: bytes) -> None:
        if self.finished and not self.streaming:
            return
        self.bytesIn += len(data)
        if self.maxBodyBytes and self.bytesIn > self.maxBodyBytes:
            self.bodyTooLarge()
            return
        if self.streaming:
            if self.bodyConsumer is not None:
                self.bodyConsumer.bodyData(data)
        elif self.content is not None:
            self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.bodyComplete = True
        if self.streaming:
            self.args = {}
            consumer, self.bodyConsumer = self.bodyConsumer, None
            if consumer is not None:
                consumer.bodyEnd()
            return
        if self.finished:
            return
        if self.content is not None and not self.content.tell():
            # A request without a body, for a streaming resource: straight to
            # it, past twisted.web's argument parsing and render().
            resource = self._traverse()
            if getattr(resource, "streaming", False):
                self.streaming = True
                self.args = {}
                consumer = resource.startStream(self)
                if consumer is not None:
                    consumer.bodyEnd()
                return
        super().requestReceived(command, path, version)

    def process(self) -> None:
        # As server.Request.process, without its Server and Date headers: a
        # proxy passes the backend's, and sets Server by server_tokens.
        self.site = self.channel.site
        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        try:
            resource = self.site.getResourceFor(self)
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def connectionLost(self, reason: Failure) -> None:
        self.clientGone = True
        super().connectionLost(reason)
        callback, self._onClientGone = self._onClientGone, None
        if callback is not None:
            callback()

    # -- used by the resources --

    def whenClientGone(self, callback: Callable[[], object] | None) -> None:
        """Call C{callback} (once) if the client disconnects before the end."""
        self._onClientGone = callback

    def bodyTooLarge(self) -> None:
        """The body passed C{max_body_bytes}: 413, or cut if answering."""
        consumer, self.bodyConsumer = self.bodyConsumer, None
        abort = getattr(consumer, "abort", None)
        if abort is not None:
            abort()
        if self.startedWriting:
            self.abortConnection()
        elif not self.finished:
            self.respondError(413, "request body too large")

    def respondError(
        self,
        status: int,
        message: str,
        headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    ) -> None:
        """Answer with a short plain-text error page (if still possible)."""
        if self.finished or self.clientGone:
            return
        if self.startedWriting:
            self.abortConnection()
            return
        body = (message + "\n").encode("utf-8", "replace")
        self.setResponseCode(status, _REASONS.get(status))
        rh = self.responseHeaders
        for name, value in errorHeaders(self.channel.site, len(body), headers):
            rh.addRawHeader(name, value)
        self.finishResponse(body)

    def finishResponse(self, body: bytes = b"") -> None:
        """
        Write the last of the response and end it; a request whose body has
        not fully arrived closes its connection, as the channel cannot resync.
        """
        if not self.bodyComplete:
            abandon(self.channel)
        if body:
            self.write(body)
        self.finish()

    def abortConnection(self) -> None:
        """Cut the client's connection, so it sees the response truncated."""
        if self.channel is not None and self.channel.transport is not None:
            abandon(self.channel)
            self.channel.transport.abortConnection()

    def clientAddress(self) -> str:
        """The peer's IP address (or the socket path), as logged and ACL-checked."""
        address: IAddress | None = self.getClientAddress()
        return str(getattr(address, "host", "") or "")


def abandon(channel: HTTPChannel | None) -> None:
    """Make C{channel} close after the current response, ignoring more input."""
    if channel is None:
        return
    channel.persistent = False
    if isinstance(channel, ProxyChannel):
        channel.abandoned = True


def errorHeaders(
    site: object,
    length: int,
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> list[tuple[bytes, bytes]]:
    """The headers of an error page the proxy itself writes."""
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % length),
        *extra,
    ]
    rewriter: ResponseHeaderRewriter | None = getattr(site, "responseRewriter", None)
    if rewriter is not None:
        headers = rewriter.rewrite(headers)
    return headers


def refusal(request: StreamingRequest, length: int | None) -> tuple[int, str] | None:
    """
    What the head alone rules out, before any backend is involved; None if
    nothing. Pure apart from reading the request's head.
    """
    if request.method == b"CONNECT":
        request.responseHeaders.setRawHeaders(b"allow", [_ALLOW])
        return 405, "CONNECT is not enabled on this listener"
    hosts = request.requestHeaders.getRawHeaders(b"host")
    if hosts is not None and len(hosts) > 1:
        return 400, "more than one Host header"
    if request.clientproto == b"HTTP/1.1" and not hosts:
        return 400, "missing Host header"
    uri = request.uri
    if not uri.startswith(b"/") and uri != b"*":
        lower = uri[:8].lower()
        if lower.startswith((b"http://", b"https://")):
            rest = uri.split(b"/", 3)
            authority = rest[2]
            if not _servesAuthority(request, authority):
                return 403, "this is not a forward proxy"
            # Absolute-form naming a host we serve: carry on in origin-form,
            # with the authority as the Host (RFC 9112 3.2.2).
            request.uri = b"/" + (rest[3] if len(rest) > 3 else b"")
            request.path = request.uri.split(b"?", 1)[0]
            request.requestHeaders.setRawHeaders(b"host", [authority])
        else:
            return 400, "malformed request target"
    if request.maxBodyBytes and length is not None and length > request.maxBodyBytes:
        return 413, "request body too large"
    return None


def _servesAuthority(request: StreamingRequest, authority: bytes) -> bool:
    """
    Whether an absolute-form target names this proxy: its server_name, a
    route's host, or the address the client connected to.
    """
    host = authority.rsplit(b"@", 1)[-1].lower()
    if host.startswith(b"["):
        host = host[1:].split(b"]", 1)[0]
    elif host.count(b":") == 1:
        host = host.split(b":", 1)[0]
    name = host.decode("latin-1")
    site = request.channel.site
    names: frozenset[str] = getattr(site, "hostNames", frozenset())
    if name in names:
        return True
    if any(name.endswith(n[1:]) for n in names if n.startswith("*.")):
        return True
    local = getattr(request.channel.getHost(), "host", None)
    return name == local


class ProxyChannel(BadRequestHook, HTTPChannel):
    """
    C{HTTPChannel} with a head-size limit (431), a head-time limit (408), and
    a way to drop the rest of a request that was answered early.
    """

    transport: Any  # an ITCPTransport (or TLS) once connected
    site: ProxySite

    maxHeaderBytes = 65536
    headerTimeout: float | None = 20.0
    abandoned = False
    # Per connection, worked out on first use: "http"/"https" and local port.
    scheme: str | None = None
    listenerPort: int | None = None

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._headBytes = 0
        self._inHead = True
        self._headerCall: IDelayedCall | None = None
        self._headerPartial = False
        self._corked: list[bytes] | None = None
        self._host: Any = None

    def connectionMade(self) -> None:
        self.totalHeadersSize = self.maxHeaderBytes + 1
        self.MAX_LENGTH = self.maxHeaderBytes
        super().connectionMade()  # type: ignore[no-untyped-call]
        self._armHeaderTimer()

    def dataReceived(self, data: bytes) -> None:
        if self.abandoned:
            return
        super().dataReceived(data)  # type: ignore[no-untyped-call]
        # A head that arrived whole needs no timer; one left half-read does.
        if self._inHead and self._headerCall is None and not self.abandoned:
            self._armHeaderTimer(partial=True)

    def lineReceived(self, line: bytes) -> None:
        if self.abandoned:
            return
        if self._inHead:
            self._headBytes += len(line) + 2
            if self._headBytes > self.maxHeaderBytes:
                self.refuse(431, "request head too large")
                return
        super().lineReceived(line)  # type: ignore[no-untyped-call]

    def lineLengthExceeded(self, line: bytes) -> None:
        first = self._headBytes == 0
        self.refuse(414 if first else 431, "request line or header too long")

    def allHeadersReceived(self) -> None:
        self._inHead = False
        request = self.requests[-1]
        request.headBytes = self._headBytes + 2
        self._headBytes = 0
        self._cancelHeaderTimer()
        version = pendingRequestLine(self)[2]
        self.persistent = self.checkPersistence(request, version)  # type: ignore[no-untyped-call]
        request.gotLength(self.length)
        if request.finished or self.abandoned:
            return
        expect = request.requestHeaders.getRawHeaders(b"expect")
        if expect and expect[0].lower() == b"100-continue" and version == b"HTTP/1.1":
            sendContinue(self)

    def allContentReceived(self) -> None:
        if self.abandoned or not self.requests:
            return
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def rawDataReceived(self, data: bytes) -> None:
        if self.abandoned:
            return
        super().rawDataReceived(data)

    def requestDone(self, request: Any) -> None:
        self._inHead = True
        super().requestDone(request)  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancelHeaderTimer()
        site = getattr(self, "site", None)
        if isinstance(site, ProxySite):
            site._channelGone(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

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
        if self._corked is not None:
            self._corked.append(data)
        else:
            sendNow(self.transport, data)

    def writeSequence(self, iovec: Any) -> None:
        if self._corked is not None:
            self._corked.extend(iovec)
        else:
            sendNow(self.transport, b"".join(iovec))

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        head = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head.extend((name, b": ", value, b"\r\n"))
        head.append(b"\r\n")
        self.writeSequence(head)

    def loseConnection(self) -> None:
        self.uncork()
        super().loseConnection()  # type: ignore[no-untyped-call]

    def getHost(self) -> Any:
        # Twisted asks on every request (a getsockname() system call).
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def badRequest(self) -> None:
        """A malformed request line, header or chunked body."""
        self.refuse(400, "malformed request")

    def refuse(self, status: int, message: str) -> None:
        """Answer C{status} outside any request and close the connection."""
        if self.abandoned:
            return
        self.abandoned = True
        self.persistent = False
        self._cancelHeaderTimer()
        body = (message + "\n").encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error"))]
        for name, value in errorHeaders(
            getattr(self, "site", None), len(body), [(b"Connection", b"close")]
        ):
            head.append(b"%s: %s\r\n" % (name, value))
        head.append(b"\r\n")
        self.writeSequence([*head, body])
        site = getattr(self, "site", None)
        if isinstance(site, ProxySite):
            if site.accessLog is not None:
                try:
                    line = b" ".join(pendingRequestLine(self))
                except AttributeError:
                    line = b""  # refused before the request line was complete
                site.accessLog.logRefusal(
                    str(getattr(self.transport.getPeer(), "host", "-")),
                    line,
                    status,
                    len(body),
                )
            site._log.info(
                "refused {peer}: {status} {message}",
                peer=str(self.transport.getPeer()),
                status=status,
                message=message,
            )
        self.loseConnection()

    def _armHeaderTimer(self, partial: bool = False) -> None:
        self._headerPartial = partial
        if self.headerTimeout:
            self._headerCall = self.callLater(self.headerTimeout, self._headerTimedOut)

    def _cancelHeaderTimer(self) -> None:
        if self._headerCall is not None:
            if self._headerCall.active():
                self._headerCall.cancel()
            self._headerCall = None

    def _headerTimedOut(self) -> None:
        self._headerCall = None
        if not self._headerPartial and self._headBytes == 0 and not self.requests:
            # Connected and never said a word: close without a response.
            if not self.abandoned:
                self.abandoned = True
                self.loseConnection()
            return
        self.refuse(408, "request head not received in time")


class ProxySite(server.Site):
    """
    The proxy's C{Site}: streaming requests, limits from C{[proxy]}, its own
    buffered access log, and a drain for graceful shutdown.
    """

    requestFactory = StreamingRequest  # type: ignore[assignment]
    displayTracebacks = False
    noisy = False
    _log = Logger()

    def __init__(
        self,
        resource: IResource,
        settings: ProxySettings,
        reactor: IReactorTime,
        accessLog: IAccessLog | None = None,
        hostNames: Sequence[str] = (),
    ) -> None:
        super().__init__(resource, timeout=settings.idle_timeout, reactor=reactor)
        self.settings = settings
        self.maxBodyBytes = settings.max_body_bytes
        self.responseRewriter = ResponseHeaderRewriter(settings, copyright.version)
        self.accessLog = accessLog
        # The names an absolute-form request may carry (we are no open proxy).
        self.hostNames = frozenset(
            n.lower() for n in (settings.server_name, "localhost", *hostNames)
        )
        self.channels: set[ProxyChannel] = set()
        self._drained: Deferred[None] | None = None

    def buildProtocol(self, addr: IAddress) -> ProxyChannel:  # type: ignore[override]
        channel = ProxyChannel()
        channel.factory = self
        channel.site = self
        channel.requestFactory = self.requestFactory  # type: ignore[assignment]
        channel.callLater = self.reactor.callLater  # type: ignore[method-assign, assignment, attr-defined]
        channel.timeOut = self.timeOut  # type: ignore[assignment]
        channel.maxHeaderBytes = self.settings.max_header_bytes
        channel.headerTimeout = self.settings.header_timeout
        self.channels.add(channel)
        return channel

    def startFactory(self) -> None:
        # Not twisted.web's access log (and its once-a-second timer): ours.
        pass

    def stopFactory(self) -> None:
        pass

    def log(self, request: server.Request) -> None:  # type: ignore[override]
        if self.accessLog is not None and isinstance(request, StreamingRequest):
            self.accessLog.logRequest(request)

    def _channelGone(self, channel: ProxyChannel) -> None:
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
            if channel.requests:
                channel.persistent = False
            else:
                channel.loseConnection()
        if not self.channels:
            return succeed(None)
        self._drained = Deferred()
        return self._drained

    def abortAll(self) -> None:
        """Cut every remaining connection (the grace period is over)."""
        for channel in list(self.channels):
            if channel.transport is not None:
                channel.transport.abortConnection()
