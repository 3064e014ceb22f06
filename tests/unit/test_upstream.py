"""The backend connection and its pool, on StringTransport and a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy.core.response import Headers
from twisted_proxy.upstream.client import UpstreamConnection
from twisted_proxy.upstream.interfaces import (
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
)
from twisted_proxy.upstream.pool import UpstreamPool

ADDRESS = Address("http", "127.0.0.1", 9000)


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects at once to a StringTransport, or fails if told to."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.connected: list[UpstreamConnection] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.fail:
            return fail(Failure(ConnectionRefusedError()))
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        self.connected.append(proto)
        return succeed(proto)


class Sink:
    """Records what a connection reports."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: Headers = []
        self.body = b""
        self.finished = False
        self.failed: tuple[str, str, bool] | None = None
        self.interim: list[int] = []

    def interimResponse(self, status: int) -> None:
        self.interim.append(status)

    def responseStarted(self, status: int, reason: bytes, headers: Headers) -> None:
        self.status = status
        self.headers = headers

    def responseData(self, data: bytes) -> None:
        self.body += data

    def responseFinished(self) -> None:
        self.finished = True

    def responseFailed(self, kind: str, detail: str, retryable: bool) -> None:
        self.failed = (kind, detail, retryable)

    batches = 0
    inBatch = False

    def batchStarted(self) -> None:
        assert not self.inBatch
        self.inBatch = True

    def batchEnded(self) -> None:
        self.inBatch = False
        self.batches += 1

    spliceAsked = 0

    def spliceTarget(self) -> tuple[Any, Any, bool] | None:
        self.spliceAsked += 1
        return None

    def responseMoved(self, count: int) -> None:
        raise AssertionError("nothing is spliced without a TCP transport")


def makePool(**kw: Any) -> tuple[UpstreamPool, FakeEndpoint, Clock]:
    clock = Clock()
    endpoint = FakeEndpoint()
    pool = UpstreamPool(
        None,  # type: ignore[arg-type]
        clock,
        endpointFactory=lambda address: endpoint,
        **kw,
    )
    return pool, endpoint, clock


def acquire(pool: UpstreamPool) -> tuple[UpstreamConnection, bool]:
    got: list[tuple[Any, bool]] = []
    pool.acquire(ADDRESS, lambda c, r: got.append((c, r)), lambda f: None)
    return got[0]


def test_eachConnectionConnectsInItsOwnTimeout() -> None:
    """
    Without an endpoint factory, a connection is made with the timeout it
    was asked with (a route's connect_timeout), else with the pool's.
    """
    reactor = MemoryReactorClock()
    pool = UpstreamPool(reactor, reactor, connectTimeout=5.0)
    for timeout in (2.5, None, 2.5):
        pool.acquire(ADDRESS, lambda c, r: None, lambda f: None, True, None, timeout)
    assert [(host, port, t) for host, port, _, t, _ in reactor.tcpClients] == [
        ("127.0.0.1", 9000, 2.5),
        ("127.0.0.1", 9000, 5.0),
        ("127.0.0.1", 9000, 2.5),
    ]
    pool.closeAll()


def test_requestAndResponseThenPooled() -> None:
    """The head goes out; the response comes back; the connection is kept idle."""
    pool, _endpoint, clock = makePool()
    conn, reused = acquire(pool)
    assert not reused
    sink = Sink()
    conn.sendRequest(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", b"GET", sink, 5.0, False, True
    )
    assert conn.transport.value() == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert (sink.status, sink.body, sink.finished) == (200, b"ok", True)
    assert sink.batches == 1
    assert not sink.inBatch
    assert pool.idleCount(ADDRESS) == 1
    again, reused = acquire(pool)
    assert again is conn
    assert reused
    # One timer per connection, re-aimed from idle TTL to response timeout.
    assert len(clock.getDelayedCalls()) == 1
    again.abort()
    assert clock.getDelayedCalls() == []


def test_longBodyOverNonTCPTransportPassesThroughPython() -> None:
    """
    A body long enough to splice, on a transport that is not a TCP socket
    (TLS, a test's), is handed over piece by piece as ever.
    """
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 5.0, False, True)
    size = 4 * 1024 * 1024
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(size // 65536):
        conn.dataReceived(b"x" * 65536)
    assert (len(sink.body), sink.finished, sink.spliceAsked) == (size, True, 0)
    assert pool.idleCount(ADDRESS) == 1


def test_chunkedRequestBody() -> None:
    """A body of unknown length is sent chunked and terminated."""
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(b"POST / HTTP/1.1\r\n\r\n", b"POST", Sink(), 5.0, True, False)
    conn.transport.clear()
    conn.writeBody(b"hello")
    conn.finishBody()
    assert conn.transport.value() == b"5\r\nhello\r\n0\r\n\r\n"
    conn.abort()


def test_requestHeadAndBodyInOneWrite() -> None:
    """A body already in hand goes out with the head, framed."""
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(
        b"POST / HTTP/1.1\r\n\r\n", b"POST", Sink(), 5.0, True, False, [b"ab", b"c"]
    )
    assert conn.transport.value() == b"POST / HTTP/1.1\r\n\r\n2\r\nab\r\n1\r\nc\r\n"
    conn.abort()


def test_idleConnectionExpires() -> None:
    """An idle connection is closed after the pool's time-to-live."""
    pool, _endpoint, clock = makePool(idleTTL=30.0)
    conn, _ = acquire(pool)
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    clock.advance(29)
    assert pool.idleCount(ADDRESS) == 1
    clock.advance(1)
    assert pool.idleCount(ADDRESS) == 0
    assert conn.transport.disconnecting


def test_idleLimit() -> None:
    """Beyond maxIdle, a finished connection is closed instead of kept."""
    pool, _endpoint, _clock = makePool(maxIdle=1)
    a, _ = acquire(pool)
    b, _ = acquire(pool)
    for conn in (a, b):
        conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", Sink(), 5.0, False, True)
    a.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    b.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert pool.idleCount(ADDRESS) == 1
    assert b.transport.disconnecting
    assert not a.transport.disconnecting
    a.abort()


def test_connectionCloseNotPooled() -> None:
    """A response saying Connection: close is not followed by reuse."""
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    assert pool.idleCount(ADDRESS) == 0
    assert conn.transport.disconnecting


def test_responseTimeout() -> None:
    """No answer within the timeout: the sink hears 'timeout' and the link is cut."""
    pool, _endpoint, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 10.0, False, True)
    clock.advance(9)
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    clock.advance(9)
    assert sink.failed is None
    clock.advance(1)
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_TIMEOUT
    assert conn.transport.disconnected


def test_pausedBySlowClientStopsTheClock() -> None:
    """While the client cannot take more, the backend's silence is not a timeout."""
    pool, _endpoint, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 10.0, False, True)
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    conn.pauseProducing()
    assert conn.transport.producerState == "paused"
    clock.advance(100)
    assert sink.failed is None
    conn.resumeProducing()
    conn.dataReceived(b"cde")
    assert sink.finished
    assert sink.body == b"abcde"


def test_staleReusedConnectionIsRetryable() -> None:
    """A reused connection closed before any response byte is reported retryable."""
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    again, _reused = acquire(pool)
    sink = Sink()
    again.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 5.0, False, True)
    again.connectionLost(Failure(ConnectionDone()))
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_RESET
    assert sink.failed[2] is True


def test_firstRequestResetIsNotRetryable() -> None:
    """A fresh connection that dies is a real failure, not a stale one."""
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 5.0, False, True)
    conn.connectionLost(Failure(ConnectionDone()))
    assert sink.failed is not None
    assert sink.failed[2] is False


def test_connectFailureReported() -> None:
    """A refused connection reaches the failure callback."""
    pool, endpoint, _clock = makePool()
    endpoint.fail = True
    failures: list[Failure] = []
    pool.acquire(ADDRESS, lambda c, r: None, failures.append)
    assert failures
    assert failures[0].check(ConnectionRefusedError)


def test_garbageFromBackendIsProtocolError() -> None:
    """A response that is not HTTP fails the exchange and drops the connection."""
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 5.0, False, True)
    conn.dataReceived(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert sink.failed is not None
    assert sink.failed[0] == "protocol"
    assert conn.transport.disconnected


def test_unrequested101FailsAndIsNeverPooled() -> None:
    """A 101 nobody asked for fails the exchange; its connection is cut, not kept."""
    pool, _endpoint, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 5.0, False, True)
    conn.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
    assert sink.status is None
    assert sink.failed == (
        FAIL_PROTOCOL,
        "bad response from backend: unrequested 101 Switching Protocols",
        False,
    )
    assert conn.transport.disconnected
    assert pool.idleCount(ADDRESS) == 0
    assert clock.getDelayedCalls() == []
    again, reused = acquire(pool)
    assert again is not conn
    assert not reused
    again.abort()


def test_moreThanTheResponseIsNeverPooled() -> None:
    """Bytes after the end of a response: it is relayed, the connection closed."""
    pool, _endpoint, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 5.0, False, True)
    conn.dataReceived(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge"
    )
    assert (sink.status, sink.body, sink.finished) == (200, b"ok", True)
    assert pool.idleCount(ADDRESS) == 0
    assert conn.transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_uploadTimedOnlyWhileTheBackendHoldsItUp() -> None:
    """
    While the body waits on the client the backend is not timed; once our
    buffer to it is full (it takes nothing), its timeout runs: 504-worthy.
    """
    pool, _endpoint, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"PUT / HTTP/1.1\r\n\r\n", b"PUT", sink, 2.0, True, False)
    clock.advance(100)
    assert sink.failed is None
    conn.writeBody(b"x")
    conn.uploadBlocked()
    clock.advance(1.9)
    assert sink.failed is None
    clock.advance(0.1)
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_TIMEOUT
    assert "took none of the request body for 2s" in sink.failed[1]
    assert conn.transport.disconnected


def test_aSteadyUploadIsNeverCut() -> None:
    """
    A backend that keeps taking the body (blocked, then flowing, again and
    again) is never timed out however long the upload lasts; once the body
    is all sent, its answer is due within the timeout.
    """
    pool, _endpoint, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"PUT / HTTP/1.1\r\n\r\n", b"PUT", sink, 2.0, True, False)
    for _ in range(100):
        conn.writeBody(b"x" * 65536)
        conn.uploadBlocked()
        clock.advance(1.5)
        conn.uploadFlowing()
    assert clock.seconds() == 150
    assert sink.failed is None
    conn.finishBody()
    clock.advance(1.9)
    assert sink.failed is None
    clock.advance(0.1)
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_TIMEOUT
    assert "no answer from backend within 2s" in sink.failed[1]


def test_earlyAnswerDuringUploadTimesTheResponse() -> None:
    """Response bytes while the body is still going: the backend is answering."""
    pool, _endpoint, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"PUT / HTTP/1.1\r\n\r\n", b"PUT", sink, 2.0, True, False)
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    clock.advance(1.9)
    conn.dataReceived(b"c")
    clock.advance(1.9)
    assert sink.failed is None
    clock.advance(0.1)
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_TIMEOUT


def test_maxAgeReusesOnlyARecentConnection() -> None:
    """
    With maxAge (safe_reuse), an idle connection is lent only if its last
    response ended less than that long ago; otherwise a fresh one is made,
    and the older one stays for requests without the limit.
    """
    pool, endpoint, clock = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    clock.advance(0.5)
    got: list[tuple[Any, bool]] = []
    pool.acquire(ADDRESS, lambda c, r: got.append((c, r)), lambda f: None, False, 1.0)
    assert got == [(conn, True)]
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    clock.advance(1.0)
    pool.acquire(ADDRESS, lambda c, r: got.append((c, r)), lambda f: None, False, 1.0)
    fresh, reused = got[1]
    assert fresh is not conn
    assert not reused
    assert len(endpoint.connected) == 2
    assert acquire(pool) == (conn, True)
    conn.abort()
    fresh.abort()


def test_leftoverBytesOnAReusedConnectionAreRetryable() -> None:
    """
    Bytes that start no response on a reused connection are most likely the
    last response's leftovers: reported retryable (the exchange retries what
    may run twice). On a fresh connection they are the backend's own answer.
    """
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    first = Sink()
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", first, 5.0, False, True)
    conn.dataReceived(b"junk\r\n\r\n")
    assert first.failed is not None
    assert first.failed[0] == FAIL_PROTOCOL
    assert first.failed[2] is False
    conn, _ = acquire(pool)
    conn.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    again, reused = acquire(pool)
    assert reused
    sink = Sink()
    again.sendRequest(b"GET / HTTP/1.1\r\n\r\n", b"GET", sink, 5.0, False, True)
    again.dataReceived(b"stray bytes\r\n\r\n")
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_PROTOCOL
    assert sink.failed[2] is True


def test_interimContinueReported() -> None:
    """A 100 Continue is reported to the exchange, and the final answer follows."""
    pool, _endpoint, _clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(b"PUT / HTTP/1.1\r\n\r\n", b"PUT", sink, 5.0, False, False)
    conn.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert sink.interim == [100]
    assert not sink.finished
    conn.writeBody(b"ab")
    conn.finishBody()
    conn.dataReceived(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert (sink.status, sink.finished) == (201, True)
