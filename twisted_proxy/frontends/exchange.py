"""
One request relayed to one backend: the head sent, the body streamed up
(L{Upload}), the response streamed down with each side the producer the other
pauses, and the backend reached through a L{Lease} (member choice, failover,
release).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_proxy.balancer.lease import Lease, connectFailure
from twisted_proxy.core.ajp import AJPError
from twisted_proxy.core.compress import GzipStream
from twisted_proxy.core.headers import formatHostPort
from twisted_proxy.core.logformat import (
    END_BACKEND_CLOSED,
    END_BACKEND_ERROR,
    END_BACKEND_TIMEOUT,
    END_SEND_TIMEOUT,
    END_SHUTDOWN_GRACE,
)
from twisted_proxy.core.response import Headers
from twisted_proxy.frontends.ajprequest import ajpHead
from twisted_proxy.frontends.bodies import (
    Upload,
    requestFraming,
    requestHead,
    responseHead,
)
from twisted_proxy.frontends.clientinfo import (
    clientInfo,
    headerPairs,
    requestFacts,
    respondError,
)
from twisted_proxy.frontends.context import ProxyContext, RoutePlan
from twisted_proxy.frontends.request import ProxiedRequest, abandon
from twisted_proxy.upstream.interfaces import (
    FAIL_CONNECT,
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
    IBackendConnection,
)
from twisted_proxy.upstream.trace import UpstreamTrace

__all__ = ["IDEMPOTENT", "ProxyExchange"]

_log = Logger()

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"TRACE", b"PUT"})
"""Methods whose request may be sent again when a member dropped it unanswered
(RFC 9110 9.2.2), and only when it has no body."""

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


class ProxyExchange:
    """One request relayed to one backend, with flow control both ways."""

    def __init__(
        self,
        request: Any,
        plan: RoutePlan,
        context: ProxyContext,
        buffered: bytes | None,
        upstreamPath: bytes,
    ) -> None:
        self._request = request
        self._plan = plan
        self._upstreamPath = upstreamPath
        self._context = context
        self._address: Address = plan.address or Address("http", "", 0)
        self._conn: IBackendConnection | None = None
        self._connecting: Deferred[IBackendConnection] | None = None
        self._responded = False
        self._done = False
        self._gzip: GzipStream | None = None
        self._gzipPending = False
        self._inBatch = False
        self._corked: Any = None
        self._buffered = buffered
        self.bytesFromBackend = 0
        self._trace = (
            UpstreamTrace(context.reactor, plan.label, request.method, upstreamPath)
            if context.debug
            else None
        )
        self._raw = headerPairs(request)
        self._chunked, self._bodyEnded, self._length, self._hasBody = requestFraming(
            self._raw, buffered
        )
        # Only a request the backend may run twice is ever sent twice: an
        # idempotent one without a body (RFC 9110 9.2.2). Any other goes on a
        # fresh connection or one that answered within safe_reuse seconds,
        # and is never sent again once a byte of it reached a connection.
        self._replayable = request.method in IDEMPOTENT and not self._hasBody
        # Expect: 100-continue goes to the backend, and its 100 to the client.
        self._expectContinue = bool(getattr(request, "expectContinue", False))
        self._continueTimer: Any = None
        self._continued = False
        # A balancer route builds its head once the member (its Host) is known.
        self._headError: str | None = None
        self._head = self._headFor(None) if plan.address is not None else b""
        self._upload = Upload(request, buffered)
        balancer = plan.address is None
        # What the request says only where a pick reads it: sticky, hash.
        facts = None
        service = context.balancer
        if balancer and service is not None and service.readsRequests(plan.target.host):
            facts = requestFacts(request, self._raw)
        self._lease = Lease(
            self,
            context.reactor,
            plan.label,
            address=plan.address,
            balancer=context.balancer if balancer else None,
            balancerName=plan.target.host,
            facts=facts,
            memberAddress=context.memberAddress,
            traffic=context.traffic,
        )

    def _headFor(self, upstreamHost: bytes | None) -> bytes:
        """
        The request head as the backend (with that Host) is to get it; for
        an AJP backend that cannot be sent it, nothing (and why, in
        C{_headError}).
        """
        request = self._request
        headers = self._plan.requestRewriter.rewrite(
            self._raw,
            clientInfo(request),
            upstreamHost,
            clientVersion=request.clientproto,
        )
        if self._plan.ajp:
            member = self._lease.member if upstreamHost is not None else None
            backend = member.member if member is not None else self._plan.route
            try:
                return ajpHead(
                    request,
                    self._upstreamPath,
                    headers,
                    (self._buffered, self._length, self._chunked),
                    self._context.settings.server_name.encode(),
                    backend,
                )
            except AJPError as e:
                self._headError = str(e)
                return b""
        return requestHead(
            request.method,
            self._upstreamPath,
            headers,
            self._buffered,
            self._length,
            self._chunked,
            self._expectContinue,
        )

    def start(self) -> None:
        """Get a backend connection and send the request."""
        if isinstance(self._request, ProxiedRequest):
            self._request.whenClientGone(self.clientGone)
        else:
            self._request.notifyFinish().addErrback(lambda _: self.clientGone())
        if self._headError is not None:
            self._unsendable()
            return
        self._lease.start()

    def _unsendable(self) -> None:
        """The head does not fit an AJP packet: 431, and no member is blamed."""
        label, why = self._plan.label, self._headError
        _log.warn("{label}: request not sent: {why}", label=label, why=why)
        self._finishWith(ok=True)
        respondError(
            self._request, 431, "request headers too large for the AJP backend"
        )

    # -- the lease's holder --

    def attempt(self, address: Address) -> None:
        """Send the request to C{address} (a balancer member's, once picked)."""
        member = self._lease.member
        if member is not None:
            m = member.member
            self._address = address
            if hasattr(self._request, "logEnv"):
                self._request.logEnv = self._lease.environment()
            self._head = self._headFor(formatHostPort(m.host, m.port, m.scheme))
            if self._headError is not None:
                self._unsendable()
                return
        self._connect(fresh=False)

    def unavailable(self) -> None:
        """No balancer member can take the request: 503."""
        self._done = True
        if isinstance(self._request, ProxiedRequest):
            self._request.whenClientGone(None)
        respondError(self._request, 503, "no backend available")

    def _connect(self, fresh: bool) -> None:
        if self._trace is not None:
            self._trace.asking()
        # An AJP connection idle longer than safe_reuse is asked (CPING)
        # before it carries any request (see UpstreamPool.acquire).
        safeReuse = self._context.settings.safe_reuse
        maxAge = None if self._replayable and not self._plan.ajp else safeReuse
        timeout = self._plan.connectTimeout
        attempt = self._context.pool.acquire(
            self._address, self._connected, self._connectFailed, fresh, maxAge, timeout
        )
        if attempt is not None:
            self._connecting = attempt

    def _connected(self, conn: IBackendConnection, reused: bool) -> None:
        self._connecting = None
        if self._done:
            conn.abort()
            return
        self._conn = conn
        pending = self._upload.take()
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
        if self._expectContinue and self._plan.ajp:
            # AJP has no interim answers: the body is asked for as the
            # container reads it, so the client may send it now.
            self._sendContinue()
        elif self._expectContinue and self._continueTimer is None:
            # The backend may answer 100 (relayed), or refuse the upload with
            # a final status before the client sends it; if it says nothing
            # for continue_timeout, the client is asked for the body anyway.
            self._continueTimer = self._context.reactor.callLater(
                self._context.settings.continue_timeout, self._sendContinue
            )
        if self._bodyEnded:
            if self._chunked:
                conn.finishBody()
            self._upload.stop()
        else:
            self._upload.flowTo(conn)

    def _connectFailed(self, failure: Failure) -> None:
        self._connecting = None
        failed = connectFailure(failure)
        if self._done or failed is None:
            return
        kind, detail = failed
        if self._failover(kind, detail):
            return
        self._fail(kind, detail)

    def _failover(self, kind: str, detail: str) -> bool:
        """
        A balancer member could not be reached, so nothing was sent: put it in
        error and try another member, as Apache does (maxattempts), while one
        is left and the body so far can be replayed.
        """
        upload = self._upload
        if not self._lease.canFailOver(upload.replayable):
            return False
        self._logFailure(detail)
        upload.rewind()
        self._lease.failOver(kind)
        return True

    # -- the request body, as the client sends it --

    def bodyData(self, data: bytes) -> None:
        """Relay a piece of the request body."""
        if self._done:
            return
        self._upload.data(data, self._conn)

    def bodyEnd(self) -> None:
        """The request body is complete."""
        if self._bodyEnded:
            return
        self._bodyEnded = True
        conn = self._conn
        if conn is not None and not self._done:
            conn.finishBody()
        self._upload.stop()

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
        lease = self._lease
        if lease.member is not None:
            lease.answered(status)
            cookie = lease.stickyCookie()
            if cookie is not None:
                headers = [*headers, (b"Set-Cookie", cookie)]
        headers, self._gzip = responseHead(
            request, plan, self._context, status, headers
        )
        request.setResponseCode(status, reason or None)
        responseHeaders = request.responseHeaders
        extend = getattr(responseHeaders, "extend", None)
        if extend is not None:
            extend(headers)
        else:
            # twisted.web's Headers (a request of an ordinary Site).
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

    def spliceTarget(self) -> tuple[Any, Any, bool] | None:
        request = self._request
        if self._done or self._gzip is not None or not request.bodyComplete:
            return None
        target = getattr(request, "spliceTarget", None)
        return None if target is None else target()

    def responseMoved(self, count: int) -> None:
        self.bytesFromBackend += count
        self._request.sentLength += count

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
        if retryable and self._replayable and self._lease.retryFresh():
            # It failed on a reused connection before any of an answer (the
            # backend had closed it while idle, or left bytes on it): one
            # more try, fresh, on the same member, outside max_attempts.
            self._unregisterResponseProducer()
            self._upload.stop()
            self._upload.take()
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
        member = self._lease.member
        trace.ended(
            outcome,
            backend=member.name if member else "{}://{}:{}".format(*self._address),
            balancer=f"balancer://{self._plan.target.host}" if member else None,
            route=member.member.route if member else None,
            bytesIn=self.bytesFromBackend,
            bytesOut=len(self._head) + getattr(self._request, "bytesIn", 0),
        )

    def _logFailure(self, detail: str) -> None:
        member = self._lease.member
        memberName = member.name if member is not None else None
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
            respondError(request, 504, "backend did not answer in time")
        else:
            respondError(request, 502, "backend unavailable")

    def _finishWith(self, ok: bool, failure: str | None = None) -> None:
        self._done = True
        self._cancelContinue()
        self._unregisterResponseProducer()
        self._upload.stop()
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        if isinstance(self._request, ProxiedRequest):
            self._request.whenClientGone(None)
        self._lease.release(
            ok,
            failure,
            bytesIn=self.bytesFromBackend,
            bytesOut=getattr(self._request, "bytesIn", 0),
            timed=True,
        )

    def _unregisterResponseProducer(self) -> None:
        request = self._request
        if request.producer is not None and request.channel is not None:
            request.unregisterProducer()
