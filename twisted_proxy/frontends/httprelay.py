"""
The HTTP reverse proxy: a twisted.web resource that relays each request to a
backend (ProxyPass) and rewrites what comes back (ProxyPassReverse).

The decisions (headers, redirects, routes, ACLs, compression) are made by the
pure modules; this one moves bytes between a L{ProxiedRequest} and an
L{UpstreamConnection}, with each side the producer the other pauses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectingCancelledError, TimeoutError
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from twisted_proxy.balancer import IBalancer, MemberState
from twisted_proxy.balancer.keys import RequestFacts, headerLookup
from twisted_proxy.config import parseTarget
from twisted_proxy.config.model import Balancer, ProxySettings, Route
from twisted_proxy.core.acl import AccessList
from twisted_proxy.core.compress import (
    GzipStream,
    compressedHeaders,
    shouldCompress,
    varyHeaders,
)
from twisted_proxy.core.headers import ClientInfo, RequestHeaderRewriter, formatHostPort
from twisted_proxy.core.logformat import (
    END_BACKEND_CLOSED,
    END_BACKEND_ERROR,
    END_BACKEND_TIMEOUT,
    END_SEND_TIMEOUT,
    END_SHUTDOWN_GRACE,
)
from twisted_proxy.core.requesttarget import TargetError
from twisted_proxy.core.response import Headers
from twisted_proxy.core.reverse import ReverseRewriter, ReverseTable, routePrefixes
from twisted_proxy.core.routing import upstreamTarget
from twisted_proxy.core.wsrules import isUpgrade
from twisted_proxy.frontends.request import (
    ALLOWED_METHODS,
    IStreamingResource,
    ProxiedRequest,
    abandon,
    errorHeaders,
    targetOf,
)
from twisted_proxy.tls.backend import (
    BackendCAError,
    BackendTLSError,
    HandshakeTimeoutError,
    TLSPolicy,
    tlsBackends,
    unverifiedWarnings,
)
from twisted_proxy.upstream.connection import (
    FAIL_CONNECT,
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
    UpstreamConnection,
    UpstreamPool,
)
from twisted_proxy.upstream.trace import UpstreamTrace

_log = Logger()

# A request body is kept for a retry on a fresh connection while it is small.
_REPLAY_LIMIT = 65536
# Body bytes held while the backend connection is being made, before the
# client is paused.
_PENDING_LIMIT = 262144
# Methods whose request may be sent again when a member dropped it unanswered
# (RFC 9110 9.2.2), and only when it has no body.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"TRACE", b"PUT"})
# How long a request waits when every member is at its max_connections.
_CAPACITY_WAIT = 5.0

_WIRE_SCHEME = {"http": "http", "https": "https", "ws": "http", "wss": "https"}

# A backend failing mid-response: what the client's access-log line says.
_CUT_BY = {
    FAIL_CONNECT: END_BACKEND_CLOSED,
    FAIL_RESET: END_BACKEND_CLOSED,
    FAIL_TIMEOUT: END_BACKEND_TIMEOUT,
    FAIL_PROTOCOL: END_BACKEND_ERROR,
}
# The client's side ended by the proxy's doing, not the client's.
_CLIENT_CUT = {
    END_SHUTDOWN_GRACE: "shutdown grace period over: response cut short",
    END_SEND_TIMEOUT: "client took none of the response for send_timeout: cut",
}


@dataclass
class ProxyContext:
    """What every route's exchanges share: the pool, the balancer, the settings."""

    settings: ProxySettings
    reactor: Any
    pool: UpstreamPool
    balancer: IBalancer | None = None
    balancers: dict[str, Balancer] = field(default_factory=dict)
    """The balancers' configuration (their member URLs, for ProxyPassReverse)."""
    compressTypes: tuple[bytes, ...] = field(init=False)
    """The media types to gzip, as bytes (worked out once)."""
    debug: bool = field(init=False)
    """Each upstream exchange is logged at debug level (``log_level``)."""
    _warnedTLS: set[str] = field(default_factory=set, init=False, repr=False)
    # Each member's pool key, made on its first pick rather than on every one.
    _memberAddresses: dict[MemberState, Address] = field(
        default_factory=dict, init=False, repr=False
    )
    _websocketFactories: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.compressTypes = tuple(t.lower().encode() for t in self.settings.compress)
        self.debug = self.settings.log_level == "debug"

    def websocketFactories(self) -> Any:
        """The Autobahn factories (client leg, backend leg) of every bridge."""
        if self._websocketFactories is None:
            from twisted_proxy.frontends.websocket import legFactories

            settings = self.settings
            server = None if settings.server_tokens == "none" else "twisted-proxy"
            self._websocketFactories = legFactories(
                settings.websocket, server, settings.timeout
            )
        return self._websocketFactories

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
            address = _address(m.scheme, m.host, m.port, m.tls_ca, m.tls_verify)
            self._memberAddresses[state] = address
        return address

    @classmethod
    def create(
        cls,
        settings: ProxySettings,
        reactor: Any,
        balancer: IBalancer | None = None,
        balancers: dict[str, Balancer] | None = None,
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
        )
        # The routes' backends are checked as their resources are made.
        context.checkBackendTLS(balancers=context.balancers.values())
        return context


class _RoutePlan:
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
        self.acl = AccessList(route.allow, route.deny)
        self.label = f"route {route.host or '*'}{route.path}"
        if target.scheme == "balancer":
            self.address: Address | None = None
            upstreamHost = b""
        else:
            self.address = _address(
                target.scheme, target.host, target.port, route.tls_ca, route.tls_verify
            )
            upstreamHost = formatHostPort(target.host, target.port, target.scheme)
        self.requestRewriter = RequestHeaderRewriter(settings, route, upstreamHost)
        self.websocket = route.websocket or target.scheme in ("ws", "wss")
        self.reverseRewriter = ReverseRewriter(
            routePrefixes(route, balancer),
            frontPath,
            route.cookie_domain,
            route.cookie_path,
            reverseTable,
        )


@implementer(IStreamingResource)
class ReverseProxyResource(Resource):
    """
    Relay requests under this resource to a backend or a balancer.

    Mount it anywhere in a twisted.web tree (``root.putChild(b"app", ...)``):
    what follows the mount point is appended to the target's path, byte for
    byte. With L{StreamingRequest} as the Site's request factory, bodies stream
    both ways; with twisted.web's own request the upload is buffered first.

    :param target: a backend URL (``"http://127.0.0.1:3000/"``) or a L{Route}.
    :param context: shared pool/balancer/settings; one of its own if omitted.
    :param reactor: used to build the context when C{context} is omitted.
    :param reverseTable: every route's ProxyPassReverse (for a resource mounted
        at its route), which backend URLs in responses are checked against too.
    """

    isLeaf = True
    streaming = True

    def __init__(
        self,
        target: str | Route,
        context: ProxyContext | None = None,
        *,
        reactor: Any = None,
        settings: ProxySettings | None = None,
        mountedAtRoute: bool = False,
        reverseTable: ReverseTable | None = None,
    ) -> None:
        super().__init__()
        if isinstance(target, str):
            route = Route(path="/", to=parseTarget(target))
        else:
            route = target
        if context is None:
            if reactor is None:
                from twisted.internet import reactor as globalReactor  # noqa: TID251

                reactor = globalReactor
            context = ProxyContext.create(settings or ProxySettings(), reactor)
        self.route = route
        self.context = context
        context.checkBackendTLS(routes=[route])
        self._mountedAtRoute = mountedAtRoute
        self._reverseTable = reverseTable
        self._plans: dict[str, _RoutePlan] = {}
        if mountedAtRoute:
            self._plans[route.path] = self._newPlan(route.path)

    def _newPlan(self, frontPath: str) -> _RoutePlan:
        route = self.route
        balancer = None
        if route.to is not None and route.to.scheme == "balancer":
            balancer = self.context.balancers.get(route.to.host)
        return _RoutePlan(
            route, self.context.settings, frontPath, balancer, self._reverseTable
        )

    # -- IResource / IStreamingResource --

    def render(self, request: Any) -> Any:
        """Relay a request whose body twisted.web has already read."""
        body = b""
        content = getattr(request, "content", None)
        if content is not None:
            content.seek(0)
            body = content.read()
        exchange = self._begin(request, buffered=body)
        if exchange is not None:
            exchange.bodyEnd()
        return NOT_DONE_YET

    def startStream(self, request: ProxiedRequest) -> ProxyExchange | None:
        """Relay a request whose body is still arriving."""
        return self._begin(request, buffered=None)

    # -- the relay --

    def _plan(self, request: Any) -> _RoutePlan:
        if self._mountedAtRoute:
            return self._plans[self.route.path]
        depth = len(request.prepath)
        segments = request.path.split(b"/")[1 : 1 + depth]
        front = ("/" + "/".join(s.decode("latin-1") for s in segments)).rstrip("/")
        front += "/"
        plan = self._plans.get(front)
        if plan is None:
            plan = self._plans[front] = self._newPlan(front)
        return plan

    def _begin(self, request: Any, buffered: bytes | None) -> ProxyExchange | None:
        plan = self._plan(request)
        address = _clientAddress(request)
        if not plan.acl.permits(address):
            _log.info(
                "{label}: {client} refused by allow/deny",
                label=plan.label,
                client=address,
            )
            _respondError(request, 403, "forbidden")
            return None
        try:
            target = targetOf(request, self.context.settings.merge_slashes)
            upstreamPath = upstreamTarget(plan.frontPath, plan.targetPath, target)
        except (TargetError, ValueError) as e:
            # Only under an ordinary twisted.web Site: the proxy's own front
            # ends normalise (and refuse) targets before routing.
            _respondError(request, 400, str(e))
            return None
        if request.method == b"TRACE" and not plan.route.trace:
            _respondError(
                request, 405, "TRACE is not allowed here", [(b"Allow", ALLOWED_METHODS)]
            )
            return None
        if plan.websocket and buffered is None and hasattr(request.channel, "detach"):
            pairs = _headerPairs(request)
            if isUpgrade(request.method, pairs):
                from twisted_proxy.frontends.websocket import WebSocketBridge

                WebSocketBridge(request, plan, self.context, pairs).start()
                return None
        exchange = ProxyExchange(request, plan, self.context, buffered, upstreamPath)
        exchange.start()
        return exchange


def _address(
    scheme: str, host: str, port: int, ca: str | None, verify: bool
) -> Address:
    """The pool's key for a backend: TLS ones carry their policy."""
    wire = _WIRE_SCHEME[scheme]
    policy = TLSPolicy(ca, verify) if wire == "https" else None
    return Address(wire, host, port, policy)


def _scheme(request: Any) -> str:
    """The scheme the client used: asked of the channel once per connection."""
    channel = request.channel
    scheme: str | None = getattr(channel, "scheme", None)
    if scheme is None:
        scheme = "https" if request.isSecure() else "http"
        channel.scheme = scheme
    return scheme


def _listenerPort(request: Any) -> int:
    """The port the client connected to (for X-Forwarded-Port), once per connection."""
    channel = request.channel
    port: int | None = getattr(channel, "listenerPort", None)
    if port is None:
        port = int(getattr(request.getHost(), "port", 0))
        channel.listenerPort = port
    return port


def _headerPairs(request: Any) -> list[tuple[bytes, bytes]]:
    """The request's headers as (name, value) pairs, in order."""
    headers = request.requestHeaders
    pairs = getattr(headers, "pairs", None)
    if pairs is not None:
        return pairs()  # type: ignore[no-any-return]
    # twisted.web's Headers
    return [(n, v) for n, vs in headers.getAllRawHeaders() for v in vs]


def _facts(request: Any, pairs: list[tuple[bytes, bytes]]) -> RequestFacts:
    """What stickiness and hashing may look at in C{request}."""
    return RequestFacts(
        clientAddress=_clientAddress(request),
        target=request.uri,
        header=headerLookup(pairs),
        secure=_scheme(request) == "https",
    )


def _clientAddress(request: Any) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", "") or "")


def _respondError(
    request: Any,
    status: int,
    message: str,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    if isinstance(request, ProxiedRequest):
        request.respondError(status, message, headers)
        return
    body = (message + "\n").encode()
    request.setResponseCode(status)
    for name, value in errorHeaders(None, len(body), headers):
        request.responseHeaders.addRawHeader(name, value)
    request.write(body)
    request.finish()


@implementer(IPushProducer)
class _ClientReader:
    """
    Pauses reading from the client while the backend cannot take more body,
    and tells the backend connection (C{watcher}) so, which times the backend
    only while it holds the upload up.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.paused = False
        self.watcher: UpstreamConnection | None = None

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self._transport.pauseProducing()
        if self.watcher is not None:
            self.watcher.uploadBlocked()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self._transport.resumeProducing()
        if self.watcher is not None:
            self.watcher.uploadFlowing()

    def stopProducing(self) -> None:
        pass


class ProxyExchange:
    """One request relayed to one backend, with flow control both ways."""

    def __init__(
        self,
        request: Any,
        plan: _RoutePlan,
        context: ProxyContext,
        buffered: bytes | None,
        upstreamPath: bytes,
    ) -> None:
        self._request = request
        self._plan = plan
        self._upstreamPath = upstreamPath
        self._context = context
        self._address: Address = plan.address or Address("http", "", 0)
        self._member: MemberState | None = None
        self._tried: list[MemberState] = []
        self._facts: RequestFacts | None = None
        self._waitedForCapacity = False
        self._statusFailure: str | None = None
        self._startTime = 0.0
        self._conn: UpstreamConnection | None = None
        self._connecting: Deferred[UpstreamConnection] | None = None
        self._pending: list[bytes] = []
        self._pendingBytes = 0
        self._replay: list[bytes] | None = []
        self._replayBytes = 0
        self._retried = False
        self._responded = False
        self._done = False
        self._gzip: GzipStream | None = None
        self._gzipPending = False
        self._inBatch = False
        self._reader: _ClientReader | None = None
        self._corked: Any = None
        self._buffered = buffered
        self._readerOn: Any = None
        self.bytesFromBackend = 0
        self._trace = (
            UpstreamTrace(context.reactor, plan.label, request.method, upstreamPath)
            if context.debug
            else None
        )
        self._chunked, self._bodyEnded = self._framing()
        # Only a request the backend may run twice is ever sent twice: an
        # idempotent one without a body (RFC 9110 9.2.2). Any other goes on a
        # fresh connection or one that answered within safe_reuse seconds,
        # and is never sent again once a byte of it reached a connection.
        self._replayable = request.method in _IDEMPOTENT and not self._hasBody
        # Expect: 100-continue goes to the backend, and its 100 to the client.
        self._expectContinue = bool(getattr(request, "expectContinue", False))
        self._continueTimer: Any = None
        self._continued = False
        # A balancer route builds its head once the member (its Host) is known.
        self._head = self._headFor(None) if plan.address is not None else b""
        if buffered:
            self._pending.append(buffered)
            self._replay = [buffered] if len(buffered) <= _REPLAY_LIMIT else None

    def _framing(self) -> tuple[bool, bool]:
        """
        Read the request's headers once: keep them for the head, and work out
        how its body is framed. Returns (chunked, body already complete).
        """
        raw = self._raw = _headerPairs(self._request)
        chunked = False
        length: int | None = None
        for name, value in raw:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = True
        self._length = length
        buffered = self._buffered
        self._hasBody = chunked or bool(length) or bool(buffered)
        if buffered is not None:
            # twisted.web read (and de-chunked) the body already.
            return False, True
        if chunked:
            return True, False
        return False, not length

    def _headFor(self, upstreamHost: bytes | None) -> bytes:
        """The request head as the backend (with that Host) is to get it."""
        request = self._request
        plan = self._plan
        buffered = self._buffered
        hosts = request.requestHeaders.getRawHeaders(b"host")
        client = ClientInfo(
            address=_clientAddress(request),
            scheme=_scheme(request),
            port=_listenerPort(request),
            host=hosts[0] if hosts else None,
        )
        headers = plan.requestRewriter.rewrite(
            self._raw, client, upstreamHost, clientVersion=request.clientproto
        )
        out = []
        for name, value in headers:
            lower = name.lower()
            if lower == b"expect" or (
                lower == b"content-length" and buffered is not None
            ):
                continue
            out.append(b"%s: %s\r\n" % (name, value))
        if self._expectContinue:
            out.append(b"Expect: 100-continue\r\n")
        if buffered is not None:
            if buffered or self._length is not None:
                out.append(b"Content-Length: %d\r\n" % len(buffered))
        elif self._chunked:
            out.append(b"Transfer-Encoding: chunked\r\n")
        return b"%s %s HTTP/1.1\r\n%s\r\n" % (
            request.method,
            self._upstreamPath,
            b"".join(out),
        )

    def start(self) -> None:
        """Get a backend connection and send the request."""
        if isinstance(self._request, ProxiedRequest):
            self._request.whenClientGone(self.clientGone)
        else:
            self._request.notifyFinish().addErrback(lambda _: self.clientGone())
        if self._plan.address is not None or self._choose():
            self._connect(fresh=False)

    def _choose(self) -> bool:
        """
        Ask the balancer for a member (not one tried already); False when the
        request is answered (503) or waits for a member to have room.
        """
        balancer = self._context.balancer
        name = self._plan.target.host
        if self._facts is None:
            self._facts = _facts(self._request, self._raw)
        member = (
            balancer.pick(name, self._facts, self._tried)
            if balancer is not None
            else None
        )
        if member is None:
            if (
                balancer is not None
                and not self._waitedForCapacity
                and balancer.atCapacity(name)
            ):
                # Every member is at max_connections: wait briefly for one.
                self._waitedForCapacity = True
                waiting = balancer.whenCapacity(name, _CAPACITY_WAIT)
                waiting.addCallback(self._capacityWaitOver)
                return False
            _log.error(
                "{label}: no usable member in balancer {name}",
                label=self._plan.label,
                name=name,
            )
            self._done = True
            if isinstance(self._request, ProxiedRequest):
                self._request.whenClientGone(None)
            _respondError(self._request, 503, "no backend available")
            return False
        self._member = member
        self._tried.append(member)
        self._startTime = self._context.reactor.seconds()
        m = member.member
        self._address = self._context.memberAddress(member)
        self._head = self._headFor(formatHostPort(m.host, m.port, m.scheme))
        if balancer is not None and hasattr(self._request, "logEnv"):
            self._request.logEnv = balancer.environment(name, self._facts, member)
        return True

    def _capacityWaitOver(self, released: bool) -> None:
        if not self._done and self._choose():
            self._connect(fresh=False)

    def _connect(self, fresh: bool) -> None:
        if self._trace is not None:
            self._trace.asking()
        maxAge = None if self._replayable else self._context.settings.safe_reuse
        attempt = self._context.pool.acquire(
            self._address, self._connected, self._connectFailed, fresh, maxAge
        )
        if attempt is not None:
            self._connecting = attempt

    def _connected(self, conn: UpstreamConnection, reused: bool) -> None:
        self._connecting = None
        if self._done:
            conn.abort()
            return
        self._conn = conn
        pending = self._pending
        self._pending = []
        self._pendingBytes = 0
        conn.sendRequest(
            self._head,
            self._request.method,
            self,
            self._plan.timeout,
            self._chunked,
            self._bodyEnded,
            pending,
        )
        if self._trace is not None:
            self._trace.connected(conn, reused)
        if self._expectContinue and self._continueTimer is None:
            # The backend may answer 100 (relayed), or refuse the upload with
            # a final status before the client sends it; if it says nothing
            # for continue_timeout, the client is asked for the body anyway.
            self._continueTimer = self._context.reactor.callLater(
                self._context.settings.continue_timeout, self._sendContinue
            )
        if self._bodyEnded:
            if self._chunked:
                conn.finishBody()
            self._stopUploadFlow()
        else:
            self._startUploadFlow(conn)

    def _connectFailed(self, failure: Failure) -> None:
        self._connecting = None
        if self._done or failure.check(CancelledError, ConnectingCancelledError):
            return
        if failure.check(TimeoutError):
            kind = FAIL_TIMEOUT
            detail = f"connect timed out ({failure.getErrorMessage()})"
        elif failure.check(BackendTLSError, BackendCAError):
            # Refused before any byte of the request was sent: like a refused
            # connection, it fails over; a stalled handshake is a timeout.
            kind = (
                FAIL_TIMEOUT if failure.check(HandshakeTimeoutError) else FAIL_CONNECT
            )
            detail = f"TLS failed: {failure.getErrorMessage()}"
        else:
            kind = FAIL_CONNECT
            detail = f"connect failed: {failure.getErrorMessage()}"
        if self._failover(kind, detail):
            return
        self._fail(kind, detail)

    def _failover(self, kind: str, detail: str) -> bool:
        """
        A balancer member could not be reached, so nothing was sent: put it in
        error and try another member, as Apache does (maxattempts), while one
        is left and the body so far can be replayed.
        """
        balancer = self._context.balancer
        member = self._member
        if member is None or balancer is None or self._replay is None:
            return False
        name = self._plan.target.host
        if len(self._tried) > balancer.maxAttempts(name):
            return False
        self._logFailure(detail)
        balancer.release(member, False, failure=kind)
        self._member = None
        self._pending = list(self._replay)
        self._pendingBytes = sum(map(len, self._pending))
        if self._choose():
            self._connect(fresh=False)
        return True

    # -- the request body, as the client sends it --

    def bodyData(self, data: bytes) -> None:
        """Relay a piece of the request body."""
        if self._done:
            return
        replay = self._replay
        if replay is not None:
            self._replayBytes += len(data)
            if self._replayBytes > _REPLAY_LIMIT:
                self._replay = None
            else:
                replay.append(data)
        conn = self._conn
        if conn is not None:
            conn.writeBody(data)
            return
        self._pending.append(data)
        self._pendingBytes += len(data)
        if self._pendingBytes > _PENDING_LIMIT:
            self._clientReader().pauseProducing()

    def bodyEnd(self) -> None:
        """The request body is complete."""
        if self._bodyEnded:
            return
        self._bodyEnded = True
        conn = self._conn
        if conn is not None and not self._done:
            conn.finishBody()
        self._stopUploadFlow()

    def abort(self) -> None:
        """Drop the exchange (the request was refused mid-body)."""
        self._drop()

    def _drop(self) -> bool:
        """End the exchange and cut its backend request; False if already over."""
        if self._done:
            return False
        conn = self._conn
        if self._trace is not None and conn is not None:
            reason = getattr(self._request, "endReason", None) or "client-closed"
            self._traceEnd(self._trace, f"abandoned: {reason}")
        self._finishWith(ok=True)
        if conn is not None:
            conn.abort()
        return True

    # -- the response, as the backend sends it (IResponseSink) --

    def batchStarted(self) -> None:
        self._inBatch = True
        channel = self._request.channel
        if hasattr(channel, "cork"):
            channel.cork()
            self._corked = channel

    def batchEnded(self) -> None:
        self._inBatch = False
        if self._gzipPending:
            # One flush per backend read, not per chunk of a chunked body.
            self._gzipPending = False
            if self._gzip is not None and not self._done:
                self._request.write(self._gzip.flush())
        channel, self._corked = self._corked, None
        if channel is not None:
            channel.uncork()

    def responseStarted(self, status: int, reason: bytes, headers: Headers) -> None:
        request = self._request
        if self._done:
            return
        if self._trace is not None:
            self._trace.responded(status)
        self._responded = True
        if self._expectContinue:
            self._cancelContinue()
            if not self._continued and not request.bodyComplete:
                # A final answer before the body was asked for: the client
                # will not send it, so nothing more on its connection can be
                # told apart from it. Closed after this response.
                abandon(request.channel)
        plan = self._plan
        member = self._member
        balancer = self._context.balancer
        if member is not None and balancer is not None:
            balancerName = plan.target.host
            if balancer.failsOnStatus(balancerName, status):
                self._statusFailure = f"answered {status}"
            if self._facts is not None:
                cookie = balancer.stickyCookie(balancerName, self._facts, member)
                if cookie is not None:
                    headers = [*headers, (b"Set-Cookie", cookie)]
        if plan.reverseRewriter.active:
            hosts = request.requestHeaders.getRawHeaders(b"host")
            frontHost = (
                hosts[0] if hosts else self._context.settings.server_name.encode()
            )
            headers = plan.reverseRewriter.rewriteResponseHeaders(
                headers, _scheme(request), frontHost
            )
        rewriter = getattr(request.channel.site, "responseRewriter", None)
        if rewriter is not None:
            headers = rewriter.rewrite(headers, clientVersion=request.clientproto)
        types = self._context.compressTypes
        if types:
            headers = varyHeaders(types, status, headers)
            accept = request.requestHeaders.getRawHeaders(b"accept-encoding")
            if shouldCompress(
                types, request.method, status, accept[0] if accept else None, headers
            ):
                headers = compressedHeaders(headers)
                if request.method != b"HEAD":
                    self._gzip = GzipStream(self._context.settings.compress_level)
        request.setResponseCode(status, reason or None)
        responseHeaders = request.responseHeaders
        for name, value in headers:
            responseHeaders.addRawHeader(name, value)
        if self._conn is not None:
            request.registerProducer(self._conn, True)
        # Send the head now: a stream (SSE) may not have a body byte for a while.
        request.write(b"")

    def responseData(self, data: bytes) -> None:
        if self._done:
            return
        self.bytesFromBackend += len(data)
        if self._gzip is not None:
            data = self._gzip.compress(data, flush=not self._inBatch)
            self._gzipPending = self._inBatch
        self._request.write(data)

    def responseFinished(self) -> None:
        if self._done:
            return
        request = self._request
        if self._gzip is not None:
            request.write(self._gzip.finish())
        if self._trace is not None:
            self._traceEnd(self._trace, "answered")
        self._finishWith(ok=True)
        if isinstance(request, ProxiedRequest):
            request.finishResponse()
        else:
            request.finish()

    def responseFailed(self, kind: str, detail: str, retryable: bool) -> None:
        if self._done:
            return
        if self._trace is not None:
            self._traceEnd(self._trace, f"failed: {detail}")
        self._conn = None
        if retryable and not self._retried and self._replayable:
            # It failed on a reused connection before any of an answer (the
            # backend had closed it while idle, or left bytes on it): one
            # more try, fresh, on the same member, outside max_attempts.
            self._retried = True
            self._unregisterResponseProducer()
            self._stopUploadFlow()
            self._pending = []
            self._connect(fresh=True)
            return
        if kind == FAIL_RESET and not self._responded and self._replayable:
            # The member dropped a request that may run twice before
            # answering: another member may answer it instead.
            self._unregisterResponseProducer()
            if self._failover(kind, detail):
                return
        if retryable:
            method = self._request.method.decode("latin-1")
            detail += f"; not sent again ({method}{' with a body' * self._hasBody})"
        self._fail(kind, detail)

    # -- Expect: 100-continue --

    def interimResponse(self, status: int) -> None:
        """The backend answered 100 Continue: the client may send its body."""
        if self._trace is not None:
            self._trace.responded(status)
        if status == 100:
            self._sendContinue()

    def _sendContinue(self) -> None:
        timer, self._continueTimer = self._continueTimer, True
        if timer is True:
            return
        if timer is not None and timer.active():
            timer.cancel()
        request = self._request
        if not self._done and not self._responded and not request.bodyComplete:
            self._continued = True
            request.sendContinue()

    def _cancelContinue(self) -> None:
        timer, self._continueTimer = self._continueTimer, True
        if timer is not None and timer is not True and timer.active():
            timer.cancel()

    # -- endings --

    def clientGone(self) -> None:
        """
        The client's side ended (the client left, or the proxy cut it): drop
        the backend request, never reuse its connection.
        """
        if not self._drop():
            return
        why = _CLIENT_CUT.get(
            getattr(self._request, "endReason", None) or "",
            "client went away before the response ended",
        )
        _log.info("{label}: {why}", label=self._plan.label, why=why)

    def _traceEnd(self, trace: UpstreamTrace, outcome: str) -> None:
        """Log this attempt at debug level (log_level = "debug")."""
        member = self._member
        trace.ended(
            outcome,
            backend=member.name if member else "{}://{}:{}".format(*self._address),
            balancer=f"balancer://{self._plan.target.host}" if member else None,
            route=member.member.route if member else None,
            bytesIn=self.bytesFromBackend,
            bytesOut=len(self._head) + getattr(self._request, "bytesIn", 0),
        )

    def _logFailure(self, detail: str) -> None:
        memberName = self._member.name if self._member is not None else None
        _log.error(
            "{label} member {member}: {detail}",
            label=self._plan.label,
            member=memberName or "{}://{}:{}".format(*self._address),
            detail=detail,
        )

    def _fail(self, kind: str, detail: str) -> None:
        request = self._request
        self._logFailure(detail)
        self._finishWith(ok=False, failure=kind)
        if self._responded:
            # Part of the response is out: the client must see it cut short.
            if isinstance(request, ProxiedRequest):
                request.abortConnection(_CUT_BY.get(kind, END_BACKEND_ERROR))
            else:
                request.channel.transport.abortConnection()
            return
        if kind == FAIL_TIMEOUT:
            _respondError(request, 504, "backend did not answer in time")
        else:
            _respondError(request, 502, "backend unavailable")

    def _finishWith(self, ok: bool, failure: str | None = None) -> None:
        self._done = True
        self._cancelContinue()
        self._unregisterResponseProducer()
        self._stopUploadFlow()
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        if isinstance(self._request, ProxiedRequest):
            self._request.whenClientGone(None)
        balancer = self._context.balancer
        if self._member is not None and balancer is not None:
            if ok and self._statusFailure is not None:
                ok, failure = False, self._statusFailure
            balancer.release(
                self._member,
                ok,
                bytesIn=self.bytesFromBackend,
                bytesOut=getattr(self._request, "bytesIn", 0),
                failure=failure,
                elapsed=self._context.reactor.seconds() - self._startTime,
            )
            self._member = None

    def _unregisterResponseProducer(self) -> None:
        request = self._request
        if request.producer is not None and request.channel is not None:
            request.unregisterProducer()

    def _clientReader(self) -> _ClientReader:
        if self._reader is None:
            self._reader = _ClientReader(self._request.channel.transport)
        return self._reader

    def _startUploadFlow(self, conn: UpstreamConnection) -> None:
        reader = self._clientReader()
        reader.watcher = conn
        conn.transport.registerProducer(reader, True)
        self._readerOn = conn.transport
        reader.resumeProducing()

    def _stopUploadFlow(self) -> None:
        if self._readerOn is not None:
            transport, self._readerOn = self._readerOn, None
            if getattr(transport, "producer", None) is self._reader:
                transport.unregisterProducer()
        if self._reader is not None:
            self._reader.watcher = None
            if not self._request.clientGone:
                self._reader.resumeProducing()
