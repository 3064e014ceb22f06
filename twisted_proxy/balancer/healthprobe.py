"""
The I/O pieces of the health checks (L{twisted_proxy.balancer.health}): the
connections they open, counted so that stopping can cut and await them; the
endpoints of the HTTP checks (TLS for https and wss members); the TCP probe;
the CPING probe of AJP members; the bounded read of an answer's body; and a
failure said in a few words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from twisted.internet import error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from twisted_proxy.config.schemes import isTLS
from twisted_proxy.core.ajp import (
    CPING,
    AJPError,
)
from twisted_proxy.core.ajpreply import (
    CPong,
    ResponseReader,
)
from twisted_proxy.tls.backend import CertificateChainError, failureReason

__all__ = [
    "AgentEndpoints",
    "BoundedBody",
    "CPingProbe",
    "CheckConnections",
    "Probe",
    "TrackingEndpoint",
    "describeFailure",
]

_TLS_FAILURES = (SSL.Error, CertificateChainError, VerificationError, CertificateError)


def describeFailure(failure: Failure, host: str = "") -> str:
    """
    Say in a few words why a check could not get an answer (from C{host},
    named when its certificate does not match it).
    """
    exc = failure.value
    if isinstance(exc, error.ConnectionRefusedError):
        return "connect refused"
    if isinstance(exc, error.DNSLookupError):
        return "name lookup failed"
    if isinstance(exc, (error.TimeoutError, error.TCPTimedOutError)):
        return "connect timed out"
    if isinstance(exc, error.NoRouteError):
        return "no route to host"
    if isinstance(exc, error.ConnectError):
        return f"connect failed: {exc}"
    if isinstance(exc, _TLS_FAILURES):
        return f"TLS failed: {failureReason(exc, host)}"
    if isinstance(exc, (ResponseNeverReceived, ResponseFailed)):
        for reason in exc.reasons:
            if isinstance(reason, Failure) and reason.check(*_TLS_FAILURES):
                why = reason.value
                assert why is not None
                return f"TLS failed: {failureReason(why, host)}"
        if isinstance(exc, ResponseNeverReceived):
            return "connection closed without an answer"
        return "answer cut short"
    if isinstance(exc, (error.ConnectionLost, error.ConnectionDone)):
        return "connection lost"
    return f"check failed: {type(exc).__name__}: {exc}"


class CheckConnections:
    """Every connection the checks opened and that has not closed yet."""

    def __init__(self) -> None:
        self._open: set[ProtocolWrapper] = set()
        self._waiting: list[Deferred[None]] = []

    def opened(self, connection: ProtocolWrapper) -> None:
        """Count a connection that was just made."""
        self._open.add(connection)

    def closed(self, connection: ProtocolWrapper) -> None:
        """Forget a connection that is gone; wake the waiters once none is left."""
        self._open.discard(connection)
        if not self._open:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def abortAll(self) -> None:
        """Cut every connection still open."""
        for connection in list(self._open):
            transport: Any = connection.transport
            if transport is not None:
                transport.abortConnection()

    def whenClosed(self) -> Deferred[None]:
        """Fire once no connection is open."""
        if not self._open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d


class _TrackingFactory(WrappingFactory):
    """Wraps a protocol factory so that L{CheckConnections} sees each connection."""

    noisy = False

    def __init__(self, wrappedFactory: IProtocolFactory, connections: CheckConnections):
        super().__init__(wrappedFactory)
        self._connections = connections
        if isinstance(wrappedFactory, Factory):
            # Agent's pool makes a factory per connection, which would log
            # "Starting factory" and "Stopping factory" at every check.
            wrappedFactory.noisy = False

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        """Called by a wrapped protocol once connected."""
        super().registerProtocol(p)
        self._connections.opened(p)

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """Called by a wrapped protocol once its connection is gone."""
        super().unregisterProtocol(p)
        self._connections.closed(p)


@implementer(IStreamClientEndpoint)
class TrackingEndpoint:
    """An endpoint whose connections L{CheckConnections} keeps count of."""

    def __init__(
        self, endpoint: IStreamClientEndpoint, connections: CheckConnections
    ) -> None:
        self._endpoint = endpoint
        self._connections = connections

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect, handing back the caller's own protocol (not the wrapper)."""
        factory = _TrackingFactory(protocolFactory, self._connections)
        d = self._endpoint.connect(factory)
        return d.addCallback(_unwrap)


def _unwrap(wrapper: IProtocol) -> IProtocol:
    """The caller's protocol inside a L{_TrackingFactory}'s wrapper."""
    wrapped: IProtocol = wrapper.wrappedProtocol  # type: ignore[attr-defined]
    return wrapped


@implementer(IAgentEndpointFactory)
class AgentEndpoints:
    """The HTTP checks' endpoints: plain TCP, TLS for https and wss, all tracked."""

    def __init__(
        self,
        endpointFor: Callable[[str, int], IStreamClientEndpoint],
        connections: CheckConnections,
        tlsFor: Callable[[str, int], Any],
    ) -> None:
        self._endpointFor = endpointFor
        self._connections = connections
        self._tlsFor = tlsFor

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """Return the endpoint that reaches C{uri}'s host and port."""
        host = uri.host.decode("idna").strip("[]")
        endpoint = self._endpointFor(host, uri.port)
        if isTLS(uri.scheme):
            endpoint = wrapClientTLS(self._tlsFor(host, uri.port), endpoint)
        return TrackingEndpoint(endpoint, self._connections)


class Probe(Protocol):
    """A TCP check's connection: it is closed as soon as it is made."""

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        """The check was cancelled while closing: cut the connection now."""
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The connection is gone: the check is over."""
        if not self.lost.called:
            self.lost.callback(None)


class CPingProbe(Protocol):
    """
    An AJP member's check: C{CPING} sent once connected; C{answered} fires
    with (passed, why) when the answer is in, and the connection is closed.
    Cancelling it cuts the connection.
    """

    def __init__(self) -> None:
        self._reader = ResponseReader()
        self.answered: Deferred[tuple[bool, str]] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionMade(self) -> None:
        self.transport.write(CPING)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.answered.called:
            return
        try:
            messages = self._reader.feed(data)
        except AJPError as e:
            self._answer(False, f"not AJP: {e}")
            return
        if messages:
            if messages == [CPong()]:
                self._answer(True, "CPONG")
            else:
                self._answer(False, f"answered {type(messages[0]).__name__}")

    def _answer(self, passed: bool, why: str) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.answered.callback((passed, why))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.answered.called:
            self.answered.errback(reason)


class BoundedBody(Protocol):
    """Reads at most C{limit} bytes of a response body, then drops the rest."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._finished = False
        self.done: Deferred[bytes] = Deferred(lambda _: self._stop())

    def _stop(self) -> None:
        """Read no more, and have the connection closed."""
        self._finished = True
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def _finish(self) -> None:
        """Enough was read: hand it over and stop the rest."""
        body = b"".join(self._parts)
        self._stop()
        if not self.done.called:
            self.done.callback(body)

    def connectionMade(self) -> None:
        """A body that is not wanted is not read."""
        if self._limit <= 0:
            self._finish()

    def dataReceived(self, data: bytes) -> None:
        """Keep what fits in the limit."""
        if self._finished:
            return
        data = data[: self._limit - self._size]
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self._limit:
            self._finish()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The body ended (or broke) before the limit."""
        if self._finished or self.done.called:
            return
        self._finished = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(reason)
