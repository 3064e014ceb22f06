"""
The requests of the HTTP/2 front end (L{twisted_proxy.frontends.http2}): one
per stream, streamed to the listener's resource as the proxy's own requests
are (routed once the head is in, body passed on as it arrives, the listener's
response headers, access log and limits).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.web import server

from twisted_proxy.core.logformat import END_PROXY_ERROR
from twisted_proxy.core.refusal import refuseHeaderCount
from twisted_proxy.frontends.listener import ListenerSite
from twisted_proxy.frontends.request import StreamingRequest, refusal

__all__ = ["H2Request", "StreamConnection"]


class StreamConnection(Protocol):
    """What an L{H2Request} asks of its HTTP/2 connection."""

    site: ListenerSite
    transport: Any

    def sendContinue(self, streamID: int) -> None: ...

    def resetStream(self, streamID: int) -> None: ...

    def queuedFor(self, streamID: int) -> int: ...

    def keepsAlive(self) -> bool: ...


# RFC 9113 8.2.2: connection-specific fields are not sent over HTTP/2; TE is a
# request header, never a response one.
_CONNECTION_SPECIFIC = (
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
)


class H2Request(StreamingRequest):
    """
    One request on an HTTP/2 stream. The stream is its channel and also its
    transport: pausing the transport stops the stream's DATA (and its window
    updates), aborting it resets this stream and no other.
    """

    # Twisted deletes the attribute once the response is done.
    channel: Any = None

    def __init__(self, stream: Any, connection: StreamConnection) -> None:
        # Twisted leaves H2Stream.transport None ("HTTP/2 doesn't want to
        # expose it"); the proxy pauses and cuts a request through it.
        stream.transport = stream
        server.Request.__init__(self, stream, False, parsePOSTFormSubmission=False)
        self._front: ListenerSite = connection.site
        self._connection = connection
        self._initProxied(0.0, self._front.maxBodyBytes)
        self._length: int | None = None
        self._uploadTimer: IDelayedCall | None = None

    # -- called by the stream, while its headers are added --

    def parseCookies(self) -> None:
        # Called once every header is in, just before Twisted's stream sends
        # 100 Continue for an Expect header on its own: the header is taken
        # away here; the request carries Expect on to the backend, whose 100
        # (or silence) asks the client for its body (sendContinue).
        headers = self.requestHeaders
        expect = headers.getRawHeaders(b"expect")
        if expect is not None:
            headers.removeHeader(b"expect")
            self.expectContinue = expect[0].lower() == b"100-continue"
        server.Request.parseCookies(self)

    def gotLength(self, length: int | None) -> None:
        # Called at content-length, before the headers after it are in (or at
        # the end without one): noted, and the request is routed in
        # headReceived once every header is in.
        self._length = length

    # -- called by the connection --

    def headReceived(self, endStream: bool) -> None:
        """
        Every header is in and the stream is registered: route the request
        (it may be answered at once). C{endStream}: the HEADERS frame ended
        the stream, so there is no body.
        """
        stream = self.channel
        site = self._front
        self.startTime = site.reactor.seconds()
        self.method = stream.command
        self.uri = stream.path or b""  # CONNECT has no :path
        self.clientproto = b"HTTP/2"
        self.path = self.uri.split(b"?", 1)[0]
        self.requestLine = b"%s %s HTTP/2" % (self.method, self.uri)
        headers = self.requestHeaders
        hosts = headers.getRawHeaders(b"host")
        if (
            hosts is not None
            and len(hosts) == 2
            and hosts[0].lower() == hosts[1].lower()
        ):
            # :authority and a Host header that agree (RFC 9113 8.3.1).
            headers.setRawHeaders(b"host", hosts[:1])
        length = self._length
        if endStream:
            length = 0 if length is None else length
        elif length is None:
            # A body of unknown length: HTTP/1.1 backends get it chunked.
            headers.setRawHeaders(b"transfer-encoding", [b"chunked"])
        if site.clientCertHeader is not None:
            site.prepareRequest(self, self._connection.transport)
        settings = site.settings
        fields = sum(len(values) for _, values in headers.getAllRawHeaders())
        refused = refuseHeaderCount(fields, settings.max_headers)
        if refused is not None:
            self.respondError(refused.status, refused.message)
            return
        problem = refusal(self, length, settings.merge_slashes)
        if problem is not None:
            self.respondError(*problem)
            return
        if self.target is None:
            # OPTIONS *: the proxy answers for itself.
            self.respondOptions()
            return
        if not endStream:
            self._uploadTimer = site.reactor.callLater(
                settings.idle_timeout, self._uploadStalled
            )
        if endStream:
            self.expectContinue = False
        self.bodyConsumer = site.resource.startStream(self)

    def sendContinue(self) -> None:
        stream = self.channel
        if (
            self.expectContinue
            and stream is not None
            and not self.startedWriting
            and not self.finished
        ):
            self.expectContinue = False
            self._connection.sendContinue(stream.streamID)

    # -- the body --

    def handleContentChunk(self, data: bytes) -> None:
        timer = self._uploadTimer
        if timer is not None:
            timer.reset(self._front.settings.idle_timeout)
        StreamingRequest.handleContentChunk(self, data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._cancelUploadTimer()
        StreamingRequest.requestReceived(self, command, path, version)

    def _uploadStalled(self) -> None:
        self._uploadTimer = None
        if not self.bodyComplete and not self.finished:
            self.refuseBody(408, "request body not received in time")

    def _cancelUploadTimer(self) -> None:
        timer, self._uploadTimer = self._uploadTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    # -- the response --

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            headers = self.responseHeaders
            for name in _CONNECTION_SPECIFIC:
                headers.removeHeader(name)
        server.Request.write(self, data)

    def finish(self) -> None:
        self._cancelUploadTimer()
        server.Request.finish(self)

    def abortConnection(self, reason: str = END_PROXY_ERROR) -> None:
        """Reset this stream, so the client sees its response cut short."""
        self._cancelUploadTimer()
        stream = self.channel
        if stream is not None and not self.clientGone:
            self.cutShort(reason)
            self._connection.resetStream(stream.streamID)

    def connectionLost(self, reason: Failure) -> None:
        self._cancelUploadTimer()
        StreamingRequest.connectionLost(self, reason)

    def queuedBytes(self) -> int:
        stream = self.channel
        return 0 if stream is None else self._connection.queuedFor(stream.streamID)

    def keepsConnection(self) -> bool:
        return self._connection.keepsAlive()

    def _logUnfinished(self) -> None:
        self._front.log(self)
