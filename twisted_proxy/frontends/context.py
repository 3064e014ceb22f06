"""
What a route's exchanges share: the L{ProxyContext} (upstream pool, balancer,
settings) and each route's L{RoutePlan}, worked out once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.logger import Logger

from twisted_proxy.balancer.interfaces import IBalancer
from twisted_proxy.balancer.state import MemberState
from twisted_proxy.config.model import Balancer, ProxySettings, Route
from twisted_proxy.config.schemes import scheme as backendScheme
from twisted_proxy.core.acl import AccessList
from twisted_proxy.core.headers import RequestHeaderRewriter, formatHostPort
from twisted_proxy.core.requesttarget import RequestTarget
from twisted_proxy.core.reverse import ReverseRewriter
from twisted_proxy.core.reversemap import ReverseTable, routePrefixes
from twisted_proxy.core.routing import PathPattern, upstreamTarget
from twisted_proxy.core.traffic import Traffic
from twisted_proxy.tls.backend import (
    BackendCAError,
    TLSPolicy,
    tlsBackends,
    unverifiedWarnings,
)
from twisted_proxy.upstream.interfaces import Address
from twisted_proxy.upstream.pool import UpstreamPool

__all__ = ["ProxyContext", "RoutePlan", "UpgradeHandler", "backendAddress"]

_log = Logger()


UpgradeHandler = Callable[
    [Any, "RoutePlan", "ProxyContext", list[tuple[bytes, bytes]]], None
]
"""
Takes over an HTTP/1.1 request that asks to become another protocol (a
WebSocket handshake on a route with C{websocket = true}), given the request,
its route's plan, the context and its header lines: the WebSocket front end's
L{twisted_proxy.frontends.websocket.WebSocketUpgrades}.
"""


@dataclass
class ProxyContext:
    """What every route's exchanges share: the pool, the balancer, the settings."""

    settings: ProxySettings
    reactor: Any
    pool: UpstreamPool
    balancer: IBalancer | None = None
    balancers: dict[str, Balancer] = field(default_factory=dict)
    """The balancers' configuration (their member URLs, for ProxyPassReverse)."""
    upgrade: UpgradeHandler | None = None
    """Where WebSocket handshakes go (L{ProxyService} sets the WebSocket front
    end's); without one they are relayed as plain HTTP requests."""
    traffic: Traffic | None = field(default=None, repr=False)
    """Where backend trouble and WebSocket messages are counted (the service's)."""
    compressTypes: tuple[bytes, ...] = field(init=False)
    """The media types to gzip, as bytes (worked out once)."""
    debug: bool = field(init=False)
    """Each upstream exchange is logged at debug level (``log_level``)."""
    _warnedTLS: set[str] = field(default_factory=set, init=False, repr=False)
    # Each member's pool key, made on its first pick rather than on every one.
    _memberAddresses: dict[MemberState, Address] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.compressTypes = tuple(t.lower().encode() for t in self.settings.compress)
        self.debug = self.settings.log_level == "debug"

    def checkBackendTLS(
        self, routes: Iterable[Route] = (), balancers: Iterable[Balancer] = ()
    ) -> None:
        """
        Read the C{tls_ca} files of these https backends now, so a bad one
        stops start-up (L{BackendCAError}, naming the key), and warn once per
        backend whose certificate is not checked.
        """
        backends = tlsBackends(routes, balancers)
        for backend in backends:
            try:
                self.pool.tls.context(backend.policy)
            except BackendCAError as e:
                raise BackendCAError(f"{backend.where}.tls_ca: {e}") from None
        for url, warning in unverifiedWarnings(backends):
            if url not in self._warnedTLS:
                self._warnedTLS.add(url)
                _log.warn("{warning}", warning=warning)

    def memberAddress(self, state: MemberState) -> Address:
        """The pool's key for a balancer member: where it is, how TLS is checked."""
        address = self._memberAddresses.get(state)
        if address is None:
            m = state.member
            address = backendAddress(m.scheme, m.host, m.port, m.tls_ca, m.tls_verify)
            self._memberAddresses[state] = address
        return address

    @classmethod
    def create(
        cls,
        settings: ProxySettings,
        reactor: Any,
        balancer: IBalancer | None = None,
        balancers: dict[str, Balancer] | None = None,
        upgrade: UpgradeHandler | None = None,
    ) -> ProxyContext:
        """A context with its own upstream pool, configured from C{settings}."""
        pool = UpstreamPool(
            reactor,
            reactor,
            connectTimeout=settings.connect_timeout,
            maxIdle=settings.pool_size,
            idleTTL=settings.pool_ttl,
            keepalive=settings.keepalive,
        )
        context = cls(
            settings=settings,
            reactor=reactor,
            pool=pool,
            balancer=balancer,
            balancers=dict(balancers or {}),
            upgrade=upgrade,
        )
        # The routes' backends are checked as their resources are made.
        context.checkBackendTLS(balancers=context.balancers.values())
        return context


class RoutePlan:
    """What one route needs per request, worked out once."""

    def __init__(
        self,
        route: Route,
        settings: ProxySettings,
        frontPath: str,
        balancer: Balancer | None = None,
        reverseTable: ReverseTable | None = None,
    ) -> None:
        assert route.to is not None
        target = route.to
        self.route = route
        self.target = target
        self.frontPath = frontPath
        self.targetPath = target.path
        self.timeout = route.timeout if route.timeout is not None else settings.timeout
        # For each connection opened for this route's requests (pooled
        # connections are shared by every route to the same backend).
        self.connectTimeout = (
            route.connect_timeout
            if route.connect_timeout is not None
            else settings.connect_timeout
        )
        # A match route's regular expression and backreferences; None: the
        # route's path prefix is swapped for the target's (upstreamTarget).
        self.pattern = (
            PathPattern(route.match, target.path) if route.match is not None else None
        )
        self.acl = AccessList(route.allow, route.deny)
        self.label = f"route {route.host or '*'}{route.location}"
        # AJP: the whole route (a balancer's members are all ajp:// or none).
        self.ajp = target.scheme == "ajp" or (
            balancer is not None and any(m.scheme == "ajp" for m in balancer.members)
        )
        if self.ajp and route.preserve_host is None:
            # The container sees the Host the client asked for (its
            # redirects and absolute URLs name it), as with mod_proxy_ajp.
            route = replace(route, preserve_host=True)
        if target.scheme == "balancer":
            self.address: Address | None = None
            upstreamHost = b""
        else:
            self.address = backendAddress(
                target.scheme, target.host, target.port, route.tls_ca, route.tls_verify
            )
            upstreamHost = formatHostPort(target.host, target.port, target.scheme)
        self.requestRewriter = RequestHeaderRewriter(settings, route, upstreamHost)
        # A WebSocket handshake to an AJP backend is relayed as a plain
        # request (its Upgrade header dropped): AJP carries no WebSocket.
        self.websocket = not self.ajp and (
            route.websocket or target.scheme in ("ws", "wss")
        )
        self.reverseRewriter = ReverseRewriter(
            routePrefixes(route, balancer),
            frontPath,
            route.cookie_domain,
            route.cookie_path,
            reverseTable,
        )

    def upstreamPath(self, target: RequestTarget) -> bytes:
        """
        What the backend is asked for (path and query) for the request's
        normalised target; L{ValueError} when the route does not answer it.
        """
        if self.pattern is not None:
            return self.pattern.upstreamTarget(target)
        return upstreamTarget(self.frontPath, self.targetPath, target)


def backendAddress(
    scheme: str, host: str, port: int, ca: str | None, verify: bool
) -> Address:
    """The pool's key for a backend: TLS ones carry their policy."""
    known = backendScheme(scheme)
    policy = TLSPolicy(ca, verify) if known.tls else None
    return Address(known.wire, host, port, policy)
