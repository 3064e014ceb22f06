"""
The WebSocket bridge: the backend's opening handshake made by an Autobahn
client leg (L{twisted_proxy.frontends.wslegs}), the client's answered here,
then the open WebSocket relayed frame by frame between the two connections
(L{twisted_proxy.frontends.wsrelay}).

The backend's handshake comes first: the client's request waits while a
member is chosen (sticky routing and failover as for HTTP, through a
L{Lease}) and the backend accepts; a backend that refuses gives the client
its status, one that cannot be reached 502. Then the client's connection is
taken over from the HTTP front end and answered with 101 and the backend's
chosen subprotocol.

Once open, frames go on as they came, checked from their headers: a large
message is never held whole, and nothing is decoded and encoded again. The
two transports are each other's producers (a L{Pipe}): a client that reads
slowly pauses reading from the backend, and the other way round. A message
over C{max_message_bytes} closes both sides with 1009; C{idle_timeout}
closes a silent pair with 1001; a close on one side is answered there and
carried to the other (see L{closeForPeer}).
"""

from __future__ import annotations

import copy
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.types import ConnectingRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_proxy.balancer.lease import Lease, endpointFailure, upgradeFailure
from twisted_proxy.config.schemes import isTLS
from twisted_proxy.core.headers import formatHostPort
from twisted_proxy.core.wsrules import (
    CLOSE_GOING_AWAY,
    backendHandshake,
    handshakeProblem,
    offeredProtocols,
    switchingResponse,
)
from twisted_proxy.frontends.clientinfo import clientInfo, requestFacts
from twisted_proxy.frontends.context import ProxyContext, RoutePlan
from twisted_proxy.frontends.listener import ListenerConnections
from twisted_proxy.frontends.pipe import Pipe, StreamingTransport
from twisted_proxy.frontends.request import ProxiedRequest, targetOf
from twisted_proxy.frontends.wslegs import BackendLeg, Handover, OneLeg, legFactory
from twisted_proxy.frontends.wsrelay import FrameRelay
from twisted_proxy.upstream.interfaces import FAIL_RESET, FAIL_TIMEOUT, Address

__all__ = ["WebSocketBridge", "WebSocketUpgrades"]

_log = Logger()


class WebSocketBridge:
    """One client's WebSocket, bridged to one backend."""

    __slots__ = (
        "_address",
        "_backendDied",
        "_connecting",
        "_connections",
        "_context",
        "_done",
        "_handover",
        "_lease",
        "_legFactory",
        "_pairs",
        "_plan",
        "_protocol",
        "_relay",
        "_request",
        "_settings",
    )

    protocolName = "websocket"
    busy = True

    def __init__(
        self,
        request: ProxiedRequest,
        plan: RoutePlan,
        context: ProxyContext,
        pairs: list[tuple[bytes, bytes]],
        legFactory: WebSocketClientFactory,
    ) -> None:
        self._request: ProxiedRequest | None = request
        self._legFactory = legFactory
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
            # A handshake is answered 503 at once when every member is full
            # (or waits for its balancer's wait, which covers that too).
            capacityWait=None,
        )
        self._connecting: Deferred[Any] | None = None
        self._handover: Handover | None = None
        self._relay: FrameRelay | None = None
        self._address: Address = plan.address or Address("http", "", 0)
        self._done = False
        self._backendDied = False
        self._protocol: str | None = None
        self._connections: ListenerConnections | None = None

    def _client(self) -> ProxiedRequest:
        request = self._request
        assert request is not None
        return request

    # -- the backend's handshake first --

    def start(self) -> None:
        """Check the client's handshake, then connect to a backend."""
        request = self._client()
        problem = handshakeProblem(self._pairs)
        if problem is not None:
            status, message, extra = problem
            request.respondError(status, message, extra)
            return
        request.whenClientGone(self._clientGoneEarly)
        if self._plan.address is None:
            self._lease.facts = requestFacts(request, list(self._pairs))
        self._lease.start()

    def attempt(self, address: Address) -> None:
        """Open the backend leg to C{address} (a balancer member's, once picked)."""
        self._address = address
        if self._lease.member is not None:
            self._client().logEnv = self._lease.environment()
        self._connect()

    def unavailable(self) -> None:
        """No balancer member can take the handshake: 503."""
        self._finishEarly(503, "no backend available")

    def _connect(self) -> None:
        leg = BackendLeg()
        leg.bridge = self
        # Autobahn checks the backend's subprotocol against its factory's
        # list: each backend leg gets a shallow copy offering the client's.
        factory = copy.copy(self._legFactory)
        factory.protocols = offeredProtocols(self._pairs)
        leg.factory = factory
        handover = self._handover = Handover(leg)
        endpoint: IStreamClientEndpoint = self._context.pool.endpointFor(
            self._address, self._plan.connectTimeout
        )
        d = endpoint.connect(OneLeg(handover))
        self._connecting = d
        d.addCallbacks(self._tcpConnected, self._connectFailed)

    def _tcpConnected(self, handover: Handover) -> None:
        self._connecting = None

    def connectingRequest(self) -> ConnectingRequest:
        """The backend's handshake: its URL, the client's headers rewritten."""
        request = self._client()
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
        target = plan.upstreamPath(targetOf(request))
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
        request = self._client()
        request.whenClientGone(None)
        request.respondError(status, message)

    def _clientGoneEarly(self) -> None:
        """The client left while the backend's handshake was going on."""
        self._done = True
        if self._connecting is not None:
            self._connecting.cancel()
        handover = self._handover
        transport: Any = handover.transport if handover is not None else None
        if transport is not None:
            transport.abortConnection()
        self._lease.release(True)

    def handshakeEnded(self, leg: BackendLeg) -> None:
        """The backend's connection ended before it accepted the handshake."""
        if self._done or self._relay is not None:
            return
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
            request = self._client()
            request.whenClientGone(None)
            request.respondError(status, "backend refused the WebSocket")
            return
        kind, detail = upgradeFailure(
            leg.lostReason,
            self._address.host,
            bool(getattr(leg, "wasOpenHandshakeTimeout", False)),
            leg.failedHandshake,
        )
        self._failed(kind, detail, 504 if kind == FAIL_TIMEOUT else 502)

    # -- then the client's, and the relay --

    def backendOpen(self, leg: BackendLeg) -> None:
        """The backend accepted: answer the client, then relay both ways."""
        handover = self._handover
        if self._done or handover is None:
            leg.dropConnection(abort=True)
            return
        request = self._client()
        self._protocol = leg.websocket_protocol_in_use
        rest = leg.takeRest()
        relay = self._relay = FrameRelay(self, self._context.reactor, self._settings)
        handover.handTo(relay.backend)
        request.whenClientGone(None)
        request.setResponseCode(101)
        channel = request.channel
        site = channel.site
        site.log(request)
        cookie = self._lease.stickyCookie()
        server = site.responseRewriter.server
        head = switchingResponse(self._pairs, self._protocol, server, cookie)
        early = channel.detach(relay.client)
        relay.client.transport.write(head)
        # The listener's graceful stop reaches the bridge like a connection.
        connections: ListenerConnections = site.connections
        self._connections = connections
        connections.add(self)
        Pipe(
            cast(StreamingTransport, relay.client.transport),
            cast(StreamingTransport, relay.backend.transport),
        ).open()
        relay.start()
        # What the handshakes needed is let go: an open WebSocket keeps
        # only its two connections, the relay and the lease.
        self._request = None
        self._pairs = []
        self._handover = None
        if rest:
            relay.backend.dataReceived(rest)
        if early:
            relay.client.dataReceived(early)

    # -- what the relay reports --

    def relayed(self, fromBackend: bool, count: int) -> None:
        """Messages went on: counted for the metrics, by direction."""
        traffic = self._context.traffic
        if traffic is not None:
            traffic.websocketMessage("down" if fromBackend else "up", count)

    def refused(self, fromBackend: bool, code: int, reason: str) -> None:
        """A side sent a frame against the rules, and is closed with C{code}."""
        _log.info(
            "{label}: {side} broke the WebSocket protocol ({reason}), closed {code}",
            label=self._plan.label,
            side=self._backendName() if fromBackend else "client",
            reason=reason,
            code=code,
        )

    def backendEnded(self) -> None:
        """The backend's connection ended without a close."""
        self._backendDied = True
        _log.warn(
            "{label}: {backend}: WebSocket ended without a close",
            label=self._plan.label,
            backend=self._backendName(),
        )

    def relayGone(self) -> None:
        """Both connections are closed: the bridge is over."""
        ok = not self._backendDied
        self._lease.release(ok, None if ok else FAIL_RESET)
        connections, self._connections = self._connections, None
        if connections is not None:
            connections.remove(self)

    # -- the listener stopping --

    def drain(self) -> None:
        """Graceful stop: close both sides with 1001 (going away)."""
        relay = self._relay
        if relay is not None:
            relay.closeBoth(CLOSE_GOING_AWAY, "server shutting down")

    def abortConnection(self) -> None:
        """The grace period is over: cut both connections."""
        relay = self._relay
        if relay is not None:
            relay.abortConnection()


class WebSocketUpgrades:
    """
    The WebSocket front end, as the HTTP relay meets it: the context's
    L{UpgradeHandler}, handed each WebSocket handshake on a route with
    C{websocket = true}, bridges it to a backend (L{WebSocketBridge}).

    It holds the Autobahn factory every backend handshake shares, made for
    the first handshake.
    """

    def __init__(self) -> None:
        self._legFactory: WebSocketClientFactory | None = None

    def __call__(
        self,
        request: Any,
        plan: RoutePlan,
        context: ProxyContext,
        pairs: list[tuple[bytes, bytes]],
    ) -> None:
        """Bridge the handshake C{request} (header lines C{pairs})."""
        factory = self._legFactory
        if factory is None:
            settings = context.settings
            factory = self._legFactory = legFactory(
                settings.websocket, settings.timeout
            )
        WebSocketBridge(request, plan, context, pairs, factory).start()
