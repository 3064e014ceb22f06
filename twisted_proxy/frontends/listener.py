"""
What every connection of one listener shares, whatever protocol it speaks.

L{ListenerConnections} is the registry of a listener's live connections: an
HTTP/1.1 channel from the moment it is built, an HTTP/2 connection once ALPN
chose it, a WebSocket bridge once it took its channel over (a CONNECT tunnel
or a TCP splice registers the same way). A graceful stop asks each of them
to L{IListenerConnection.drain} and waits until none is left; the end of the
grace period cuts whatever is still open with L{ListenerConnections.abortAll}.

L{ListenerSite} is the rest of what an HTTP listener's connections share: the
root resource, the limits of C{[proxy]}, the access log, the names an
absolute-form target may carry, and that registry. The HTTP/1.1 front end's
factory is one (L{twisted_proxy.frontends.http1.HTTPProxyFactory}); the
HTTP/2 front end serves the same site.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.web.resource import IResource
from zope.interface import Attribute, Interface

from twisted import copyright
from twisted_proxy._twisted_internals import pendingWriteBytes
from twisted_proxy.config.model import Listener, ProxySettings
from twisted_proxy.core.headers import ResponseHeaderRewriter
from twisted_proxy.core.logformat import END_SHUTDOWN_GRACE
from twisted_proxy.core.routing import normalizeHost
from twisted_proxy.core.traffic import Traffic
from twisted_proxy.frontends.request import IAccessLog, ProxiedRequest
from twisted_proxy.tls.server import clientSubject, listenerSettings

__all__ = [
    "LONG_LIVED",
    "IListenerConnection",
    "ListenerConnections",
    "ListenerSite",
    "SendTimeout",
]


# What a connection that outlives its listener's retirement speaks: a bridged
# WebSocket (and a tunnel) is left to end by itself, not drained.
LONG_LIVED = frozenset({"websocket", "tunnel", "tcp"})


class IListenerConnection(Interface):
    """
    One live connection of a listener, as its graceful stop sees it. One that
    also has C{cutShort(reason)} is told why before it is cut, so the access
    log can say it of the responses cut short.
    """

    protocolName = Attribute(
        'What it speaks: "http/1.1", "h2", "websocket", "tunnel" (CONNECT) or'
        ' "tcp" (a tcp listener\'s), for the status page.'
    )
    busy = Attribute("Whether a request (or a bridged WebSocket) is under way on it.")

    def drain() -> None:
        """
        Take no more requests; close once what is under way is done (at once
        when nothing is). The connection leaves the registry once closed.
        """

    def abortConnection() -> None:
        """Cut the connection now."""


class ListenerConnections:
    """
    The live connections of one listener: each is added when it starts to
    serve the listener and removed once it is gone (or handed to another
    protocol that registers itself).
    """

    def __init__(self) -> None:
        self.live: set[Any] = set()
        """The connections open now (L{IListenerConnection} providers)."""
        self._drained: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self.live)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.live))

    def add(self, connection: Any) -> None:
        """C{connection} serves the listener from now on."""
        self.live.add(connection)

    def remove(self, connection: Any) -> None:
        """
        C{connection} is gone (or no longer this listener's): once none is
        left, the drains waiting are over.
        """
        self.live.discard(connection)
        if not self.live and self._drained:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def drain(self) -> Deferred[None]:
        """
        Ask every connection to finish and close (idle ones close now); fire
        once none is left. The listener should have stopped listening first.
        """
        for connection in list(self.live):
            connection.drain()
        if not self.live:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    def retire(self) -> Deferred[None]:
        """
        The listener is gone or replaced (a reload), the proxy is not
        stopping: HTTP connections finish what is under way and close (the
        client reconnects to what serves the port now), while bridged
        WebSockets and tunnels go on until they end by themselves or the
        proxy stops. Fire once none is left.
        """
        for connection in list(self.live):
            if connection.protocolName not in LONG_LIVED:
                connection.drain()
        if not self.live:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    def abortAll(self, reason: str = END_SHUTDOWN_GRACE) -> None:
        """
        Cut every connection still open (the grace period is over); C{reason}
        is what the access log gives for the responses cut short.
        """
        for connection in list(self.live):
            # HTTP/1.1 and HTTP/2 connections note it; WebSocket bridges log
            # nothing more once open.
            cut = getattr(connection, "cutShort", None)
            if cut is not None:
                cut(reason)
            connection.abortConnection()


def _nothing() -> None:
    """What a closed L{SendTimeout} calls: nothing."""


class SendTimeout:
    """
    One connection's C{send_timeout}: started when the client's socket is
    full (the transport paused its producer), cancelled when it has room
    again. When it runs out it looks again: a client that took some of what
    it was sent meanwhile is slow, not gone, and gets as long again; one
    that took none is let go (C{expired} is called).
    """

    def __init__(
        self, reactor: IReactorTime, seconds: float, expired: Callable[[], None]
    ) -> None:
        self._reactor = reactor
        self._seconds = seconds
        self._expired = expired
        self._timer: IDelayedCall | None = None
        self._held: int | None = None
        self._transport: Any = None

    def start(self, transport: Any) -> None:
        """The client's socket is full: time it (unless it is timed already)."""
        if self._timer is None and self._expired is not _nothing:
            self._transport = transport
            self._held = pendingWriteBytes(transport)
            self._timer = self._reactor.callLater(self._seconds, self._ranOut)

    def cancel(self) -> None:
        """The client's socket has room again (or the connection is gone)."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def close(self) -> None:
        """
        The connection is gone: stop for good, and let go of the connection
        (held through C{expired} and its transport), so no reference cycle
        outlives it.
        """
        self.cancel()
        self._expired = _nothing
        self._transport = None
        self._seconds = 0.0

    def _ranOut(self) -> None:
        self._timer = None
        held = pendingWriteBytes(self._transport)
        before, self._held = self._held, held
        if held is not None and before is not None and held < before:
            # Slow, not gone: it took some meanwhile.
            self._timer = self._reactor.callLater(self._seconds, self._ranOut)
            return
        self._expired()


def _servedName(name: str) -> str:
    """A configured host name as an absolute-form target's host is compared."""
    raw = name.encode("ascii") if name.isascii() else name.encode("idna")
    return (normalizeHost(raw) or b"").decode("ascii")


class ListenerSite(ServerFactory):
    """
    What the connections of one HTTP listener share: the root resource (the
    router), the limits of C{[proxy]}, the access log, the names it serves,
    and its live connections (L{connections}), which L{drain} and
    L{abortAll} reach. A subclass builds the connections.
    """

    noisy = False

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
        self.serveNames(hostNames)
        self.traffic: Traffic | None = None
        """Where answered requests are counted (the service's, for its status)."""
        self.connections = ListenerConnections()
        self.connectGate: Any = None
        """Where CONNECT requests go when the listener has C{[listen.connect]}
        (a L{twisted_proxy.frontends.connect.ConnectGate}, set by whoever
        builds the listener); None: CONNECT is refused."""
        # The open connections themselves (the registry's set), for those
        # that count or list them.
        self.channels: set[Any] = self.connections.live

    def serveNames(self, hostNames: Sequence[str]) -> None:
        """
        The names an absolute-form request may carry (we are no open proxy):
        C{server_name}, C{localhost} and the routes' hosts, reduced as routing
        reduces a Host (no trailing dot, no brackets).
        """
        names = (self.settings.server_name, "localhost", *hostNames)
        self.hostNames = frozenset(_servedName(n) for n in names)

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
        """Write C{request}'s access-log line, and count it for the status page."""
        if self.accessLog is not None:
            self.accessLog.logRequest(request)
        traffic = self.traffic
        if traffic is not None:
            sent = request.startedWriting or request.endReason is None
            start = request.startTime
            traffic.count(
                request.bytesIn + request.headBytes,
                max(0, request.sentLength - request.unsentBytes),
                route=getattr(request, "routeLabel", ""),
                member=request.logEnv.get("BALANCER_WORKER_NAME", ""),
                method=(request.method or b"").decode("latin-1"),
                status=request.code if sent else 0,
                seconds=self.reactor.seconds() - start if start else None,
            )

    def drain(self) -> Deferred[None]:
        """
        Close idle connections now and the busy ones once their response is
        done; fire when every connection is gone. Stop listening first.
        """
        return self.connections.drain()

    def retire(self) -> Deferred[None]:
        """
        This listener's port closed or now serves another site (a reload):
        HTTP connections finish and close, WebSockets and tunnels go on
        (L{ListenerConnections.retire}); fire when none is left.
        """
        return self.connections.retire()

    def abortAll(self, reason: str = END_SHUTDOWN_GRACE) -> None:
        """
        Cut every remaining connection (the grace period is over); C{reason}
        is what the access log gives for the responses cut short.
        """
        self.connections.abortAll(reason)
