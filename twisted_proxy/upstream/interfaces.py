"""
What a backend connection (L{twisted_proxy.upstream.client}) is keyed by,
reports to: the L{Address} the pool keys connections by, the failure
kinds, and the sink a response is handed to (the exchange).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from typing import Protocol as TypingProtocol

from twisted_proxy.config.schemes import BACKEND_SCHEMES, isTLS
from twisted_proxy.core.response import Headers
from twisted_proxy.tls.backend import TLSPolicy

__all__ = [
    "FAILURE_WORDS",
    "FAIL_CONNECT",
    "FAIL_PROTOCOL",
    "FAIL_RESET",
    "FAIL_TIMEOUT",
    "Address",
    "IBackendConnection",
    "IResponseSink",
]


class Address(NamedTuple):
    """
    A backend as the pool keys its connections: where it is and, for https,
    how its certificate is checked, so a connection verified under one
    policy is never lent to a route with another.
    """

    scheme: str
    """C{http}, C{https} or C{ajp} (what is spoken on the wire)."""
    host: str
    port: int
    tls: TLSPolicy | None = None
    """For https: the policy (None: verified against the system trust store)."""

    @property
    def overTLS(self) -> bool:
        """Whether the connection speaks TLS (an https or wss backend)."""
        return self.scheme in BACKEND_SCHEMES and isTLS(self.scheme)


# How a request to a backend failed, as the exchange and the balancer see it.
FAIL_CONNECT = "connect"
FAIL_RESET = "reset"
FAIL_TIMEOUT = "timeout"
FAIL_PROTOCOL = "protocol"

FAILURE_WORDS = {
    FAIL_CONNECT: "connect failed",
    FAIL_RESET: "connection reset",
    FAIL_TIMEOUT: "timed out",
    FAIL_PROTOCOL: "broke the protocol",
}
"""The failure kinds as the log says them (any other reason is logged as it is)."""


class IResponseSink(TypingProtocol):
    """What a backend connection reports a response to."""

    def responseStarted(self, status: int, reason: bytes, headers: Headers) -> None:
        """The status line and headers arrived."""

    def responseData(self, data: bytes) -> None:
        """A piece of the (de-chunked) body arrived."""

    def responseFinished(self) -> None:
        """The whole response arrived."""

    def batchStarted(self) -> None:
        """Bytes from the backend are being handed over: hold the client's writes."""

    def batchEnded(self) -> None:
        """That batch is done: write what it produced."""

    def responseFailed(self, kind: str, detail: str, retryable: bool) -> None:
        """
        The exchange failed: C{kind} is one of the C{FAIL_*} names;
        C{retryable} says it failed on a reused connection before any of a
        response arrived (closed, reset, or bytes that start no response), so
        the backend may well not have seen the request: one more try on a
        fresh connection is safe for a request that may be sent twice.
        """

    def interimResponse(self, status: int) -> None:
        """An interim 1xx response arrived (a 100 Continue, say)."""

    def spliceTarget(self) -> tuple[Any, Any, bool] | None:
        """
        Where the rest of the body may be spliced to (L{BodySplice}): the
        client's TCP transport, with nothing queued on it and the body to be
        written as it arrives; the producer to pause while the client's
        socket is full; whether the client's transport reads again after.
        None when the body must pass through Python.
        """

    def responseMoved(self, count: int) -> None:
        """C{count} bytes of the body went to the client's socket, spliced."""


class IBackendConnection(TypingProtocol):
    """
    One pooled connection to a backend, as the pool and an exchange use
    it: an HTTP/1.1 one (L{twisted_proxy.upstream.client}) or an AJP13 one
    (L{twisted_proxy.upstream.ajp}).
    """

    address: Address
    transport: Any
    lastUsed: float
    """When its last response ended (the pool's clock)."""
    connectedAt: float
    requestsSent: int

    @property
    def lost(self) -> bool:
        """Whether the connection is closed."""

    def whenReady(self) -> Any:
        """A Deferred firing with the connection once it can carry a request."""

    def whenLost(self) -> Any:
        """A Deferred firing once the connection is closed."""

    def sendRequest(
        self,
        head: bytes,
        method: bytes,
        sink: IResponseSink,
        timeout: float,
        chunked: bool,
        bodyDone: bool,
        body: list[bytes] | None = None,
    ) -> None:
        """Send a request's head and the start of its body."""

    def writeBody(self, data: bytes) -> None:
        """Send a piece of the request body."""

    def finishBody(self) -> None:
        """The request body is complete."""

    def uploadBlocked(self) -> None:
        """The client's reading was paused for this connection."""

    def uploadFlowing(self) -> None:
        """The client's reading was resumed."""

    def uploadConsumer(self) -> Any:
        """
        What the client's reading registers with as a streaming producer,
        to be paused while the connection cannot take more of the body.
        """

    def abort(self) -> None:
        """Give up on this exchange: drop the connection."""

    def idleFor(self, seconds: float) -> None:
        """Pooled: closed after C{seconds} idle."""

    def unpooled(self) -> None:
        """The pool let go of the connection."""

    def pauseProducing(self) -> None:
        """The client is full: stop reading the response."""

    def resumeProducing(self) -> None:
        """The client has room again."""

    def stopProducing(self) -> None:
        """The client is gone."""
