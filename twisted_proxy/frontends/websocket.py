"""
The WebSocket bridge: an Autobahn server leg to the client, an Autobahn
client leg to the backend, messages relayed frame by frame between them.

The backend's handshake comes first: the client's request waits while a
member is chosen (sticky routing and failover as for HTTP) and the backend
accepts; a backend that refuses gives the client its status, one that cannot
be reached 502. Then the client's connection is taken over from the HTTP
front end and answered with 101 and the backend's chosen subprotocol.

Each leg does its own handshake, masking, pings and UTF-8 checks; the bridge
only relays message and frame boundaries and payload as it arrives, so a
large message is never held whole. The two transports are each other's
producers: a client that reads slowly pauses reading from the backend, and
the other way round. A message over C{max_message_bytes} closes both legs
with 1009; C{idle_timeout} closes a silent pair with 1001; a close on one leg
is carried to the other (see L{closeForPeer}).
"""

from __future__ import annotations

import copy
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectingRequest, ConnectionRequest
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import (
    IDelayedCall,
    IPushProducer,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy.balancer.state import MemberState
from twisted_proxy.config.model import WebSocketSettings
from twisted_proxy.core.headers import ClientInfo, formatHostPort
from twisted_proxy.core.routing import upstreamTarget
from twisted_proxy.core.wsrules import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_BIG,
    backendHandshake,
    closeForPeer,
    handshakeProblem,
    offeredProtocols,
)
from twisted_proxy.frontends.request import targetOf
from twisted_proxy.tls.backend import TLSPolicy, failureReason
from twisted_proxy.upstream.connection import (
    FAIL_CONNECT,
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
)

_log = Logger()

# A message in one frame up to this size is relayed as one frame, whole;
# larger ones, and fragmented ones, go on frame by frame as they arrive.
_WHOLE_LIMIT = 65536


class _Leg:
    """What both legs do: relay frames to the other leg, report closes."""

    bridge: WebSocketBridge
    other: Any
    fromBackend: bool
    # Bytes of the frame being sent that are still to come (0: between frames).
    _sendingFrame = 0
    _propagated = False
    _isBinary = False
    _firstFrame = True
    _whole: list[bytes] | None = None

    # -- messages in, relayed as they come --

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)  # type: ignore[misc]
        self.message_data = None
        self.bridge.activity()
        self._isBinary = isBinary
        self._firstFrame = True
        self._whole: list[bytes] | None = None

    def onMessageFrameBegin(self, length: int) -> None:
        # The base class checks max_message_bytes before any payload.
        super().onMessageFrameBegin(length)  # type: ignore[misc]
        if self.failedByMe:  # type: ignore[attr-defined]
            if self.wasMaxMessagePayloadSizeExceeded:  # type: ignore[attr-defined]
                self.bridge.tooBig(self)
            return
        other = self.other
        if other is None or not other.isOpen():
            return
        first, self._firstFrame = self._firstFrame, False
        if first and self.current_frame.fin and length <= _WHOLE_LIMIT:  # type: ignore[attr-defined]
            # A small message in one frame goes on as one frame.
            self._whole = []
            return
        if first:
            other.beginMessage(self._isBinary)
        other._sendingFrame = length
        other.beginMessageFrame(length)
        if length == 0:
            other.sendMessageFrameData(b"")

    def onMessageFrameData(self, payload: bytes) -> None:
        if self.failedByMe:  # type: ignore[attr-defined]
            return
        whole = self._whole
        if whole is not None:
            whole.append(payload)
            return
        if not payload:
            # A zero-length frame was sent whole when it began; Autobahn
            # reports its (empty) payload as well.
            return
        other = self.other
        if other is not None and other.isOpen():
            other._sendingFrame -= len(payload)
            other.sendMessageFrameData(payload)

    def onMessageFrameEnd(self) -> None:
        pass

    def onMessageEnd(self) -> None:
        if self.failedByMe:  # type: ignore[attr-defined]
            return
        other = self.other
        if other is None or not other.isOpen():
            return
        whole, self._whole = self._whole, None
        if whole is not None:
            other.sendMessage(b"".join(whole), self._isBinary)
        else:
            other.endMessage()

    # -- closes --

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> bool | None:
        result = super().onCloseFrame(code, reasonRaw)  # type: ignore[misc]
        if not self._propagated:
            self._propagated = True
            self.bridge.legClosed(
                self,
                self.remoteCloseCode,  # type: ignore[attr-defined]
                self.remoteCloseReason,  # type: ignore[attr-defined]
                clean=True,
            )
        return result  # type: ignore[no-any-return]

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Autobahn leaves this timer behind when the connection is lost.
        timer = getattr(self, "closeHandshakeTimeoutCall", None)
        if timer is not None:
            timer.cancel()
            self.closeHandshakeTimeoutCall = None
        if not self._propagated:
            self._propagated = True
            self.bridge.legClosed(self, code, reason, clean=False)
        self.bridge.legGone(self)

    def isOpen(self) -> bool:
        return self.state == self.STATE_OPEN  # type: ignore[attr-defined,no-any-return]

    def closeWith(self, code: int | None, reason: str | None) -> None:
        """Close this leg with C{code} (None: no code), or drop it mid-frame."""
        if not self.isOpen():
            if self.state != self.STATE_CLOSED:  # type: ignore[attr-defined]
                self.dropConnection(abort=True)  # type: ignore[attr-defined]
            return
        if self._sendingFrame > 0:
            # A close frame cannot go inside a frame's payload: drop.
            self.dropConnection(abort=True)  # type: ignore[attr-defined]
            return
        self._propagated = True
        encoded = reason.encode("utf-8")[:123] if reason else None
        self.sendCloseFrame(code=code, reasonUtf8=encoded if code else None)  # type: ignore[attr-defined]


class ClientLeg(_Leg, WebSocketServerProtocol):  # type: ignore[misc]
    """The leg to the client: the proxy is its server."""

    fromBackend = False

    def onConnect(self, request: ConnectionRequest) -> Any:
        """Accept with what the backend chose (and the sticky cookie, if due)."""
        return self.bridge.acceptance()

    def onOpen(self) -> None:
        self.bridge.clientOpen()


class BackendLeg(_Leg, WebSocketClientProtocol):  # type: ignore[misc]
    """The leg to the backend: the proxy is its client."""

    fromBackend = True
    refusedStatus: int | None = None
    lostReason: Failure | None = None

    def onConnecting(self, transport_details: Any) -> ConnectingRequest:
        return self.bridge.connectingRequest()

    def onOpen(self) -> None:
        self.bridge.backendOpen(self)

    failedHandshake: str | None = None

    def failHandshake(self, reason: str) -> None:
        line = getattr(self, "http_status_line", None)
        if line:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit() and parts[1] != "101":
                self.refusedStatus = int(parts[1])
        self.failedHandshake = reason
        super().failHandshake(reason)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lostReason = reason
        super().connectionLost(reason)


def legFactories(
    settings: WebSocketSettings, serverName: str | None, handshakeTimeout: float
) -> tuple[WebSocketServerFactory, WebSocketClientFactory]:
    """The Autobahn factories the legs of every bridge share."""
    server = WebSocketServerFactory(server=serverName)
    client = WebSocketClientFactory(useragent=None)
    for factory in (server, client):
        factory.setProtocolOptions(
            maxMessagePayloadSize=settings.max_message_bytes,
            maxFramePayloadSize=0,
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_interval,
            openHandshakeTimeout=handshakeTimeout,
            closeHandshakeTimeout=5,
            failByDrop=False,
            echoCloseCodeReason=True,
            tcpNoDelay=True,
        )
    return server, client


class WebSocketBridge:
    """One client's WebSocket, bridged to one backend."""

    def __init__(self, request: Any, plan: Any, context: Any, pairs: Any) -> None:
        self._request = request
        self._plan = plan
        self._context = context
        self._pairs = pairs
        self._settings: WebSocketSettings = context.settings.websocket
        self._member: MemberState | None = None
        self._tried: list[MemberState] = []
        self._facts: Any = None
        self._connecting: Any = None
        self._backend: BackendLeg | None = None
        self._client: ClientLeg | None = None
        self._address: tuple[str, str, int, TLSPolicy | None] = ("ws", "", 0, None)
        self._idle: IDelayedCall | None = None
        self._done = False
        self._backendDied = False
        self._legsGone = 0
        self._protocol: str | None = None
        self._site: Any = None

    # -- the backend's handshake first --

    def start(self) -> None:
        """Check the client's handshake, then connect to a backend."""
        problem = handshakeProblem(self._pairs)
        if problem is not None:
            status, message, extra = problem
            self._request.respondError(status, message, extra)
            return
        self._request.whenClientGone(self._clientGoneEarly)
        if self._choose():
            self._connect()

    def _choose(self) -> bool:
        plan = self._plan
        if plan.address is not None:
            target = plan.target
            self._address = (target.scheme, target.host, target.port, _policy(plan))
            return True
        balancer = self._context.balancer
        name = plan.target.host
        if self._facts is None:
            from twisted_proxy.frontends.httprelay import _facts

            self._facts = _facts(self._request, list(self._pairs))
        member = (
            balancer.pick(name, self._facts, self._tried)
            if balancer is not None
            else None
        )
        if member is None:
            _log.error(
                "{label}: no usable member in balancer {name}",
                label=plan.label,
                name=name,
            )
            self._finishEarly(503, "no backend available")
            return False
        self._member = member
        self._tried.append(member)
        if balancer is not None:
            self._request.logEnv = balancer.environment(name, self._facts, member)
        m = member.member
        policy = (
            TLSPolicy(m.tls_ca, m.tls_verify) if m.scheme in ("https", "wss") else None
        )
        self._address = (m.scheme, m.host, m.port, policy)
        return True

    def _endpoint(self) -> IStreamClientEndpoint:
        scheme, host, port, policy = self._address
        wire = "https" if scheme in ("https", "wss") else "http"
        endpoint: IStreamClientEndpoint = self._context.pool.endpointFor(
            Address(wire, host, port, policy)
        )
        return endpoint

    def _connect(self) -> None:
        leg = BackendLeg()
        leg.bridge = self
        leg.other = None
        # Autobahn checks the backend's subprotocol against its factory's
        # list: each backend leg gets a shallow copy offering the client's.
        factory = copy.copy(self._context.websocketFactories()[1])
        factory.protocols = offeredProtocols(self._pairs)
        leg.factory = factory
        self._backend = leg
        d = self._endpoint().connect(_OneLeg(leg))
        self._connecting = d
        d.addCallbacks(self._tcpConnected, self._connectFailed)

    def _tcpConnected(self, leg: Any) -> None:
        self._connecting = None

    def connectingRequest(self) -> ConnectingRequest:
        """The backend's handshake: its URL, the client's headers rewritten."""
        request = self._request
        plan = self._plan
        scheme, host, port, _ = self._address
        upstreamHost = formatHostPort(host, port, scheme)
        hosts = request.requestHeaders.getRawHeaders(b"host")
        from twisted_proxy.frontends.httprelay import (
            _clientAddress,
            _listenerPort,
            _scheme,
        )

        client = ClientInfo(
            address=_clientAddress(request),
            scheme=_scheme(request),
            port=_listenerPort(request),
            host=hosts[0] if hosts else None,
        )
        rewritten = plan.requestRewriter.rewrite(
            list(self._pairs), client, upstreamHost, clientVersion=request.clientproto
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
        if self._done or failure.check(ConnectingCancelledError):
            return
        kind = (
            FAIL_TIMEOUT
            if "timeout" in failure.getErrorMessage().lower()
            else FAIL_CONNECT
        )
        self._failed(kind, f"connect failed: {failure.getErrorMessage()}", 502)

    def _failed(self, kind: str, detail: str, status: int) -> None:
        """The backend could not be reached or did not finish its handshake."""
        member = self._member
        balancer = self._context.balancer
        _log.error(
            "{label}: {backend}: {detail}",
            label=self._plan.label,
            backend=self._backendName(),
            detail=detail,
        )
        if member is not None and balancer is not None:
            balancer.release(member, False, failure=kind)
            self._member = None
            name = self._plan.target.host
            if len(self._tried) <= balancer.maxAttempts(name) and self._choose():
                self._connect()
                return
            if self._done:
                return
        self._finishEarly(
            status, "backend unavailable" if status == 502 else "backend timed out"
        )

    def _backendName(self) -> str:
        scheme, host, port, _ = self._address
        kind = "member" if self._member is not None else "backend"
        wire = {"http": "ws", "https": "wss"}.get(scheme, scheme)
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
        leg: Any = self._backend
        if leg is not None and leg.transport is not None:
            leg.transport.abortConnection()
        self._release(ok=True)

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
        client.factory = self._context.websocketFactories()[0]
        client.other = leg
        leg.other = client
        self._client = client
        request.setResponseCode(101)
        site = channel.site
        site.log(request)
        leftover = channel.detach(client)
        # The listener's graceful stop reaches the bridge like a connection.
        self._site = site
        site.channels.add(self)
        client.dataReceived(_headBytes(request) + leftover)

    def acceptance(self) -> Any:
        """What the client leg's onConnect answers: subprotocol, headers."""
        headers: dict[str, str] = {}
        member = self._member
        balancer = self._context.balancer
        if member is not None and balancer is not None and self._facts is not None:
            cookie = balancer.stickyCookie(self._plan.target.host, self._facts, member)
            if cookie is not None:
                headers["Set-Cookie"] = cookie.decode("latin-1")
        return (self._protocol, headers)

    def clientOpen(self) -> None:
        """Both legs are open: pair the transports as each other's producers."""
        client: Any = self._client
        backend: Any = self._backend
        client.transport.registerProducer(_Reading(backend.transport), True)
        backend.transport.registerProducer(_Reading(client.transport), True)
        self.activity()

    # -- while open --

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

    def tooBig(self, leg: _Leg) -> None:
        """A message over the limit on C{leg}: the other leg gets 1009 too."""
        other = leg.other
        leg._propagated = True
        if other is not None:
            other.closeWith(CLOSE_TOO_BIG, "message too big")

    def legClosed(
        self, leg: _Leg, code: int | None, reason: str | None, clean: bool
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
            balancer = self._context.balancer
            if (
                self._member is not None
                and balancer is not None
                and balancer.failsOnStatus(self._plan.target.host, status)
            ):
                # fail_on_status: the member is put in error, as for a request.
                self._release(ok=False, failure=f"answered {status}")
            else:
                self._release(ok=True)
            self._request.whenClientGone(None)
            self._request.respondError(status, "backend refused the WebSocket")
            return
        reason = leg.lostReason
        if reason is not None and reason.value is not None and _isTLSFailure(reason):
            detail = f"TLS failed: {failureReason(reason.value, self._address[1])}"
            self._failed(FAIL_CONNECT, detail, 502)
        elif getattr(leg, "wasOpenHandshakeTimeout", False):
            self._failed(FAIL_TIMEOUT, "WebSocket handshake timed out", 504)
        elif leg.failedHandshake is not None:
            self._failed(FAIL_PROTOCOL, f"bad handshake: {leg.failedHandshake}", 502)
        else:
            self._failed(FAIL_RESET, "closed before the WebSocket handshake", 502)

    def legGone(self, leg: _Leg) -> None:
        """C{leg}'s connection is closed; when both are, the bridge is over."""
        if self._client is None:
            return
        self._legsGone += 1
        if self._legsGone == 2:
            timer, self._idle = self._idle, None
            if timer is not None and timer.active():
                timer.cancel()
            self._release(ok=not self._backendDied)
            site, self._site = self._site, None
            if site is not None:
                site._channelGone(self)

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

    def _release(self, ok: bool, failure: str = FAIL_RESET) -> None:
        member, self._member = self._member, None
        balancer = self._context.balancer
        if member is not None and balancer is not None:
            balancer.release(member, ok, failure=None if ok else failure)


class _OneLeg(Factory):
    """Connects one backend leg (which keeps its Autobahn factory), quietly."""

    noisy = False

    def __init__(self, leg: BackendLeg) -> None:
        self._leg = leg

    def buildProtocol(self, addr: Any) -> BackendLeg:
        return self._leg


@implementer(IPushProducer)
class _Reading:
    """
    A leg's transport as the other's producer: paused and resumed with it,
    never closed when the other connection is lost (that leg closes itself,
    with its own close handshake).
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def pauseProducing(self) -> None:
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        # The consumer is gone: never leave this side paused.
        self._transport.resumeProducing()


def _isTLSFailure(reason: Failure) -> bool:
    from OpenSSL import SSL
    from service_identity import CertificateError, VerificationError

    from twisted_proxy.tls.backend import CertificateChainError

    return bool(
        reason.check(
            SSL.Error, CertificateChainError, VerificationError, CertificateError
        )
    )


def _policy(plan: Any) -> TLSPolicy | None:
    route = plan.route
    if plan.target.scheme in ("https", "wss"):
        return TLSPolicy(route.tls_ca, route.tls_verify)
    return None


def _headBytes(request: Any) -> bytes:
    """The client's opening handshake again, for the client leg to read."""
    lines = [b"%s %s %s\r\n" % (request.method, request.uri, request.clientproto)]
    for name, value in request.requestHeaders.pairs():
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)


__all__ = ["BackendLeg", "ClientLeg", "WebSocketBridge", "legFactories"]
