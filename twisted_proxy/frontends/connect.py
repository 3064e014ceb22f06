"""
CONNECT on an HTTP/1.1 listener with a C{[listen.connect]} table: the
request judged, its destination resolved once and connected to, and the
client's connection handed to a L{Tunnel}.

In order: the client's address must be in C{allow_clients} (403), its
C{Proxy-Authorization} must name a user of the C{users} htpasswd file with
the right password when there is one (407 with C{Proxy-Authenticate}; the
header goes nowhere else, and the access log's C{%u} is the user), the target
a C{host:port} (400) with an allowed port (403); a host name is resolved
once (502 when it cannot be, 504 when that takes longer than the connect
timeout) and each address it gave is judged by C{allow_destinations} (403
when none is allowed; L{twisted_proxy.core.connectrules}); the allowed ones
are tried in turn, and the last failure answers (502 refused or unreachable,
504 timed out). Every refusal has a log line naming the client, the
destination and the reason, besides its access-log line, and closes the
client's connection: what the client sent after its CONNECT head is never
read as a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from ipaddress import ip_address
from typing import Any

from twisted.internet.address import IPv4Address as TwistedIPv4Address
from twisted.internet.address import IPv6Address as TwistedIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionRefusedError,
    TimeoutError,
)
from twisted.internet.interfaces import IDelayedCall, IResolutionReceiver
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy.config.model import ListenerConnect, ProxySettings
from twisted_proxy.core.acl import AccessList
from twisted_proxy.core.connectrules import (
    Address,
    Authority,
    AuthorityError,
    DestinationRules,
    parseAuthority,
)
from twisted_proxy.frontends.proxyauth import ProxyUsers
from twisted_proxy.frontends.tunnel import CONNECTED, Tunnel, TunnelSide

__all__ = ["ConnectGate"]

_log = Logger()


class ConnectGate:
    """One listener's C{[listen.connect]}: what its CONNECT requests reach."""

    def __init__(
        self, settings: ListenerConnect, proxy: ProxySettings, reactor: Any
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        # An empty allow_clients lets nobody tunnel (an empty access list
        # would let everyone in).
        self.clients = (
            AccessList(settings.allow_clients, ()) if settings.allow_clients else None
        )
        self.ports = frozenset(settings.allow_ports)
        self.rules = DestinationRules(
            (d for d in settings.allow_destinations if isinstance(d, str)),
            [d for d in settings.allow_destinations if not isinstance(d, str)],
        )
        self.connectTimeout = (
            settings.connect_timeout
            if settings.connect_timeout is not None
            else proxy.connect_timeout
        )
        self.users: ProxyUsers | None = None
        if settings.users is not None:
            self.users = ProxyUsers(settings.users, reactor)
        self.challenge = b'Basic realm="%s", charset="UTF-8"' % (
            proxy.server_name.encode("ascii", "replace")
        )

    def start(self, request: Any) -> None:
        """Take the CONNECT C{request} (its head is in) to its end."""
        _Opening(self, request).begin()


@implementer(IResolutionReceiver)
class _Resolution:
    """The addresses a name resolved to, handed on once complete."""

    def __init__(self, done: Any) -> None:
        self._done = done
        self.addresses: list[Address] = []

    def resolutionBegan(self, resolution: object) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        if isinstance(address, TwistedIPv4Address | TwistedIPv6Address):
            with suppress(ValueError):
                self.addresses.append(ip_address(address.host.split("%", 1)[0]))

    def resolutionComplete(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(self.addresses)


class _Logged:
    """A CONNECT tunnel's end: its request logged, with the tunnel's figures."""

    __slots__ = ("_request",)

    def __init__(self, request: Any) -> None:
        self._request = request

    def __call__(self, tunnel: Tunnel) -> None:
        request, self._request = self._request, None
        if request is None:
            return
        request.sentLength = tunnel.down
        request.bytesIn = tunnel.up
        request.startedWriting = True
        request.endReason = tunnel.endReason
        request.finished = True
        request.channel.site.log(request)


class _Opening:
    """One CONNECT request on its way to a tunnel (or a refusal)."""

    def __init__(self, gate: ConnectGate, request: Any) -> None:
        self._gate = gate
        self._request = request
        self._client = request.clientAddress()
        self._target = (request.uri or b"").decode("latin-1")
        self._authority: Authority | None = None
        self._timer: IDelayedCall | None = None
        self._connecting: Deferred[Any] | None = None
        self._done = False

    def begin(self) -> None:
        gate, request = self._gate, self._request
        request.whenClientGone(self._clientGone)
        if gate.clients is None or not gate.clients.permits(self._client):
            self._refuse(403, "this client may not CONNECT")
            return
        if gate.users is not None:
            header = request.getHeader(b"proxy-authorization")
            d = gate.users.check(header)
            d.addCallback(self._authenticated, header is not None)
            d.addErrback(self._authFailed)
            return
        self._authorised()

    def _authenticated(self, user: str | None, offered: bool) -> None:
        if self._done:
            return
        if user is None:
            why = "wrong proxy credentials" if offered else "no proxy credentials"
            self._refuse(407, why, [(b"Proxy-Authenticate", self._gate.challenge)])
            return
        self._request.remoteUser = user
        self._authorised()

    def _authFailed(self, failure: Failure) -> None:
        _log.failure("checking proxy credentials", failure)
        self._refuse(500, "the proxy credentials could not be checked")

    def _authorised(self) -> None:
        gate, request = self._gate, self._request
        try:
            authority = parseAuthority(request.uri)
        except AuthorityError as e:
            self._refuse(400, str(e))
            return
        self._authority = authority
        self._target = str(authority)
        if authority.port not in gate.ports:
            self._refuse(403, f"CONNECT to port {authority.port} is not allowed")
            return
        if authority.address is not None:
            self._judge([authority.address])
            return
        self._timer = gate.reactor.callLater(gate.connectTimeout, self._resolveSlow)
        gate.reactor.nameResolver.resolveHostName(
            _Resolution(self._resolved), authority.host, authority.port
        )

    # -- resolving and judging --

    def _resolveSlow(self) -> None:
        self._timer = None
        self._refuse(504, f"resolving {self._host()} timed out")

    def _resolved(self, addresses: list[Address]) -> None:
        if self._done:
            return
        self._cancelTimer()
        if not addresses:
            self._refuse(502, f"cannot resolve {self._host()}")
            return
        self._judge(addresses)

    def _judge(self, addresses: Sequence[Address]) -> None:
        authority = self._authority
        assert authority is not None
        allowed, refused = self._gate.rules.judge(authority.host, addresses)
        if not allowed:
            where = ", ".join(str(a) for a in refused)
            at = "" if authority.address is not None else f" (at {where})"
            self._refuse(403, f"the destination {self._target}{at} is not allowed")
            return
        self._tryNext(allowed, None)

    # -- connecting --

    def _tryNext(self, addresses: list[Address], failure: Failure | None) -> None:
        if self._done:
            return
        if not addresses:
            assert failure is not None
            if failure.check(TimeoutError):
                self._refuse(504, f"connecting to {self._target} timed out")
            else:
                self._refuse(502, f"cannot connect to {self._target}: {_why(failure)}")
            return
        address, rest = addresses[0], addresses[1:]
        gate, authority = self._gate, self._authority
        assert authority is not None
        tunnel = Tunnel(
            gate.reactor,
            gate.settings.idle_timeout,
            self._client,
            f"{self._target} ({address})",
            _Logged(self._request),
        )
        endpointClass = (
            TCP6ClientEndpoint if address.version == 6 else TCP4ClientEndpoint
        )
        endpoint = endpointClass(
            gate.reactor, str(address), authority.port, timeout=gate.connectTimeout
        )
        factory = Factory.forProtocol(lambda: tunnel.server)
        factory.noisy = False
        d = self._connecting = endpoint.connect(factory)

        def connected(side: TunnelSide) -> None:
            self._connecting = None
            self._open(tunnel)

        def failed(reason: Failure) -> None:
            self._connecting = None
            if not reason.check(ConnectingCancelledError):
                _log.info(
                    "CONNECT {client} -> {target}: {address} failed: {why}",
                    client=self._client,
                    target=self._target,
                    address=str(address),
                    why=_why(reason),
                )
                self._tryNext(rest, reason)

        d.addCallbacks(connected, failed)

    def _open(self, tunnel: Tunnel) -> None:
        if self._done:
            tunnel.server.transport.abortConnection()
            return
        self._done = True
        request = self._request
        request.whenClientGone(None)
        _log.info(
            "tunnel {client} -> {destination} open",
            client=self._client,
            destination=tunnel.destination,
        )
        site = request.channel.site
        early = request.channel.detach(tunnel.client)
        self._request = None
        tunnel.client.transport.write(CONNECTED)
        tunnel.open(site.connections, early)

    # -- the end of the attempt --

    def _clientGone(self) -> None:
        if self._done:
            return
        self._done = True
        self._cancelTimer()
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        _log.info(
            "CONNECT {client} -> {target}: the client left before it was open",
            client=self._client,
            target=self._target,
        )

    def _refuse(
        self,
        status: int,
        reason: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if self._done:
            return
        self._done = True
        self._cancelTimer()
        _log.info(
            "CONNECT {client} -> {target} refused: {status} {reason}",
            client=self._client,
            target=self._target,
            status=status,
            reason=reason,
        )
        request = self._request
        self._request = None
        request.whenClientGone(None)
        # The client may have sent its first tunnel bytes already: nothing
        # after the CONNECT head is read as a request.
        request.channel.persistent = False
        request.respondError(status, reason, headers or [])

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _host(self) -> str:
        return self._authority.host if self._authority is not None else "?"


def _why(failure: Failure) -> str:
    """A connection failure in a few words."""
    if failure.check(ConnectionRefusedError):
        return "connection refused"
    if failure.check(TimeoutError):
        return "timed out"
    return failure.getErrorMessage()
