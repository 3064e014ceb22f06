"""
The heads and bodies an exchange relays. A request's head on its way to the
backend: its body's framing, and the head as this hop sends it. Its body:
held while the connection is being made, kept for a replay on another member
while it is small, and read from the client only as fast as the backend takes
it. A response's head on its way to the client: rewritten (ProxyPassReverse,
the listener's response headers) and, when due, gzipped.
"""

from __future__ import annotations

from typing import Any

from twisted_proxy.core.compress import (
    GzipStream,
    compressedHeaders,
    shouldCompress,
    varyHeaders,
)
from twisted_proxy.core.response import Headers
from twisted_proxy.frontends.clientinfo import clientScheme
from twisted_proxy.frontends.context import ProxyContext, RoutePlan
from twisted_proxy.frontends.pipe import ReadingProducer
from twisted_proxy.frontends.request import hostHeader
from twisted_proxy.upstream.interfaces import IBackendConnection

__all__ = [
    "PENDING_LIMIT",
    "REPLAY_LIMIT",
    "ClientReader",
    "Upload",
    "requestFraming",
    "requestHead",
    "responseHead",
]

REPLAY_LIMIT = 65536
"""A request body is kept for a retry on a fresh connection while it is small."""
PENDING_LIMIT = 262144
"""Body bytes held while the backend connection is being made, before the
client is paused."""


def requestFraming(
    raw: Headers, buffered: bytes | None
) -> tuple[bool, bool, int | None, bool]:
    """
    How a request's body is framed, from its header lines C{raw}: (sent
    chunked, already complete, its Content-Length, it has a body at all).
    C{buffered} is a body twisted.web has read (and de-chunked) already.
    """
    chunked = False
    length: int | None = None
    for name, value in raw:
        lower = name.lower()
        if lower == b"content-length":
            length = int(value)
        elif lower == b"transfer-encoding":
            chunked = True
    hasBody = chunked or bool(length) or bool(buffered)
    if buffered is not None:
        return False, True, length, hasBody
    return chunked, not chunked and not length, length, hasBody


def requestHead(
    method: bytes,
    path: bytes,
    headers: Headers,
    buffered: bytes | None,
    length: int | None,
    chunked: bool,
    expectContinue: bool,
) -> bytes:
    """
    The request head the backend gets: the rewritten C{headers}, with the
    body's framing and C{Expect} as this hop sends them.
    """
    # The rewriter took Expect out (this hop sets its own, below).
    if buffered is None:
        out = [b"%s: %s\r\n" % pair for pair in headers]
    else:
        # The length of the body as read, not as the client framed it.
        out = [
            b"%s: %s\r\n" % (name, value)
            for name, value in headers
            if name.lower() != b"content-length"
        ]
    if expectContinue:
        out.append(b"Expect: 100-continue\r\n")
    if buffered is not None:
        if buffered or length is not None:
            out.append(b"Content-Length: %d\r\n" % len(buffered))
    elif chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, path, b"".join(out))


class ClientReader(ReadingProducer):
    """
    The client's reading, as the producer of the backend connection's
    writing (the pipe's L{ReadingProducer}, one way): paused while the backend
    cannot take more body, and telling the backend connection (C{watcher})
    so, which times the backend only while it holds the upload up.
    """

    __slots__ = ("paused", "watcher")

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self.paused = False
        self.watcher: IBackendConnection | None = None

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            super().pauseProducing()
        if self.watcher is not None:
            self.watcher.uploadBlocked()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            super().resumeProducing()
        if self.watcher is not None:
            self.watcher.uploadFlowing()

    def stopProducing(self) -> None:
        # The backend connection is gone: whether the client reads on (for
        # the next member, or to the end of a refused body) is the
        # exchange's call, through Upload.stop.
        pass


class Upload:
    """
    One request's body: what is pending for the connection being made, what
    may be replayed, and the client's reading paired with the backend's
    writing once a connection takes it.
    """

    def __init__(self, request: Any, buffered: bytes | None) -> None:
        self._request = request
        self.pending: list[bytes] = []
        self._pendingBytes = 0
        self._replay: list[bytes] | None = []
        self._replayBytes = 0
        self._reader: ClientReader | None = None
        self._readerOn: Any = None
        if buffered:
            self.pending.append(buffered)
            self._replay = [buffered] if len(buffered) <= REPLAY_LIMIT else None

    @property
    def replayable(self) -> bool:
        """Whether the body so far is kept, so it can go to another member."""
        return self._replay is not None

    def take(self) -> list[bytes]:
        """The pieces held for the connection being made, handed over."""
        pending = self.pending
        self.pending = []
        self._pendingBytes = 0
        return pending

    def rewind(self) -> None:
        """Hold the body so far again, for the next member (L{replayable})."""
        assert self._replay is not None
        self.pending = list(self._replay)
        self._pendingBytes = sum(map(len, self.pending))

    def data(self, data: bytes, conn: IBackendConnection | None) -> None:
        """A piece of the body: to C{conn}, or held until a connection takes it."""
        replay = self._replay
        if replay is not None:
            self._replayBytes += len(data)
            if self._replayBytes > REPLAY_LIMIT:
                self._replay = None
            else:
                replay.append(data)
        if conn is not None:
            conn.writeBody(data)
            return
        self.pending.append(data)
        self._pendingBytes += len(data)
        if self._pendingBytes > PENDING_LIMIT:
            self._clientReader().pauseProducing()

    def _clientReader(self) -> ClientReader:
        if self._reader is None:
            self._reader = ClientReader(self._request.channel.transport)
        return self._reader

    def flowTo(self, conn: IBackendConnection) -> None:
        """Read from the client as fast as C{conn} takes the body."""
        reader = self._clientReader()
        reader.watcher = conn
        consumer = conn.uploadConsumer()
        consumer.registerProducer(reader, True)
        self._readerOn = consumer
        reader.resumeProducing()

    def stop(self) -> None:
        """No connection takes the body any more: the client reads freely."""
        if self._readerOn is not None:
            transport, self._readerOn = self._readerOn, None
            if getattr(transport, "producer", None) is self._reader:
                transport.unregisterProducer()
        if self._reader is not None:
            self._reader.watcher = None
            if not self._request.clientGone:
                self._reader.resumeProducing()


def responseHead(
    request: Any,
    plan: RoutePlan,
    context: ProxyContext,
    status: int,
    headers: Headers,
) -> tuple[Headers, GzipStream | None]:
    """
    The backend's response headers as the client is to get them, and the
    gzip stream its body goes through (None: as it comes).
    """
    if plan.reverseRewriter.active:
        frontHost = hostHeader(request)
        if frontHost is None:
            frontHost = context.settings.server_name.encode()
        headers = plan.reverseRewriter.rewriteResponseHeaders(
            headers, clientScheme(request), frontHost
        )
    rewriter = getattr(request.channel.site, "responseRewriter", None)
    if rewriter is not None:
        headers = rewriter.rewrite(headers, clientVersion=request.clientproto)
    gzip = None
    types = context.compressTypes
    if types:
        headers = varyHeaders(types, status, headers)
        accept = request.requestHeaders.getRawHeaders(b"accept-encoding")
        if shouldCompress(
            types, request.method, status, accept[0] if accept else None, headers
        ):
            headers = compressedHeaders(headers)
            if request.method != b"HEAD":
                gzip = GzipStream(context.settings.compress_level)
    return headers, gzip
