"""
The lean HTTP/1.1 client connection to a backend (its keep-alive pool is
L{twisted_proxy.upstream.pool}'s).

Not C{Agent}, not treq (Agent drops 1xx and 101 responses and costs several
times the CPU per request; treq shares a cookie jar between clients, decodes
gzip and follows redirects): one request at a time per connection,
a response parsed by L{ResponseParser} and handed to a sink as it arrives, the
connection itself offered as the push producer that a slow client pauses.
An https backend's connection is handed out only once its TLS handshake is
done (see L{twisted_proxy.tls.backend}), so a refused certificate is a
failure to connect, never a request lost on the way.
"""

from __future__ import annotations

from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy._twisted_internals import idleTCP, pendingWriteBytes, sendNow
from twisted_proxy.core.response import Headers, ResponseParseError, ResponseParser
from twisted_proxy.core.timer import PurposeTimer
from twisted_proxy.tls.backend import (
    BackendTLSError,
    HandshakeTimeoutError,
    failureReason,
)
from twisted_proxy.upstream import splice
from twisted_proxy.upstream.interfaces import (
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
    IResponseSink,
)

__all__ = ["IConnectionPool", "UpstreamConnection"]


_RESPONSE = "response"
_UPLOAD = "upload"
_IDLE = "idle"
_HANDSHAKE = "handshake"


class IConnectionPool(TypingProtocol):
    """What a connection needs of the pool that made it."""

    clock: IReactorTime
    connectTimeout: float

    def release(self, conn: UpstreamConnection) -> None:
        """C{conn} finished a response and may carry another: keep it idle."""

    def expire(self, conn: UpstreamConnection) -> None:
        """C{conn} was idle for too long: close it."""

    def discard(self, conn: UpstreamConnection) -> None:
        """C{conn} is never to be lent again."""


@implementer(IPushProducer, IHandshakeListener)
class UpstreamConnection(Protocol):
    """One keep-alive HTTP/1.1 connection to a backend."""

    transport: Any  # an ITCPTransport (or TLS) once connected

    _log = Logger()

    def __init__(
        self,
        pool: IConnectionPool,
        address: Address,
        connectTimeout: float | None = None,
    ) -> None:
        self._pool = pool
        self.address = address
        # The TLS handshake's too (None: the pool's).
        self._connectTimeout = (
            pool.connectTimeout if connectTimeout is None else connectTimeout
        )
        self._parser = ResponseParser(
            self._onHead, self._onData, self._onEnd, self._onInterim
        )
        self._sink: IResponseSink | None = None
        self._timeout = 0.0
        # One timer per connection, reset rather than re-created: the response
        # timeout while busy, the idle time-to-live while pooled.
        self._timer = PurposeTimer(pool.clock.callLater, self._timerFired)
        self._chunked = False
        self._bodyDone = True
        self._paused = False
        self._lost = False
        self._whenLost: list[Deferred[None]] = []
        self.requestsSent = 0
        # When it connected, and when the last response on it ended (the
        # pool's clock).
        self.connectedAt = 0.0
        self.lastUsed = 0.0
        # While an upload is held up: what the backend had not taken yet.
        self._stuckAt: int | None = None
        # TLS: set while the handshake is under way, then the outcome.
        self.handshaking = False
        self._ready: Deferred[UpstreamConnection] | None = None
        self._handshakeFailure: Failure | None = None
        # While a long body goes from socket to socket in the kernel.
        self._splice: splice.BodySplice | None = None
        self._spliceFlow: IPushProducer | None = None

    # -- Protocol --

    def connectionMade(self) -> None:
        self.connectedAt = self._pool.clock.seconds()
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
        if self.address.overTLS:
            # The connect timeout covers the handshake too, as nginx's does.
            self.handshaking = True
            self._timer.arm(self._connectTimeout, _HANDSHAKE)

    def handshakeCompleted(self) -> None:
        """The TLS handshake is done and the certificate accepted."""
        if not self.handshaking:
            return
        self.handshaking = False
        self._timer.cancel()
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.callback(self)

    def whenReady(self) -> Deferred[UpstreamConnection]:
        """
        Fires with this connection once it can carry a request: at once for
        plain TCP, after the handshake for TLS. A failed handshake fails it
        with L{BackendTLSError}; cancelling it drops the connection.
        """
        if self._handshakeFailure is not None:
            return fail(self._handshakeFailure)
        if not self.handshaking:
            return succeed(self)
        self._ready = Deferred(self._cancelHandshake)
        return self._ready

    def _cancelHandshake(self, ready: Deferred[UpstreamConnection]) -> None:
        self._ready = None
        self.handshaking = False
        self.abort()

    def _handshakeFailed(self, failure: Failure) -> None:
        self.handshaking = False
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.errback(failure)
        else:
            self._handshakeFailure = failure

    def dataReceived(self, data: bytes) -> None:
        if self._sink is None:
            # Bytes from an idle backend: it is confused; do not reuse it.
            self._pool.discard(self)
            self.transport.loseConnection()
            return
        if not self._paused:
            # Bytes moved: the backend is not stuck.
            self._stuckAt = None
            self._timer.arm(self._timeout, _RESPONSE)
        sink = self._sink
        sink.batchStarted()
        try:
            self._parser.feed(data)
        except ResponseParseError as e:
            # Bytes that start no response, on a reused connection: most
            # likely left over from the response before (a confused backend),
            # so the request may not have been read at all.
            retryable = self.requestsSent > 1 and not self._parser.bodyStarted
            self._fail(FAIL_PROTOCOL, f"bad response from backend: {e}", retryable)
            self.transport.abortConnection()
        finally:
            sink.batchEnded()
        if self._sink is sink and self._parser.lengthLeft >= splice.SPLICE_MIN:
            self._trySplice(sink)

    # -- a long body, spliced (see twisted_proxy.upstream.splice) --

    def _trySplice(self, sink: IResponseSink) -> None:
        if (
            not splice.available
            or self._paused
            or not self._bodyDone
            or self.address.overTLS
            or not idleTCP(self.transport)
        ):
            return
        target = sink.spliceTarget()
        if target is None:
            return
        client, flow, resumeClientReading = target
        moving = splice.BodySplice(
            self.transport, client, self._parser.lengthLeft, self, resumeClientReading
        )
        if moving.start():
            self._splice = moving
            self._spliceFlow = flow

    def _spliceEnded(self) -> int:
        """The splice is over: the body bytes it read from the backend."""
        moving, self._splice = self._splice, None
        self._spliceFlow = None
        if moving is None:
            return 0
        return self._parser.lengthLeft - moving.remaining

    def splicedIn(self, count: int) -> None:
        self._stuckAt = None
        if not self._paused:
            self._timer.arm(self._timeout, _RESPONSE)

    def splicedOut(self, count: int) -> None:
        if self._sink is not None:
            self._sink.responseMoved(count)

    def spliceClientFull(self) -> None:
        if self._spliceFlow is not None:
            self._spliceFlow.pauseProducing()

    def spliceClientRoom(self) -> None:
        if self._spliceFlow is not None:
            self._spliceFlow.resumeProducing()

    def spliceFinished(self) -> None:
        self._parser.moved(self._spliceEnded())

    def spliceBackendEnded(self) -> None:
        # Counted, then the transport's next read finds the close or the error.
        self._parser.moved(self._spliceEnded())

    def spliceRefused(self, held: bytes) -> None:
        # Counted up to what was held back, which then goes as any read does.
        self._parser.moved(self._spliceEnded() - len(held))
        if held:
            self.dataReceived(held)

    def spliceClientGone(self, reason: str) -> None:
        # The client's transport was aborted: its channel's loss ends the
        # exchange (and drops this connection, the body unfinished).
        self._spliceEnded()

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self._lost = True
        self._cancelSplice()
        self._timer.close()
        self._pool.discard(self)
        if self.handshaking:
            # A refused certificate arrives here, with why (failVerification).
            error = reason.value if reason is not None else None
            why = failureReason(error or ConnectionDone(), self.address.host)
            self._handshakeFailed(Failure(BackendTLSError(why)))
        if self._sink is not None and not self._parser.noMoreData():
            # Nothing of the response on a reused connection: the backend had
            # closed it while idle, so the request never reached it.
            retryable = self.requestsSent > 1 and self._parser.bytesReceived == 0
            detail = reason.getErrorMessage() if reason is not None else "closed"
            self._fail(
                FAIL_RESET, f"backend closed the connection ({detail})", retryable
            )
        for d in self._whenLost:
            d.callback(None)
        self._whenLost = []

    # -- used by the exchange --

    def sendRequest(
        self,
        head: bytes,
        method: bytes,
        sink: IResponseSink,
        timeout: float,
        chunked: bool,
        bodyDone: bool,
        body: list[bytes] | None = None,
    ) -> None:
        """
        Send a request head with the start of its body (C{body}, already in
        hand); the rest follows by L{writeBody}.

        C{timeout} is per I/O, not per exchange: the backend fails it only by
        moving no byte for that long, while it should be taking the body
        (L{uploadBlocked}) or answering (once the body is all sent, or its
        answer has begun). While the body waits on the client, the client's
        own timeouts apply instead.
        """
        self._sink = sink
        self._chunked = chunked
        self._bodyDone = bodyDone
        self._timeout = timeout
        self.requestsSent += 1
        self._parser.expect(method)
        if bodyDone:
            self._timer.arm(timeout, _RESPONSE)
        else:
            self._timer.cancel()
        if body:
            pieces = [head]
            for data in body:
                pieces.extend(self._frame(data))
            head = b"".join(pieces)
        sendNow(self.transport, head)

    def writeBody(self, data: bytes) -> None:
        """Send a piece of the request body."""
        if data:
            sendNow(self.transport, b"".join(self._frame(data)))

    def _frame(self, data: bytes) -> tuple[bytes, ...]:
        if self._chunked:
            return (b"%x\r\n" % len(data), data, b"\r\n")
        return (data,)

    def finishBody(self) -> None:
        """The request body is complete: the backend's answer is awaited."""
        if self._chunked:
            self.transport.write(b"0\r\n\r\n")
        self._bodyDone = True
        if (
            self._sink is not None
            and not self._paused
            and self._timer.purpose != _RESPONSE
        ):
            # The backend may still be reading the last of the body from
            # the socket: while it does, it is not silent (see _timerFired).
            self._stuckAt = pendingWriteBytes(self.transport)
            self._timer.arm(self._timeout, _RESPONSE)

    def uploadBlocked(self) -> None:
        """
        The backend is not taking the body as fast as the client sends it
        (our send buffer to it is full): its clock runs until it takes some.
        """
        if self._sink is None or self._bodyDone or self._timer.purpose == _RESPONSE:
            return
        self._stuckAt = pendingWriteBytes(self.transport)
        self._timer.arm(self._timeout, _UPLOAD)

    def uploadFlowing(self) -> None:
        """The backend took what was buffered: the body waits on the client."""
        if self._timer.purpose == _UPLOAD:
            self._timer.cancel()

    def uploadConsumer(self) -> Any:
        """The client's reading is paused while our socket to the backend is full."""
        return self.transport

    def abort(self) -> None:
        """Give up on this exchange: the connection is dropped, never reused."""
        self._cancelSplice()
        self._sink = None
        self._timer.cancel()
        self._pool.discard(self)
        if not self._lost:
            self.transport.abortConnection()

    def _cancelSplice(self) -> None:
        if self._splice is not None:
            self._splice.cancel()
            self._spliceEnded()

    @property
    def lost(self) -> bool:
        """Whether the connection is closed."""
        return self._lost

    def idleFor(self, seconds: float) -> None:
        """The connection waits in the pool: it is closed after C{seconds}."""
        self._timer.arm(seconds, _IDLE)

    def unpooled(self) -> None:
        """The pool let go of the connection: an idle one's timer stops."""
        if self._sink is None:
            self._timer.cancel()

    def whenLost(self) -> Deferred[None]:
        """A Deferred that fires once the connection is closed."""
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._whenLost.append(d)
        return d

    # -- IPushProducer: the client's transport pauses us when it is full --

    def pauseProducing(self) -> None:
        if not self._paused and not self._lost:
            self._paused = True
            if self._splice is None:
                self.transport.pauseProducing()
            # A slow client is not a slow backend: stop the response clock.
            self._timer.cancel()

    def resumeProducing(self) -> None:
        if self._paused and not self._lost:
            self._paused = False
            if self._splice is None:
                self.transport.resumeProducing()
            if self._sink is not None:
                self._timer.arm(self._timeout, _RESPONSE)

    def stopProducing(self) -> None:
        self.abort()

    # -- parser callbacks --

    def _onInterim(self, status: int) -> None:
        if self._sink is not None:
            self._sink.interimResponse(status)

    def _onHead(self, status: int, reason: bytes, headers: Headers) -> None:
        if self._sink is not None:
            self._sink.responseStarted(status, reason, headers)

    def _onData(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.responseData(data)

    def _onEnd(self) -> None:
        sink, self._sink = self._sink, None
        # Not cancelled: when pooled, the same timer is re-aimed at the idle TTL.
        self._timer.forget()
        reusable = self._parser.keepAlive and self._bodyDone and not self._lost
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        if sink is not None:
            sink.responseFinished()
        if reusable:
            self.lastUsed = self._pool.clock.seconds()
            self._pool.release(self)
        else:
            self._timer.cancel()
            if not self._lost:
                self._pool.discard(self)
                self.transport.loseConnection()

    def _timerFired(self, purpose: str | None) -> None:
        if purpose == _RESPONSE:
            if self._stillTaking():
                self._timer.arm(self._timeout, _RESPONSE)
                return
            self._timedOut()
        elif purpose == _UPLOAD:
            pending = pendingWriteBytes(self.transport)
            stuckAt, self._stuckAt = self._stuckAt, pending
            if pending is not None and stuckAt is not None and pending < stuckAt:
                # Slow, not stuck: some of the body was taken meanwhile.
                self._timer.arm(self._timeout, _UPLOAD)
                return
            self._fail(
                FAIL_TIMEOUT,
                f"backend took none of the request body for {self._timeout:g}s",
                False,
            )
            self.abort()
        elif purpose == _IDLE:
            self._pool.expire(self)
        elif purpose == _HANDSHAKE:
            seconds = self._connectTimeout
            self._handshakeFailed(
                Failure(HandshakeTimeoutError(f"no handshake within {seconds:g}s"))
            )
            self.abort()

    def _stillTaking(self) -> bool:
        """
        Whether the backend took some of the body sent before its timer ran
        out (it is reading the last of it from the socket, not silent).
        """
        if self._stuckAt is None:
            return False
        pending = pendingWriteBytes(self.transport)
        moved = pending is not None and pending < self._stuckAt
        self._stuckAt = pending if moved and pending else None
        return moved

    def _timedOut(self) -> None:
        self._fail(
            FAIL_TIMEOUT, f"no answer from backend within {self._timeout:g}s", False
        )
        self.abort()

    def _fail(self, kind: str, detail: str, retryable: bool) -> None:
        sink, self._sink = self._sink, None
        self._timer.cancel()
        if sink is not None:
            sink.responseFailed(kind, detail, retryable)
