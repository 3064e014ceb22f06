"""
The WebSocket bridge: an Autobahn server leg to the client, an Autobahn
client leg to the backend (L{twisted_proxy.frontends.wslegs}), messages
relayed frame by frame between them.

The backend's handshake comes first: the client's request waits while a
member is chosen (sticky routing and failover as for HTTP, through a
L{Lease}) and the backend accepts; a backend that refuses gives the client
its status, one that cannot be reached 502. Then the client's connection is
taken over from the HTTP front end and answered with 101 and the backend's
chosen subprotocol.

Each leg does its own handshake, masking, pings and UTF-8 checks; the bridge
only relays message and frame boundaries and payload as it arrives, so a
large message is never held whole. The two transports are each other's
producers (a L{Pipe}): a client that reads slowly pauses reading from the
backend, and the other way round. A message over C{max_message_bytes} closes
both legs with 1009; C{idle_timeout} closes a silent pair with 1001; a close
on one leg is carried to the other (see L{closeForPeer}).
"""

from __future__ import annotations

import copy
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory
from autobahn.websocket.types import ConnectingRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_proxy.balancer.lease import Lease, endpointFailure, upgradeFailure
from twisted_proxy.config.schemes import isTLS
from twisted_proxy.core.headers import formatHostPort
from twisted_proxy.core.routing import upstreamTarget
from twisted_proxy.core.wsrules import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_BIG,
    backendHandshake,
    closeForPeer,
    handshakeProblem,
    offeredProtocols,
)
from twisted_proxy.frontends.clientinfo import clientInfo, requestFacts
from twisted_proxy.frontends.context import ProxyContext, RoutePlan
from twisted_proxy.frontends.listener import ListenerConnections
from twisted_proxy.frontends.pipe import Pipe, StreamingTransport
from twisted_proxy.frontends.request import ProxiedRequest, targetOf
from twisted_proxy.frontends.wslegs import (
    BackendLeg,
    ClientLeg,
    Leg,
    OneLeg,
    legFactories,
)
from twisted_proxy.upstream.interfaces import FAIL_RESET, FAIL_TIMEOUT, Address

__all__ = [
    "BackendLeg",
    "ClientLeg",
    "WebSocketBridge",
    "WebSocketUpgrades",
    "legFactories",
]

_log = Logger()


class WebSocketBridge:
    """One client's WebSocket, bridged to one backend."""

    protocolName = "websocket"
    busy = True

    def __init__(
        self,
        request: ProxiedRequest,
        plan: RoutePlan,
        context: ProxyContext,
        pairs: list[tuple[bytes, bytes]],
        legs: tuple[WebSocketServerFactory, WebSocketClientFactory],
    ) -> None:
        self._request = request
        self._legs = legs
        self._plan = plan
        self._context = context
        self._pairs = pairs
        self._settings = context.settings.websocket
        self._lease = Lease(
            self,
            context.reactor,
            plan.label,
            address=plan.address,
            balancer=context.balancer if plan.address is None else None,
            balancerName=plan.target.host,
            memberAddress=context.memberAddress,
            traffic=context.traffic,
            # A handshake is answered 503 at once when every member is full.
            capacityWait=None,
        )
        self._connecting: Deferred[Any] | None = None
        self._backend: BackendLeg | None = None
        self._client: ClientLeg | None = None
        self._address: Address = plan.address or Address("http", "", 0)
        self._idle: IDelayedCall | None = None
        self._done = False
        self._backendDied = False
        self._legsGone = 0
        self._protocol: str | None = None
        self._connections: ListenerConnections | None = None

    # -- the backend's handshake first --

    def start(self) -> None:
        """Check the client's handshake, then connect to a backend."""
        problem = handshakeProblem(self._pairs)
        if problem is not None:
            status, message, extra = problem
            self._request.respondError(status, message, extra)
            return
        self._request.whenClientGone(self._clientGoneEarly)
        if self._plan.address is None:
            self._lease.facts = requestFacts(self._request, list(self._pairs))
        self._lease.start()

    def attempt(self, address: Address) -> None:
        """Open the backend leg to C{address} (a balancer member's, once picked)."""
        self._address = address
        if self._lease.member is not None:
            self._request.logEnv = self._lease.environment()
        self._connect()

    def unavailable(self) -> None:
        """No balancer member can take the handshake: 503."""
        self._finishEarly(503, "no backend available")

    def _connect(self) -> None:
        leg = BackendLeg()
        leg.bridge = self
        leg.other = None
        # Autobahn checks the backend's subprotocol against its factory's
        # list: each backend leg gets a shallow copy offering the client's.
        factory = copy.copy(self._legs[1])
        factory.protocols = offeredProtocols(self._pairs)
        leg.factory = factory
        self._backend = leg
        endpoint: IStreamClientEndpoint = self._context.pool.endpointFor(self._address)
        d = endpoint.connect(OneLeg(leg))
        self._connecting = d
        d.addCallbacks(self._tcpConnected, self._connectFailed)

    def _tcpConnected(self, leg: BackendLeg) -> None:
        self._connecting = None

    def connectingRequest(self) -> ConnectingRequest:
        """The backend's handshake: its URL, the client's headers rewritten."""
        request = self._request
        plan = self._plan
        scheme, host, port, _ = self._address
        upstreamHost = formatHostPort(host, port, scheme)
        rewritten = plan.requestRewriter.rewrite(
            list(self._pairs),
            clientInfo(request),
            upstreamHost,
            clientVersion=request.clientproto,
        )
        headers, origin, protocols = backendHandshake(rewritten)
        hostHeader = upstreamHost.decode("latin-1")
        for name, value in rewritten:
            if name.lower() == b"host":
                hostHeader = value.decode("latin-1")
        hostName, _, portText = hostHeader.rpartition(":")
        if (
            not hostName
            or not portText.isdigit()
            or (hostName.endswith("]") is False and ":" in hostName)
        ):
            hostName, portText = hostHeader, str(port)
        target = upstreamTarget(plan.frontPath, plan.targetPath, targetOf(request))
        return ConnectingRequest(
            host=hostName,
            port=int(portText),
            resource=target.decode("latin-1"),
            headers=headers,
            origin=origin,
            protocols=protocols,
        )

    def _connectFailed(self, failure: Failure) -> None:
        self._connecting = None
        failed = endpointFailure(failure)
        if self._done or failed is None:
            return
        kind, detail = failed
        self._failed(kind, detail, 502)

    def _failed(self, kind: str, detail: str, status: int) -> None:
        """The backend could not be reached or did not finish its handshake."""
        _log.error(
            "{label}: {backend}: {detail}",
            label=self._plan.label,
            backend=self._backendName(),
            detail=detail,
        )
        lease = self._lease
        if lease.member is not None:
            if lease.canFailOver():
                lease.failOver(kind)
                return
            lease.release(False, kind)
        self._finishEarly(
            status, "backend unavailable" if status == 502 else "backend timed out"
        )

    def _backendName(self) -> str:
        scheme, host, port, _ = self._address
        kind = "member" if self._lease.member is not None else "backend"
        wire = "wss" if isTLS(scheme) else "ws"
        return f"{kind} {wire}://{formatHostPort(host, port, scheme).decode()}"

    def _finishEarly(self, status: int, message: str) -> None:
        self._done = True
        self._request.whenClientGone(None)
        self._request.respondError(status, message)

    def _clientGoneEarly(self) -> None:
        """The client left while the backend's handshake was going on."""
        self._done = True
        if self._connecting is not None:
            self._connecting.cancel()
        leg = self._backend
        transport: Any = leg.transport if leg is not None else None
        if transport is not None:
            transport.abortConnection()
        self._lease.release(True)

    # -- then the client's --

    def backendOpen(self, leg: BackendLeg) -> None:
        """The backend accepted: take the client's connection over."""
        if self._done:
            leg.dropConnection(abort=True)
            return
        self._protocol = leg.websocket_protocol_in_use
        request = self._request
        request.whenClientGone(None)
        channel = request.channel
        client = ClientLeg()
        client.bridge = self
        client.factory = self._legs[0]
        client.other = leg
        leg.other = client
        self._client = client
        request.setResponseCode(101)
        site = channel.site
        site.log(request)
        leftover = channel.detach(client)
        # The listener's graceful stop reaches the bridge like a connection.
        connections: ListenerConnections = site.connections
        self._connections = connections
        connections.add(self)
        client.dataReceived(_headBytes(request) + leftover)

    def acceptance(self) -> Any:
        """What the client leg's onConnect answers: subprotocol, headers."""
        headers: dict[str, str] = {}
        cookie = self._lease.stickyCookie()
        if cookie is not None:
            headers["Set-Cookie"] = cookie.decode("latin-1")
        return (self._protocol, headers)

    def clientOpen(self) -> None:
        """Both legs are open: pair the transports as each other's producers."""
        client, backend = self._client, self._backend
        assert client is not None
        assert backend is not None
        Pipe(
            cast(StreamingTransport, client.transport),
            cast(StreamingTransport, backend.transport),
        ).open()
        self.activity()

    # -- while open --

    def relayed(self, fromBackend: bool) -> None:
        """A message went on: counted for the metrics, by direction."""
        traffic = self._context.traffic
        if traffic is not None:
            traffic.websocketMessage("down" if fromBackend else "up")

    def activity(self) -> None:
        seconds = self._settings.idle_timeout
        if not seconds:
            return
        timer = self._idle
        if timer is not None and timer.active():
            timer.reset(seconds)
        else:
            self._idle = self._context.reactor.callLater(seconds, self._idleOver)

    def _idleOver(self) -> None:
        self._idle = None
        for leg in (self._client, self._backend):
            if leg is not None:
                leg.closeWith(CLOSE_GOING_AWAY, "idle")

    def tooBig(self, leg: Leg) -> None:
        """A message over the limit on C{leg}: the other leg gets 1009 too."""
        other = leg.other
        leg._propagated = True
        if other is not None:
            other.closeWith(CLOSE_TOO_BIG, "message too big")

    def legClosed(
        self, leg: Leg, code: int | None, reason: str | None, clean: bool
    ) -> None:
        """C{leg} closed (its close frame arrived, or it ended without one)."""
        if leg.fromBackend and not clean and leg.other is not None:
            self._backendDied = True
            _log.warn(
                "{label}: {backend}: WebSocket ended without a close",
                label=self._plan.label,
                backend=self._backendName(),
            )
        other = leg.other
        if other is None:
            if isinstance(leg, BackendLeg) and not self._done and self._client is None:
                self._handshakeFailed(leg)
            return
        code, reason = closeForPeer(code, reason, clean, leg.fromBackend)
        other.closeWith(code, reason)

    def _handshakeFailed(self, leg: BackendLeg) -> None:
        status = leg.refusedStatus
        if status is not None:
            self._done = True
            _log.info(
                "{label}: {backend} refused the WebSocket handshake with {status}",
                label=self._plan.label,
                backend=self._backendName(),
                status=status,
            )
            # fail_on_status: the member is put in error, as for a request.
            self._lease.answered(status)
            self._lease.release(True)
            self._request.whenClientGone(None)
            self._request.respondError(status, "backend refused the WebSocket")
            return
        kind, detail = upgradeFailure(
            leg.lostReason,
            self._address.host,
            bool(getattr(leg, "wasOpenHandshakeTimeout", False)),
            leg.failedHandshake,
        )
        self._failed(kind, detail, 504 if kind == FAIL_TIMEOUT else 502)

    def legGone(self, leg: Leg) -> None:
        """C{leg}'s connection is closed; when both are, the bridge is over."""
        if self._client is None:
            return
        self._legsGone += 1
        if self._legsGone == 2:
            timer, self._idle = self._idle, None
            if timer is not None and timer.active():
                timer.cancel()
            ok = not self._backendDied
            self._lease.release(ok, None if ok else FAIL_RESET)
            connections, self._connections = self._connections, None
            if connections is not None:
                connections.remove(self)

    # -- the listener stopping --

    def drain(self) -> None:
        """Graceful stop: close both legs with 1001 (going away)."""
        for leg in (self._client, self._backend):
            if leg is not None:
                leg.closeWith(CLOSE_GOING_AWAY, "server shutting down")

    def abortConnection(self) -> None:
        """The grace period is over: cut both connections."""
        for leg in (self._client, self._backend):
            transport: Any = leg.transport if leg is not None else None
            if transport is not None:
                transport.abortConnection()


class WebSocketUpgrades:
    """
    The WebSocket front end, as the HTTP relay meets it: the context's
    L{UpgradeHandler}, handed each WebSocket handshake on a route with
    C{websocket = true}, bridges it to a backend (L{WebSocketBridge}).

    It holds the Autobahn factories (client leg, backend leg) every bridge
    shares, made for the first handshake.
    """

    def __init__(self) -> None:
        self._legs: tuple[WebSocketServerFactory, WebSocketClientFactory] | None = None

    def __call__(
        self,
        request: Any,
        plan: RoutePlan,
        context: ProxyContext,
        pairs: list[tuple[bytes, bytes]],
    ) -> None:
        """Bridge the handshake C{request} (header lines C{pairs})."""
        legs = self._legs
        if legs is None:
            settings = context.settings
            server = None if settings.server_tokens == "none" else "twisted-proxy"
            legs = self._legs = legFactories(
                settings.websocket, server, settings.timeout
            )
        WebSocketBridge(request, plan, context, pairs, legs).start()


def _headBytes(request: Any) -> bytes:
    """The client's opening handshake again, for the client leg to read."""
    lines = [b"%s %s %s\r\n" % (request.method, request.uri, request.clientproto)]
    for name, value in request.requestHeaders.pairs():
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)
