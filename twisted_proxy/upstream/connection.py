"""
The lean HTTP/1.1 client connection to a backend, and its keep-alive pool.

Not C{Agent}, not treq (see DESIGN.md): one request at a time per connection,
a response parsed by L{ResponseParser} and handed to a sink as it arrives, the
connection itself offered as the push producer that a slow client pauses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy._twisted_internals import sendNow
from twisted_proxy.upstream.parser import Headers, ResponseParseError, ResponseParser

Address = tuple[str, str, int]
"""(scheme, host, port) of a backend: the pool's key."""

# How a request to a backend failed, as the exchange and the balancer see it.
FAIL_CONNECT = "connect"
FAIL_RESET = "reset"
FAIL_TIMEOUT = "timeout"
FAIL_PROTOCOL = "protocol"

_RESPONSE = "response"
_IDLE = "idle"


class IResponseSink(TypingProtocol):
    """What a backend connection reports a response to."""

    def responseStarted(self, status: int, reason: bytes, headers: Headers) -> None:
        """The status line and headers arrived."""

    def responseData(self, data: bytes) -> None:
        """A piece of the (de-chunked) body arrived."""

    def responseFinished(self) -> None:
        """The whole response arrived."""

    def batchStarted(self) -> None:
        """Bytes from the backend are being handed over: hold the client's writes."""

    def batchEnded(self) -> None:
        """That batch is done: write what it produced."""

    def responseFailed(self, kind: str, detail: str, retryable: bool) -> None:
        """
        The exchange failed: C{kind} is one of the C{FAIL_*} names;
        C{retryable} says nothing reached the backend's application for sure
        (a pooled connection found closed before any response byte).
        """


@implementer(IPushProducer)
class UpstreamConnection(Protocol):
    """One keep-alive HTTP/1.1 connection to a backend."""

    transport: Any  # an ITCPTransport (or TLS) once connected

    _log = Logger()

    def __init__(self, pool: UpstreamPool, address: Address) -> None:
        self._pool = pool
        self.address = address
        self._parser = ResponseParser(self._onHead, self._onData, self._onEnd)
        self._sink: IResponseSink | None = None
        self._timeout = 0.0
        # One timer per connection, reset rather than re-created: the response
        # timeout while busy, the idle time-to-live while pooled.
        self._timer: IDelayedCall | None = None
        self._timerPurpose: str | None = None
        self._chunked = False
        self._bodyDone = True
        self._paused = False
        self._lost = False
        self._whenLost: list[Deferred[None]] = []
        self.requestsSent = 0

    # -- Protocol --

    def connectionMade(self) -> None:
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        if self._sink is None:
            # Bytes from an idle backend: it is confused; do not reuse it.
            self._pool._discard(self)
            self.transport.loseConnection()
            return
        if self._timerPurpose == _RESPONSE and self._timer is not None:
            self._timer.reset(self._timeout)
        sink = self._sink
        sink.batchStarted()
        try:
            self._parser.feed(data)
        except ResponseParseError as e:
            self._fail(FAIL_PROTOCOL, f"bad response from backend: {e}", False)
            self.transport.abortConnection()
        finally:
            sink.batchEnded()

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self._lost = True
        self._cancelTimeout()
        self._pool._discard(self)
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
        """
        self._sink = sink
        self._chunked = chunked
        self._bodyDone = bodyDone
        self._timeout = timeout
        self.requestsSent += 1
        self._parser.expect(method)
        self._arm(timeout, _RESPONSE)
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
        """The request body is complete."""
        if self._chunked:
            self.transport.write(b"0\r\n\r\n")
        self._bodyDone = True

    def abort(self) -> None:
        """Give up on this exchange: the connection is dropped, never reused."""
        self._sink = None
        self._cancelTimeout()
        self._pool._discard(self)
        if not self._lost:
            self.transport.abortConnection()

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
            self.transport.pauseProducing()
            # A slow client is not a slow backend: stop the response clock.
            self._cancelTimeout()

    def resumeProducing(self) -> None:
        if self._paused and not self._lost:
            self._paused = False
            self.transport.resumeProducing()
            if self._sink is not None:
                self._arm(self._timeout, _RESPONSE)

    def stopProducing(self) -> None:
        self.abort()

    # -- parser callbacks --

    def _onHead(self, status: int, reason: bytes, headers: Headers) -> None:
        if self._sink is not None:
            self._sink.responseStarted(status, reason, headers)

    def _onData(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.responseData(data)

    def _onEnd(self) -> None:
        sink, self._sink = self._sink, None
        # Not cancelled: when pooled, the same timer is re-aimed at the idle TTL.
        self._timerPurpose = None
        reusable = self._parser.keepAlive and self._bodyDone and not self._lost
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        if sink is not None:
            sink.responseFinished()
        if reusable:
            self._pool._release(self)
        else:
            self._cancelTimeout()
            if not self._lost:
                self._pool._discard(self)
                self.transport.loseConnection()

    def _arm(self, seconds: float, purpose: str) -> None:
        self._timerPurpose = purpose
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(seconds)
        else:
            self._timer = self._pool.clock.callLater(seconds, self._timerFired)

    def _timerFired(self) -> None:
        self._timer = None
        purpose, self._timerPurpose = self._timerPurpose, None
        if purpose == _RESPONSE:
            self._timedOut()
        elif purpose == _IDLE:
            self._pool._expire(self)

    def _timedOut(self) -> None:
        self._fail(
            FAIL_TIMEOUT, f"no answer from backend within {self._timeout:g}s", False
        )
        self.abort()

    def _fail(self, kind: str, detail: str, retryable: bool) -> None:
        sink, self._sink = self._sink, None
        self._cancelTimeout()
        if sink is not None:
            sink.responseFailed(kind, detail, retryable)

    def _cancelTimeout(self) -> None:
        self._timerPurpose = None
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, pool: UpstreamPool, address: Address) -> None:
        self._pool = pool
        self._address = address

    def buildProtocol(self, addr: object) -> UpstreamConnection:  # type: ignore[override]
        return UpstreamConnection(self._pool, self._address)


class UpstreamPool:
    """
    Keep-alive connections per backend address.

    :param maxIdle: idle connections kept per backend (more are closed).
    :param idleTTL: an idle connection is closed after this many seconds.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        clock: IReactorTime,
        connectTimeout: float = 5.0,
        maxIdle: int = 64,
        idleTTL: float = 60.0,
        keepalive: bool = True,
        endpointFactory: Callable[[Address], IStreamClientEndpoint] | None = None,
    ) -> None:
        self._reactor = reactor
        self.clock = clock
        self.connectTimeout = connectTimeout
        self.maxIdle = maxIdle if keepalive else 0
        self.idleTTL = idleTTL
        self._endpointFactory = endpointFactory or self._defaultEndpoint
        self._endpoints: dict[Address, IStreamClientEndpoint] = {}
        self._idle: dict[Address, list[UpstreamConnection]] = {}
        self._all: set[UpstreamConnection] = set()
        self._connecting: set[Deferred[UpstreamConnection]] = set()

    def acquire(
        self,
        address: Address,
        onReady: Callable[[UpstreamConnection, bool], object],
        onFailed: Callable[[Failure], object],
        fresh: bool = False,
    ) -> Deferred[UpstreamConnection] | None:
        """
        Call C{onReady(connection, reused)} with an idle connection at once, or
        with a new one once connected; C{onFailed(failure)} if it cannot connect.
        Returns the connection attempt (cancel it to give up) or None.
        """
        if not fresh:
            idle = self._idle.get(address)
            if idle:
                conn = idle.pop()
                # Its idle timer is re-aimed by sendRequest, not re-created.
                onReady(conn, True)
                return None
        endpoint = self._endpoints.get(address)
        if endpoint is None:
            endpoint = self._endpoints[address] = self._endpointFactory(address)
        d: Deferred[Any] = endpoint.connect(_ConnectionFactory(self, address))
        self._connecting.add(d)

        def connected(conn: UpstreamConnection) -> None:
            self._connecting.discard(d)
            self._all.add(conn)
            onReady(conn, False)

        def failed(f: Failure) -> None:
            self._connecting.discard(d)
            onFailed(f)

        d.addCallbacks(connected, failed)
        return d  # type: ignore[return-value]

    def _release(self, conn: UpstreamConnection) -> None:
        idle = self._idle.setdefault(conn.address, [])
        if len(idle) >= self.maxIdle:
            self._discard(conn)
            conn.transport.loseConnection()
            return
        idle.append(conn)
        conn._arm(self.idleTTL, _IDLE)

    def _expire(self, conn: UpstreamConnection) -> None:
        self._discard(conn)
        conn.transport.loseConnection()

    def _discard(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.address)
        if idle and conn in idle:
            idle.remove(conn)
        if conn._sink is None:
            conn._cancelTimeout()
        if conn._lost:
            self._all.discard(conn)

    def idleCount(self, address: Address) -> int:
        """How many idle connections are kept for C{address}."""
        return len(self._idle.get(address, ()))

    def closeAll(self) -> Deferred[object]:
        """Close every connection (idle or busy) and stop connecting."""
        from twisted.internet.defer import gatherResults

        for d in list(self._connecting):
            d.cancel()
        waits = []
        for conn in list(self._all):
            if not conn._lost:
                waits.append(conn.whenLost())
                conn.abort()
        self._idle.clear()
        return gatherResults(waits)  # type: ignore[return-value]

    def _defaultEndpoint(self, address: Address) -> IStreamClientEndpoint:
        scheme, host, port = address
        timeout = self.connectTimeout
        endpoint: IStreamClientEndpoint
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            endpoint = HostnameEndpoint(self._reactor, host, port, timeout=timeout)
        else:
            if ip.version == 4:
                endpoint = TCP4ClientEndpoint(self._reactor, host, port, timeout)
            else:
                endpoint = TCP6ClientEndpoint(self._reactor, host, port, timeout)
        if scheme in ("https", "wss"):
            from twisted.internet.endpoints import wrapClientTLS
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint


__all__ = [
    "FAIL_CONNECT",
    "FAIL_PROTOCOL",
    "FAIL_RESET",
    "FAIL_TIMEOUT",
    "Address",
    "IResponseSink",
    "UpstreamConnection",
    "UpstreamPool",
]
