"""
Stream listeners (C{[[listen]] protocol = "tcp"}): each connection relayed
byte for byte to a C{tcp://} destination or a member of a balancer of
C{tcp://} members, as nginx's C{stream} and HAProxy's C{mode tcp} do.

A client's connection is not read until its destination is connected: the
balancer's lease picks a member, and one that refuses or does not answer
within C{connect_timeout} is put in error and the next one tried (up to the
balancer's C{max_attempts}); once connected, nothing is tried again. With no
member to try the client's connection is closed. Then a L{Tunnel} relays both
ways: the two connections pause each other, a half-close passes, and the
listener's C{idle_timeout} closes a connection in which nothing moved. The
member counts as busy (for C{bybusyness} and C{max_connections}) until the
connection ends; a member drained or disabled meanwhile keeps its open
connections and gets no new ones.

With C{proxy_protocol = "v1"} or C{"v2"}, a PROXY protocol header goes to
the member before the client's first byte: the client's address and port,
and the address it reached. From the sources in C{accept_proxy_protocol}
(a load balancer in front), every connection must start with a PROXY
protocol header (v1 or v2, within C{header_timeout}): the client it names is
the one logged, hashed and passed on; a connection without a valid one is
closed (logged 400). From any other source nothing is read as a header.

Each connection gets one access-log line when it ends: C{TCP <member>} as its
request line, the status nginx's stream module gives (200 relayed, 502 no
member could be reached, 503 none available), the bytes sent to the client
(C{%B}, C{%O}) and received from it (C{%I}), the time it was open (C{%D}),
the balancer variables, and how it ended (C{%{PROXY_END_REASON}e}).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy._twisted_internals import replaceProtocol
from twisted_proxy.balancer.keys import RequestFacts
from twisted_proxy.balancer.lease import Lease, connectFailure
from twisted_proxy.balancer.state import MemberState
from twisted_proxy.config.model import Listener, ProxySettings
from twisted_proxy.core.acl import AccessList
from twisted_proxy.core.logformat import END_BACKEND_ERROR, END_CLIENT_CLOSED
from twisted_proxy.core.proxyprotocol import (
    MAX_HEADER,
    ProxyProtocolError,
    encodeV1,
    encodeV2,
    parseHeader,
)
from twisted_proxy.frontends.listener import ListenerSite
from twisted_proxy.frontends.tunnel import Tunnel
from twisted_proxy.tls.backend import BackendTLS, HandshakeTimeoutError, TLSPolicy
from twisted_proxy.upstream.interfaces import FAIL_CONNECT, Address

__all__ = ["StreamConnection", "StreamListener"]

_log = Logger()


def _noHeader(name: bytes) -> bytes | None:
    return None


def _memberAddress(state: MemberState) -> Address:
    member = state.member
    policy = TLSPolicy(member.tls_ca, member.tls_verify) if member.tls else None
    return Address("tcp", member.host, member.port, policy)


class StreamListener(ListenerSite):
    """A tcp listener's factory: its connections, its destination, its log."""

    _log = _log

    def __init__(
        self,
        listener: Listener,
        settings: ProxySettings,
        reactor: Any,
        balancer: Any,
        accessLog: Any = None,
    ) -> None:
        super().__init__(None, settings, reactor, accessLog, (), listener)  # type: ignore[arg-type]
        assert listener.to is not None
        assert listener.idle_timeout is not None
        self.to = listener.to
        self.balancer = balancer
        self.idleTimeout = listener.idle_timeout
        self.label = f"listen[{listener.index}] ({listener.endpoint})"
        self.fixed: Address | None = None
        if self.to.scheme == "tcp":
            self.fixed = Address("tcp", self.to.host, self.to.port)
        self.sendHeader = (
            {"v1": encodeV1, "v2": encodeV2}[listener.proxy_protocol]
            if listener.proxy_protocol is not None
            else None
        )
        self.tls = BackendTLS()
        """How members with C{tls = true} are reached (and verified)."""
        self.trusted: AccessList | None = None
        if listener.accept_proxy_protocol:
            self.trusted = AccessList(listener.accept_proxy_protocol, ())

    def buildProtocol(self, addr: IAddress | None) -> StreamConnection:
        connection = StreamConnection(self)
        self.connections.add(connection)
        return connection

    def endpointFor(self, address: Address) -> IStreamClientEndpoint:
        """How the proxy reaches C{address}: by IP, or by name (resolved)."""
        timeout = self.settings.connect_timeout
        endpoint: IStreamClientEndpoint
        try:
            ip = ipaddress.ip_address(address.host)
        except ValueError:
            endpoint = HostnameEndpoint(
                self.reactor, address.host, address.port, timeout=timeout
            )
        else:
            kind = TCP4ClientEndpoint if ip.version == 4 else TCP6ClientEndpoint
            endpoint = kind(self.reactor, address.host, address.port, timeout=timeout)
        if address.tls is not None:
            # A member with tls = true: verified as https:// members are.
            creator = self.tls.creatorFor(address.host, address.tls)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint

    def logConnection(
        self,
        client: str,
        target: str,
        status: int,
        tunnel: Tunnel | None,
        started: float,
        env: dict[str, str],
        endReason: str | None,
    ) -> None:
        """One connection's access-log line and its count on the status page."""
        down = tunnel.down if tunnel is not None else 0
        up = tunnel.up if tunnel is not None else 0
        # The service's AccessLogger (IAccessLog is what HTTP front ends use).
        accessLog: Any = self.accessLog
        if accessLog is not None:
            accessLog.logConnection(
                client, target.encode(), status, down, up, started, env, endReason
            )
        if self.traffic is not None:
            self.traffic.count(
                up,
                down,
                route=self.label,
                member=env.get("BALANCER_WORKER_NAME", ""),
                method="TCP",
                status=status,
                seconds=self.reactor.seconds() - started,
            )


@implementer(IHandshakeListener)
class _MemberConnection(Protocol):
    """
    A member's connection until it is ready for the tunnel: at once over
    plain TCP, once the TLS handshake is done (and the certificate
    accepted) for a member with C{tls = true}, so a member that fails it is
    a failed connect, failed over like a refusal.
    """

    transport: Any

    def __init__(self, overTLS: bool, reactor: Any, timeout: float) -> None:
        self.ready: Deferred[_MemberConnection] = Deferred(self._cancelled)
        self.early = b""
        self._overTLS = overTLS
        self._reactor = reactor
        self._timeout = timeout
        self._timer: Any = None

    def connectionMade(self) -> None:
        if not self._overTLS:
            self.ready.callback(self)
            return
        self._timer = self._reactor.callLater(self._timeout, self._late)

    def handshakeCompleted(self) -> None:
        self._cancel()
        if not self.ready.called:
            self.ready.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.early += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel()
        if not self.ready.called:
            self.ready.errback(reason)

    def _cancelled(self, ready: Deferred[_MemberConnection]) -> None:
        # The client left during the handshake: the member's connection goes.
        self._cancel()
        if self.transport is not None:
            self.transport.abortConnection()

    def _late(self) -> None:
        self._timer = None
        if not self.ready.called:
            seconds = self._timeout
            self.ready.errback(
                Failure(HandshakeTimeoutError(f"no handshake within {seconds:g}s"))
            )
        self.transport.abortConnection()

    def _cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class StreamConnection(Protocol):
    """
    One client of a tcp listener until its destination is connected; then
    its transport is the L{Tunnel}'s.
    """

    protocolName = "tcp"
    busy = True
    transport: Any

    def __init__(self, site: StreamListener) -> None:
        self._site = site
        self._early = b""
        self._client = "-"
        self._source: tuple[str, int] = ("-", 0)
        self._reached: tuple[str, int] = ("-", 0)
        self._headerTimer: Any = None
        self._started = site.reactor.seconds()
        self._connecting: Any = None
        self._tunnel: Tunnel | None = None
        self._target = site.to.url
        self._gone = False
        self._lease: Lease | None = None

    def connectionMade(self) -> None:
        site = self._site
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self._client = str(getattr(peer, "host", "-"))
        self._source = (self._client, int(getattr(peer, "port", 0) or 0))
        self._reached = (
            str(getattr(host, "host", "-")),
            int(getattr(host, "port", 0) or 0),
        )
        if site.trusted is not None and site.trusted.permits(self._client):
            # A balancer in front: its PROXY header first.
            self._headerTimer = site.reactor.callLater(
                site.settings.header_timeout, self._headerLate
            )
            return
        self._begin()

    def _begin(self) -> None:
        """Nothing more is read until the destination is connected."""
        site = self._site
        self.transport.pauseProducing()
        facts = RequestFacts(self._client, b"", _noHeader, False)
        self._lease = Lease(
            self,
            site.reactor,
            site.label,
            address=site.fixed,
            balancer=site.balancer if site.fixed is None else None,
            balancerName=site.to.host,
            facts=facts,
            memberAddress=_memberAddress,
            traffic=site.traffic,
        )
        self._lease.start()

    def dataReceived(self, data: bytes) -> None:
        # What arrived before reading was paused (a TLS handshake's last read),
        # or the PROXY header still coming.
        self._early += data
        if self._headerTimer is None:
            return
        try:
            header = parseHeader(self._early[:MAX_HEADER])
        except ProxyProtocolError as e:
            self._badHeader(str(e))
            return
        if header is None:
            if len(self._early) >= MAX_HEADER:
                self._badHeader("no PROXY protocol header")
            return
        self._cancelHeaderTimer()
        self._early = self._early[header.length :]
        if header.source is not None:
            self._client = header.source[0]
            self._source = header.source
        if header.destination is not None:
            self._reached = header.destination
        self._begin()

    def _headerLate(self) -> None:
        self._headerTimer = None
        self._badHeader("no PROXY protocol header in time")

    def _badHeader(self, why: str) -> None:
        self._cancelHeaderTimer()
        _log.info(
            "{label}: {client}: {why}, closed",
            label=self._site.label,
            client=self._client,
            why=why,
        )
        self._end(400, None, {})
        self._close()

    def _cancelHeaderTimer(self) -> None:
        timer, self._headerTimer = self._headerTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._headerTimer is not None:
            # Gone before its PROXY header came.
            self._cancelHeaderTimer()
            self._end(499, END_CLIENT_CLOSED, {})
        self._gone = True
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        lease, self._lease = self._lease, None
        if lease is not None:
            # Gone before its destination was connected: 499, as nginx says.
            env = lease.environment()
            lease.release(True)
            self._end(499, END_CLIENT_CLOSED, env)
        self._site.connections.remove(self)

    # -- ILeaseHolder --

    def attempt(self, address: Address) -> None:
        if self._gone:
            return
        self._target = (
            f"tcp://{address.host}:{address.port}"
            if self._site.fixed is None
            else self._site.to.url
        )
        tunnel = Tunnel(
            self._site.reactor,
            self._site.idleTimeout,
            self._client,
            self._target,
            self._ended,
            protocolName="tcp",
        )
        site = self._site
        member = _MemberConnection(
            address.tls is not None, site.reactor, site.settings.connect_timeout
        )
        factory = Factory.forProtocol(lambda: member)
        factory.noisy = False
        d = self._connecting = site.endpointFor(address).connect(factory)
        d.addCallback(lambda _: member.ready)
        d.addCallbacks(lambda _: self._connected(tunnel, member), self._failed)

    def unavailable(self) -> None:
        lease, self._lease = self._lease, None
        env = lease.environment() if lease is not None else {}
        self._end(503, None, env)
        self._close()

    # -- connecting --

    def _failed(self, failure: Failure) -> None:
        self._connecting = None
        lease = self._lease
        if self._gone or lease is None:
            return
        kind, detail = connectFailure(failure) or (FAIL_CONNECT, "connect failed")
        _log.warn(
            "{label}: {target}: {detail}",
            label=self._site.label,
            target=self._target,
            detail=detail,
        )
        if lease.canFailOver():
            lease.failOver(kind)
            return
        self._lease = None
        env = lease.environment()
        lease.release(False, kind)
        self._end(502, END_BACKEND_ERROR, env)
        self._close()

    def _connected(self, tunnel: Tunnel, member: _MemberConnection) -> None:
        self._connecting = None
        if self._gone:
            member.transport.abortConnection()
            return
        replaceProtocol(member.transport, tunnel.server)
        tunnel.server.makeConnection(member.transport)
        site, transport = self._site, self.transport
        self._tunnel = tunnel
        replaceProtocol(transport, tunnel.client)
        tunnel.client.makeConnection(transport)
        site.connections.remove(self)
        early, self._early = self._early, b""
        if site.sendHeader is not None:
            tunnel.server.transport.write(site.sendHeader(self._source, self._reached))
        tunnel.open(site.connections, early)
        if member.early:
            # The member spoke first (a banner) as its handshake ended.
            tunnel.relay(tunnel.server, member.early)
        transport.resumeProducing()

    def _ended(self, tunnel: Tunnel) -> None:
        """The relayed connection is over: the member let go, the line logged."""
        lease, self._lease = self._lease, None
        env: dict[str, str] = {}
        if lease is not None:
            env = lease.environment()
            lease.release(True, bytesIn=tunnel.up, bytesOut=tunnel.down, timed=True)
        self._end(200, tunnel.endReason, env, tunnel)
        self._tunnel = None

    # -- the end --

    def _end(
        self,
        status: int,
        endReason: str | None,
        env: dict[str, str],
        tunnel: Tunnel | None = None,
    ) -> None:
        self._site.logConnection(
            self._client, self._target, status, tunnel, self._started, env, endReason
        )

    def _close(self) -> None:
        self._gone = True
        if self.transport is not None:
            self.transport.abortConnection()

    # -- the listener stopping --

    def drain(self) -> None:
        """Graceful stop: a connection being made is let finish; it ends with grace."""

    def abortConnection(self) -> None:
        """The grace period is over."""
        self._close()
