"""
The keep-alive pool of backend connections, and the one place they are made:
TCP (IPv4, IPv6 or a name to resolve), with TLS for https backends; HTTP/1.1
connections, or AJP13 ones for ajp backends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from twisted_proxy.tls.backend import BackendTLS, TLSPolicy
from twisted_proxy.upstream.ajp import AJPConnection
from twisted_proxy.upstream.client import UpstreamConnection
from twisted_proxy.upstream.interfaces import Address, IBackendConnection

__all__ = ["UpstreamPool"]


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(
        self, pool: UpstreamPool, address: Address, connectTimeout: float
    ) -> None:
        self._pool = pool
        self._address = address
        self._connectTimeout = connectTimeout

    def buildProtocol(self, addr: object) -> IBackendConnection:  # type: ignore[override]
        if self._address.scheme == "ajp":
            return AJPConnection(self._pool, self._address)
        return UpstreamConnection(self._pool, self._address, self._connectTimeout)


class UpstreamPool:
    """
    Keep-alive connections per backend address.

    :param maxIdle: idle connections kept per backend (more are closed).
    :param idleTTL: an idle connection is closed after this many seconds.
    :param connectTimeout: seconds to connect, and then to finish a TLS
        handshake, unless the one asking for a connection says otherwise (a
        route's C{connect_timeout}).
    :param tls: the client TLS creators for https backends.
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
        tls: BackendTLS | None = None,
    ) -> None:
        self._reactor = reactor
        self.tls = tls if tls is not None else BackendTLS()
        self.clock = clock
        self.connectTimeout = connectTimeout
        self.maxIdle = maxIdle if keepalive else 0
        self.idleTTL = idleTTL
        self._endpointFactory = endpointFactory
        self._endpoints: dict[tuple[Address, float], IStreamClientEndpoint] = {}
        self._idle: dict[Address, list[IBackendConnection]] = {}
        self._all: set[IBackendConnection] = set()
        self._connecting: set[Deferred[Any]] = set()

    def acquire(
        self,
        address: Address,
        onReady: Callable[[IBackendConnection, bool], object],
        onFailed: Callable[[Failure], object],
        fresh: bool = False,
        maxAge: float | None = None,
        connectTimeout: float | None = None,
    ) -> Deferred[Any] | None:
        """
        Call C{onReady(connection, reused)} with an idle connection at once, or
        with a new one once connected (and, for https, its certificate
        accepted); C{onFailed(failure)} if it cannot connect, with a
        L{BackendTLSError} when the TLS handshake failed. Returns the
        connection attempt (cancel it to give up), or None when one of the
        two was called already.

        :param maxAge: reuse only a connection whose last response ended less
            than this many seconds ago (one the backend is unlikely to be
            closing as the request is written); else connect afresh. An
            older AJP connection is asked first (C{CPING}), and lent if it
            answers in the connect timeout, else a fresh one is made.
        :param connectTimeout: the connect (and TLS handshake) timeout of a
            connection made now (None: the pool's). Idle connections are
            lent whatever timeout they were made with.
        """
        timeout = self.connectTimeout if connectTimeout is None else connectTimeout
        if not fresh:
            idle = self._idle.get(address)
            # The most recently used is last.
            if idle:
                conn = idle[-1]
                if maxAge is None or self.clock.seconds() - conn.lastUsed < maxAge:
                    idle.pop()
                    # Its idle timer is re-aimed by sendRequest, not re-created.
                    onReady(conn, True)
                    return None
                if isinstance(conn, AJPConnection):
                    idle.pop()
                    pinged = self._pinged(conn, address, timeout)
                    return self._track(pinged, onReady, onFailed)
        try:
            attempt = self._connect(address, timeout)
        except Exception:
            # A tls_ca file that went bad since start-up.
            onFailed(Failure())
            return None
        attempt.addCallback(lambda conn: (conn, False))
        return self._track(attempt, onReady, onFailed)

    def _connect(
        self, address: Address, timeout: float
    ) -> Deferred[IBackendConnection]:
        """A new connection to C{address}, fired once it can carry a request."""
        endpoint = self._endpoints.get((address, timeout))
        if endpoint is None:
            endpoint = self.endpointFor(address, timeout)
            self._endpoints[(address, timeout)] = endpoint
        factory = _ConnectionFactory(self, address, timeout)
        d: Deferred[Any] = endpoint.connect(factory)

        def connected(conn: IBackendConnection) -> Deferred[IBackendConnection]:
            self._all.add(conn)
            # Chained, so cancelling the attempt cancels a handshake too.
            ready: Deferred[IBackendConnection] = conn.whenReady()
            return ready

        return d.addCallback(connected)

    def _pinged(
        self, conn: AJPConnection, address: Address, timeout: float
    ) -> Deferred[Any]:
        """C{conn} once it answered a C{CPING}; else a new connection."""

        def answered(conn: AJPConnection) -> tuple[IBackendConnection, bool]:
            return conn, True

        def unanswered(failure: Failure) -> Deferred[Any] | Failure:
            if failure.check(CancelledError):
                return failure
            return self._connect(address, timeout).addCallback(lambda new: (new, False))

        return conn.ping(timeout).addCallbacks(answered, unanswered)

    def _track(
        self,
        attempt: Deferred[Any],
        onReady: Callable[[IBackendConnection, bool], object],
        onFailed: Callable[[Failure], object],
    ) -> Deferred[Any] | None:
        """Hand C{attempt}'s (connection, reused) over; kept for closeAll."""
        self._connecting.add(attempt)

        def ready(result: tuple[IBackendConnection, bool]) -> None:
            self._connecting.discard(attempt)
            onReady(*result)

        def failed(f: Failure) -> None:
            self._connecting.discard(attempt)
            onFailed(f)

        attempt.addCallbacks(ready, failed)
        return attempt if attempt in self._connecting else None

    def release(self, conn: IBackendConnection) -> None:
        """C{conn} may carry another request: keep it idle (if there is room)."""
        idle = self._idle.setdefault(conn.address, [])
        if len(idle) >= self.maxIdle:
            self.discard(conn)
            conn.transport.loseConnection()
            return
        idle.append(conn)
        conn.idleFor(self.idleTTL)

    def expire(self, conn: IBackendConnection) -> None:
        """C{conn} was idle for idleTTL: close it."""
        self.discard(conn)
        conn.transport.loseConnection()

    def discard(self, conn: IBackendConnection) -> None:
        """C{conn} is never to be lent again."""
        idle = self._idle.get(conn.address)
        if idle and conn in idle:
            idle.remove(conn)
        conn.unpooled()
        if conn.lost:
            self._all.discard(conn)

    def idleCount(self, address: Address) -> int:
        """How many idle connections are kept for C{address}."""
        return len(self._idle.get(address, ()))

    def closeAll(self) -> Deferred[object]:
        """Close every connection (idle or busy) and stop connecting."""
        for d in list(self._connecting):
            d.cancel()
        waits = []
        for conn in list(self._all):
            if not conn.lost:
                waits.append(conn.whenLost())
                conn.abort()
        self._idle.clear()
        return gatherResults(waits)  # type: ignore[return-value]

    def endpointFor(
        self, address: Address, connectTimeout: float | None = None
    ) -> IStreamClientEndpoint:
        """
        Where a connection to C{address} is made (TLS added for https), in
        C{connectTimeout} seconds (None: the pool's); an C{endpointFactory}
        given to the pool makes it instead, timeout and all.
        """
        if self._endpointFactory is not None:
            return self._endpointFactory(address)
        timeout = self.connectTimeout if connectTimeout is None else connectTimeout
        return self._defaultEndpoint(address, timeout)

    def _defaultEndpoint(
        self, address: Address, timeout: float
    ) -> IStreamClientEndpoint:
        _, host, port, policy = address
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
        if address.overTLS:
            creator = self.tls.creatorFor(host, policy or TLSPolicy())
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint
