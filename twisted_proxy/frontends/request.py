"""
Requests that stream, and the decisions every proxied request shares.

twisted.web reads a whole request body before C{render()} runs. A proxied
request starts its upstream exchange as soon as its head is in and feeds the
body on as it arrives, so memory stays flat whatever the body's size.
L{ProxiedRequest} holds what both kinds of proxied request do: the proxy's own
front end (L{twisted_proxy.frontends.http1}) and L{StreamingRequest}, the request
factory that makes an ordinary twisted.web C{Site} stream to a mounted
L{ReverseProxyResource}.
L{refusal} applies what the head alone rules out (the pure
L{twisted_proxy.core.refusal.judgeHead}: CONNECT, a forward-proxy request, an
ambiguous or malformed Host, a target that cannot be normalised, a body over
the limit); it also puts the request's target in normal form, once, before
anything routes, checks or logs it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from typing import Protocol as TypingProtocol
from urllib.parse import unquote_to_bytes

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import RESPONSES, HTTPChannel, datetimeToString
from zope.interface import Attribute, Interface

from twisted_proxy._twisted_internals import pendingRequestLine, pendingWriteBytes
from twisted_proxy.core.headers import ResponseHeaderRewriter
from twisted_proxy.core.logformat import (
    END_CLIENT_CLOSED,
    END_PROXY_ERROR,
    END_UPLOAD_REFUSED,
)
from twisted_proxy.core.refusal import ALLOWED_METHODS, judgeHead, namesThisProxy
from twisted_proxy.core.requesttarget import RequestTarget, normalizeTarget

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
    505: b"HTTP Version Not Supported",
}


def reasonPhrase(status: int) -> bytes:
    """The reason phrase for C{status}: RFC 9110's, else twisted.web's."""
    return _REASONS.get(status) or RESPONSES.get(status, b"Unknown Status")


class IBodyConsumer(TypingProtocol):
    """Where a streaming request hands its body."""

    def bodyData(self, data: bytes) -> None:
        """A piece of the request body arrived."""

    def bodyEnd(self) -> None:
        """The request body is complete."""


class IStreamingResource(Interface):
    """A resource that takes a request as soon as its head is in."""

    streaming = Attribute("True: render the request before its body arrives.")

    def startStream(request: ProxiedRequest) -> IBodyConsumer | None:  # type: ignore[misc]
        """
        Begin answering C{request}, whose body has not arrived yet; return who
        takes the body, or None when the request was already answered.
        """


class IAccessLog(TypingProtocol):
    """Writes one access-log line per finished request."""

    def logRequest(self, request: Any) -> None:
        """Log C{request}, a finished L{ProxiedRequest}."""

    def logRefusal(
        self, remoteHost: str, requestLine: bytes, status: int, sent: int
    ) -> None:
        """Log a request refused before it became one."""


class ProxiedRequest:
    """
    What every proxied request does beyond twisted.web's C{IRequest}: hand
    its body on as it arrives, tell when the client goes, answer errors, and
    keep what the access log reports.
    """

    channel: Any
    method: bytes
    uri: bytes
    path: bytes
    clientproto: bytes
    requestHeaders: Any
    responseHeaders: Any
    code: int
    sentLength: int
    startedWriting: Any
    finished: Any
    hostValue: bytes | None
    """The Host (first value) once L{refusal} settled it (see L{hostHeader})."""

    def _initProxied(self, startTime: float, maxBodyBytes: int) -> None:
        # The normalised target (set by refusal()), and the path routes and
        # access lists match: the path without its path parameters.
        self.target: RequestTarget | None = None
        self.matchPath = b"/"
        # The request line as received, for the access log's %r (None: made
        # up from method, uri and clientproto).
        self.requestLine: bytes | None = None
        # The client sent Expect: 100-continue and waits for a 100 before its
        # body (the front ends that leave answering it to the proxy set it).
        self.expectContinue = False
        self.bodyConsumer: IBodyConsumer | None = None
        self.streaming = True
        self.bodyComplete = False
        self.clientGone = False
        self.bytesIn = 0
        self.headBytes = 0
        self.startTime = startTime
        self.maxBodyBytes = maxBodyBytes
        # What the access log reports as %{BALANCER_WORKER_NAME}e and friends.
        self.logEnv: dict[str, str] = {}
        # Why the response ended before finish() (an END_* reason), and how
        # many of the bytes written for it had not left when it was cut.
        self.endReason: str | None = None
        self.unsentBytes = 0
        self._onClientGone: Callable[[], object] | None = None

    # Provided by the concrete classes (twisted.web's Request, or ProxyRequest):
    # setResponseCode, write, finish, getClientAddress.
    setResponseCode: Callable[..., None]
    write: Callable[[bytes], None]
    finish: Callable[[], None]
    getClientAddress: Callable[[], IAddress]

    def handleContentChunk(self, data: bytes) -> None:
        """A piece of the body arrived: count it, check the limit, pass it on."""
        if self.finished:
            return
        self.bytesIn += len(data)
        if self.maxBodyBytes and self.bytesIn > self.maxBodyBytes:
            self.bodyTooLarge()
            return
        consumer = self.bodyConsumer
        if consumer is not None:
            consumer.bodyData(data)

    def whenClientGone(self, callback: Callable[[], object] | None) -> None:
        """Call C{callback} (once) if the client disconnects before the end."""
        self._onClientGone = callback

    def _lostClient(self) -> None:
        self.clientGone = True
        if not self.finished:
            if self.endReason is None:
                self.endReason = END_CLIENT_CLOSED
            self._logUnfinished()
        callback, self._onClientGone = self._onClientGone, None
        if callback is not None:
            callback()

    def cutShort(self, reason: str) -> None:
        """
        The proxy is about to cut this response short (or drop the request
        unanswered) for C{reason}, an C{END_*} name: its access-log line says
        so, and counts only the bytes that had left for the client.
        """
        if self.finished or self.endReason is not None:
            return
        self.endReason = reason
        self.unsentBytes = self.queuedBytes()

    def queuedBytes(self) -> int:
        """Bytes written for the client that it has not taken yet."""
        transport = getattr(self.channel, "transport", None)
        if transport is None:
            return 0
        return pendingWriteBytes(transport) or 0

    def connectionStatus(self) -> str:
        """Apache's ``%X``: ``X`` cut short, ``+`` kept alive, ``-`` closed after."""
        if self.endReason is not None:
            return "X"
        return "+" if self.keepsConnection() else "-"

    def keepsConnection(self) -> bool:
        """Whether the client's connection stays open after this response."""
        return bool(getattr(self.channel, "persistent", False))

    def _logUnfinished(self) -> None:
        """
        Write the access-log line of a response that ended without finish(),
        where the front end keeps the proxy's access log (twisted.web's own
        C{Site} logs finished requests only).
        """

    def bodyTooLarge(self) -> None:
        """The body passed C{max_body_bytes}: 413, or cut if answering."""
        self.refuseBody(413, "request body too large")

    def refuseBody(self, status: int, message: str) -> None:
        """
        The rest of the body cannot be taken (too large, malformed, stalled):
        drop the backend exchange, and answer C{status} if nothing of the
        response is out yet, else cut the connection.
        """
        # Nothing more of this body is to be read: the connection ends with it.
        abandon(self.channel)
        consumer, self.bodyConsumer = self.bodyConsumer, None
        abort = getattr(consumer, "abort", None)
        if abort is not None:
            abort()
        if self.startedWriting:
            self.abortConnection(END_UPLOAD_REFUSED)
        elif not self.finished:
            self.respondError(status, message)

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
            self.abortConnection(END_PROXY_ERROR)
            return
        body = (message + "\n").encode("utf-8", "replace")
        self.setResponseCode(status, reasonPhrase(status))
        rh = self.responseHeaders
        for name, value in errorHeaders(self.channel.site, len(body), headers):
            rh.addRawHeader(name, value)
        self.finishResponse(body)

    def sendContinue(self) -> None:
        """
        Tell a client waiting with Expect: 100-continue to send its body
        (the backend said 100, or nothing for continue_timeout). A front end
        that answers Expect itself (twisted.web's) has nothing to do here.
        """

    def respondOptions(self) -> None:
        """Answer C{OPTIONS *}: what the proxy as a whole allows."""
        self.setResponseCode(200, b"OK")
        rh = self.responseHeaders
        for name, value in errorHeaders(
            self.channel.site, 0, [(b"Allow", ALLOWED_METHODS)]
        ):
            if name != b"Content-Type":
                rh.addRawHeader(name, value)
        self.finishResponse()

    def finishResponse(self, body: bytes = b"") -> None:
        """
        Write the last of the response and end it. A request whose body has
        not fully arrived closes its connection, unless the channel can read
        and drop the rest of it (as the proxy's own front end does).
        """
        if not self.bodyComplete and not getattr(self.channel, "discardsBody", False):
            abandon(self.channel)
        if body:
            self.write(body)
        self.finish()

    def abortConnection(self, reason: str = END_PROXY_ERROR) -> None:
        """
        Cut the client's connection, so it sees the response truncated;
        C{reason} (an C{END_*} name) is why, for the access log.
        """
        channel = self.channel
        if channel is not None and channel.transport is not None:
            self.cutShort(reason)
            abandon(channel)
            channel.transport.abortConnection()

    def clientAddress(self) -> str:
        """The peer's IP address (or the socket path), as logged and ACL-checked."""
        address: IAddress | None = self.getClientAddress()
        return str(getattr(address, "host", "") or "")


class StreamingRequest(ProxiedRequest, server.Request):  # type: ignore[misc]
    """
    A twisted.web request that hands its body on as it arrives: use it as the
    request factory of your own C{Site}, and a L{ReverseProxyResource} mounted
    there streams both ways.
    """

    defaultContentType = None
    _log = Logger()

    def __init__(self, channel: HTTPChannel, queued: object = None) -> None:
        server.Request.__init__(self, channel, queued)
        self._initProxied(0.0, 0)
        self.streaming = False

    # -- called by the channel --

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        site = channel.site
        clock: IReactorTime = site.reactor
        self.startTime = clock.seconds()
        self.method, self.uri, self.clientproto = pendingRequestLine(channel)
        self.path = self.uri.split(b"?", 1)[0]
        self.maxBodyBytes = getattr(site, "maxBodyBytes", 0)
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
            server.Request.gotLength(self, length)

    def _traverse(self) -> Any:
        site = self.site = self.channel.site
        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        return site.getResourceFor(self)

    def handleContentChunk(self, data: bytes) -> None:
        if self.streaming:
            ProxiedRequest.handleContentChunk(self, data)
        elif self.content is not None and not self.finished:
            self.bytesIn += len(data)
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
        server.Request.requestReceived(self, command, path, version)

    def process(self) -> None:
        # As server.Request.process, without its Server and Date headers: a
        # proxy passes the backend's, and sets Server by server_tokens.
        try:
            resource = self._traverse()
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def connectionLost(self, reason: Failure) -> None:
        server.Request.connectionLost(self, reason)
        self._lostClient()


def abandon(channel: Any) -> None:
    """Make C{channel} close after the current response, ignoring more input."""
    if channel is None:
        return
    channel.persistent = False
    if hasattr(channel, "abandoned"):
        channel.abandoned = True


_OWN_HOP_HEADERS = frozenset({b"connection", b"proxy-authenticate"})


def errorHeaders(
    site: object,
    length: int,
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> list[tuple[bytes, bytes]]:
    """The headers of an error page the proxy itself writes."""
    headers = [
        # RFC 9110 6.6.1: a server with a clock sends Date.
        (b"Date", datetimeToString()),
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % length),
    ]
    # Connection and Proxy-Authenticate are the proxy's own words on this
    # hop: the rewriter, which drops a backend's hop-by-hop headers, must
    # not drop them.
    hop = [h for h in extra if h[0].lower() in _OWN_HOP_HEADERS]
    headers.extend(h for h in extra if h[0].lower() not in _OWN_HOP_HEADERS)
    rewriter: ResponseHeaderRewriter | None = getattr(site, "responseRewriter", None)
    if rewriter is not None:
        headers = rewriter.rewrite(headers)
    return headers + hop


def refusal(
    request: ProxiedRequest, length: int | None, mergeSlashes: bool = True
) -> tuple[int, str] | None:
    """
    What the head alone rules out (L{judgeHead}), before any backend is
    involved; None if nothing. A request that passes has its target
    normalised: C{uri}, C{path}, C{target} and C{matchPath} are set from it
    (an absolute-form target naming this proxy becomes origin-form, its
    authority the Host). C{OPTIONS *} passes with C{uri} C{b"*"} and no
    C{target}: the front end answers it (L{ProxiedRequest.respondOptions}).
    """
    hosts = request.requestHeaders.getRawHeaders(b"host")
    ruling = judgeHead(
        request.method,
        request.clientproto,
        request.uri,
        hosts,
        length,
        request.maxBodyBytes,
        lambda authority: _servesAuthority(request, authority),
        mergeSlashes,
    )
    if ruling.host is not None:
        request.requestHeaders.setRawHeaders(b"host", [ruling.host])
        request.hostValue = ruling.host
    else:
        request.hostValue = hosts[0] if hosts else None
    target = ruling.target
    if target is not None:
        request.target = target
        request.uri = target.uri
        request.path = target.path
        request.matchPath = target.match
    refused = ruling.refusal
    if refused is None:
        return None
    for name, value in refused.headers:
        request.responseHeaders.setRawHeaders(name, [value])
    site = getattr(request.channel, "site", None)
    if request.method == b"CONNECT" and getattr(site, "connectGate", None):
        # Only HTTP/2 gets here on a listener that tunnels (HTTP/1.1 does
        # before): RFC 9113 8.5 CONNECT is not served.
        return refused.status, "CONNECT tunnels are opened over HTTP/1.1 only"
    return refused.status, refused.message


_UNSEEN = object()


def hostHeader(request: Any) -> bytes | None:
    """
    The request's Host (its first value; None without one): the one
    L{refusal} settled, or, for a request of an ordinary twisted.web
    C{Site}, read from its headers now.
    """
    host = getattr(request, "hostValue", _UNSEEN)
    if host is _UNSEEN:
        hosts = request.requestHeaders.getRawHeaders(b"host")
        return hosts[0] if hosts else None
    return host  # type: ignore[return-value]


def targetOf(request: Any, mergeSlashes: bool = True) -> RequestTarget:
    """
    The request's normalised target: the one L{refusal} made, or (for a
    request of an ordinary twisted.web C{Site}, which never met L{refusal})
    made now from its C{uri} and kept on it.

    :raise TargetError: when C{uri} cannot be normalised.
    """
    target: RequestTarget | None = getattr(request, "target", None)
    if target is None:
        target = normalizeTarget(request.uri, mergeSlashes)
        request.target = target
    return target


def _servesAuthority(request: ProxiedRequest, authority: bytes) -> bool:
    """Whether an absolute-form target names this proxy (L{namesThisProxy})."""
    channel = request.channel
    names: frozenset[str] = getattr(channel.site, "hostNames", frozenset())
    return namesThisProxy(
        authority, names, lambda: getattr(channel.getHost(), "host", None)
    )
