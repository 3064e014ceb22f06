"""
The AJP13 backend connection and the pool's CPING before reuse, on
StringTransport and a Clock: what the container is sent (read back packet
by packet), what the exchange is told, when the connection is kept.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.unit.test_upstream import FakeEndpoint, Sink
from twisted_proxy.core.ajp import CPING, END_OF_BODY, MAX_BODY_CHUNK, bodyPacket
from twisted_proxy.upstream.ajp import BODY_HELD, AJPConnection
from twisted_proxy.upstream.interfaces import (
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
)
from twisted_proxy.upstream.pool import UpstreamPool

ADDRESS = Address("ajp", "127.0.0.1", 8009)
FORWARD = b"\x12\x34\x00\x03\x02\x02\xff"
"""Stands for a FORWARD_REQUEST packet: the connection sends it as it is."""


def s(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value + b"\x00"


def i(value: int) -> bytes:
    return struct.pack("!H", value)


def packet(body: bytes) -> bytes:
    return b"AB" + i(len(body)) + body


def headers(
    status: int = 200, reason: bytes = b"OK", *pairs: tuple[bytes, bytes]
) -> bytes:
    fields = b"".join(s(name) + s(value) for name, value in pairs)
    return packet(b"\x04" + i(status) + s(reason) + i(len(pairs)) + fields)


def chunk(data: bytes) -> bytes:
    return packet(b"\x03" + i(len(data)) + data + b"\x00")


def getBody(size: int) -> bytes:
    return packet(b"\x06" + i(size))


END = packet(b"\x05\x01")
END_NO_REUSE = packet(b"\x05\x00")
CPONG = packet(b"\x09")


class Producer:
    """The client's reading, as the connection's upload consumer sees it."""

    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


def makePool(**kw: Any) -> tuple[UpstreamPool, FakeEndpoint, Any]:
    from twisted.internet.task import Clock

    clock = Clock()
    endpoint = FakeEndpoint()
    pool = UpstreamPool(
        None,  # type: ignore[arg-type]
        clock,
        endpointFactory=lambda address: endpoint,
        **kw,
    )
    return pool, endpoint, clock


def acquire(
    pool: UpstreamPool, maxAge: float | None = None
) -> tuple[AJPConnection, bool]:
    got: list[tuple[Any, bool]] = []
    pool.acquire(
        ADDRESS, lambda c, r: got.append((c, r)), lambda f: None, False, maxAge
    )
    assert got, "no connection handed over"
    return got[0]


def sent(conn: AJPConnection) -> bytes:
    """What the container was sent since the last call."""
    transport: StringTransport = conn.transport
    data: bytes = transport.value()
    transport.clear()
    return data


def test_aGetAnsweredAndPooled() -> None:
    """The packet goes as it is; the answer reaches the sink; the connection is kept."""
    pool, endpoint, _ = makePool()
    conn, reused = acquire(pool)
    assert isinstance(conn, AJPConnection)
    assert not reused
    sink = Sink()
    conn.sendRequest(FORWARD, b"GET", sink, 5.0, False, True)
    assert sent(conn) == FORWARD
    conn.dataReceived(
        headers(200, b"200", (b"Content-Length", b"5"), (b"X-A", b"b"))
        + chunk(b"he")
        + chunk(b"")
        + chunk(b"llo")
        + END
    )
    assert sink.status == 200
    date = (b"Date", b"Thu, 01 Jan 1970 00:00:00 GMT")
    assert sink.headers == [(b"Content-Length", b"5"), (b"X-A", b"b"), date]
    assert sink.body == b"hello"
    assert sink.finished
    assert sink.failed is None
    assert pool.idleCount(ADDRESS) == 1
    assert not conn.transport.disconnecting
    again, reused = acquire(pool)
    assert again is conn
    assert reused


def test_aDateIsAddedOnlyWhenTheContainerSentNone() -> None:
    """Tomcat leaves Date to the proxy over AJP (RFC 9110 6.6.1)."""
    pool, _, clock = makePool()
    clock.advance(86400 * 365)
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(FORWARD, b"GET", sink, 5.0, False, True)
    conn.dataReceived(headers(204, b"No Content") + END)
    assert sink.headers == [(b"Date", b"Fri, 01 Jan 1971 00:00:00 GMT")]
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(FORWARD, b"GET", sink, 5.0, False, True)
    conn.dataReceived(headers(204, b"No Content", (b"date", b"then")) + END)
    assert sink.headers == [(b"date", b"then")]


def test_tomcatsNumericReasonGivesTheStandardPhrase() -> None:
    """Tomcat's reason is the code itself: the client gets the standard phrase."""
    reasons: list[bytes] = []

    class Reasons(Sink):
        def responseStarted(self, status: int, reason: bytes, headers: Any) -> None:
            reasons.append(reason)

    for reason in (b"404", b"Not There"):
        pool, _, _ = makePool()
        conn, _ = acquire(pool)
        conn.sendRequest(FORWARD, b"GET", Reasons(), 5.0, False, True)
        conn.dataReceived(headers(404, reason) + END)
    assert reasons == [b"", b"Not There"]


def test_aDeclaredBodyGoesAsAsked() -> None:
    """
    With a length declared, the first packet goes at once; each next one only
    on GET_BODY_CHUNK, at most what was asked; an empty packet once it is over.
    """
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    body = bytes(range(256)) * 40  # 10,240 bytes
    conn.sendRequest(FORWARD, b"POST", Sink(), 5.0, False, False, [body[:3000]])
    assert sent(conn) == FORWARD + bodyPacket(body[:3000])
    conn.writeBody(body[3000:])
    assert sent(conn) == b"", "nothing goes before the container asks"
    conn.dataReceived(getBody(4000))
    assert sent(conn) == bodyPacket(body[3000:7000])
    conn.finishBody()
    assert sent(conn) == b""
    conn.dataReceived(getBody(65000))
    assert sent(conn) == bodyPacket(body[7000:])
    conn.dataReceived(getBody(8186))
    assert sent(conn) == END_OF_BODY


def test_theFirstPacketIsAtMostOnePacket() -> None:
    """A body in hand larger than a packet: 8,186 bytes first, the rest held."""
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    body = b"x" * 20000
    conn.sendRequest(FORWARD, b"POST", Sink(), 5.0, False, True, [body])
    assert sent(conn) == FORWARD + bodyPacket(body[:MAX_BODY_CHUNK])
    conn.dataReceived(getBody(MAX_BODY_CHUNK))
    assert sent(conn) == bodyPacket(body[MAX_BODY_CHUNK : 2 * MAX_BODY_CHUNK])


def test_aBodyOfUnknownLengthWaitsToBeAsked() -> None:
    """Chunked from the client: nothing until asked, then what there is."""
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(FORWARD, b"POST", Sink(), 5.0, True, False)
    conn.writeBody(b"abc")
    assert sent(conn) == FORWARD
    conn.dataReceived(getBody(8186))
    assert sent(conn) == bodyPacket(b"abc")
    conn.dataReceived(getBody(8186))
    assert sent(conn) == b"", "asked before the client sent more: it waits"
    conn.writeBody(b"de")
    assert sent(conn) == bodyPacket(b"de")
    conn.finishBody()
    conn.dataReceived(getBody(8186))
    assert sent(conn) == END_OF_BODY


def test_aRequestWithoutBodyAnswersAnAskWithTheEnd() -> None:
    """A servlet reading the body of a GET gets an empty packet at once."""
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(FORWARD, b"GET", Sink(), 5.0, False, True)
    sent(conn)
    conn.dataReceived(getBody(8186))
    assert sent(conn) == END_OF_BODY


def test_theClientIsPausedWhileTooMuchWaits() -> None:
    """More than BODY_HELD held for the container: the client is paused until asked."""
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(FORWARD, b"POST", Sink(), 5.0, True, False)
    client = Producer()
    conn.uploadConsumer().registerProducer(client, True)
    piece = b"y" * 8000
    for _ in range(9):
        conn.writeBody(piece)
    assert client.paused
    for _ in range(4):
        conn.dataReceived(getBody(MAX_BODY_CHUNK))
    assert client.paused, "72,000 held less 4 packets: more than half of BODY_HELD"
    conn.dataReceived(getBody(MAX_BODY_CHUNK))
    assert not client.paused, "under half of BODY_HELD: the client reads again"


def test_notReusedWhenTheContainerSaysNoOrSomethingIsOwed() -> None:
    """END_RESPONSE without reuse, or before the owed first packet: closed."""
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(FORWARD, b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(headers() + END_NO_REUSE)
    assert pool.idleCount(ADDRESS) == 0
    assert conn.transport.disconnecting

    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(FORWARD, b"POST", sink, 5.0, False, False)
    conn.dataReceived(headers(413, b"Too Large") + END)
    assert sink.finished
    assert pool.idleCount(ADDRESS) == 0
    assert conn.transport.disconnecting
    conn.writeBody(b"late")
    assert sent(conn) == FORWARD, "nothing after the end"


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (headers(200, b"OK", (b"Content-Length", b"3")) + chunk(b"abcd"), "longer"),
        (headers(200, b"OK", (b"Content-Length", b"3")) + chunk(b"ab") + END, "short"),
        (headers(200, b"OK", (b"X-A", b"a\r\nSet-Cookie: x=1")), "control byte"),
        (headers(200, b"OK", (b"Bad Name", b"1")), "not a token"),
        (headers(200, b"OK\r\nX: y"), "reason"),
        (headers(200, b"OK", (b"Content-Length", b"-1")), "Content-Length"),
        (headers(101, b"Switching"), "status 101"),
        (chunk(b"a"), "before SEND_HEADERS"),
        (END, "before SEND_HEADERS"),
        (headers() + headers(), "a second SEND_HEADERS"),
        (getBody(10) + getBody(10), "before the last one was answered"),
        (headers() + END + chunk(b"x"), "after the end"),
        (CPONG, "no CPING asked"),
        (packet(b"\x07"), "unknown message"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "does not start with AB"),
    ],
)
def test_whatAnHTTPBackendCouldNotSendIsAProtocolFailure(
    answer: bytes, why: str
) -> None:
    """Strict reading: the exchange fails and the connection is dropped."""
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(FORWARD, b"POST", sink, 5.0, True, False)
    conn.dataReceived(answer)
    if why == "after the end":
        assert sink.finished
        assert pool.idleCount(ADDRESS) == 0
    else:
        assert sink.failed is not None
        kind, detail, retryable = sink.failed
        assert kind == FAIL_PROTOCOL
        assert why in detail
        assert not retryable
    assert conn.transport.disconnecting or conn.transport.disconnected


def test_aHeadAnswerCarriesNoBody() -> None:
    """A body chunk after the head of a HEAD answer is a protocol failure."""
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(FORWARD, b"HEAD", sink, 5.0, False, True)
    conn.dataReceived(headers(200, b"OK", (b"Content-Length", b"10")) + chunk(b"x"))
    assert sink.failed is not None
    assert "has no body" in sink.failed[1]


def test_bytesFromAnIdleContainerDropTheConnection() -> None:
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(FORWARD, b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(headers() + END)
    assert pool.idleCount(ADDRESS) == 1
    conn.dataReceived(chunk(b"x"))
    assert pool.idleCount(ADDRESS) == 0
    assert conn.transport.disconnecting


def test_theResponseClockRunsOnlyWhileTheContainerIsWaitedFor() -> None:
    """
    No timeout while the container waits for body the client has not sent;
    a timeout when the container is silent while it has all it asked for.
    """
    pool, _, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(FORWARD, b"POST", sink, 5.0, False, False)
    clock.advance(60)
    assert sink.failed is None, "the client is slow, not the container"
    conn.writeBody(b"abc")
    clock.advance(4)
    conn.dataReceived(headers())
    clock.advance(4)
    assert sink.failed is None, "each read restarts it"
    clock.advance(1.5)
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_TIMEOUT
    assert conn.transport.disconnecting or conn.transport.disconnected


def test_aSlowClientStopsTheClock() -> None:
    pool, _, clock = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(FORWARD, b"GET", sink, 5.0, False, True)
    conn.dataReceived(headers())
    conn.pauseProducing()
    assert conn.transport.producerState == "paused"
    clock.advance(60)
    assert sink.failed is None
    conn.resumeProducing()
    assert conn.transport.producerState == "producing"
    clock.advance(5.5)
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_TIMEOUT


def test_closedMidAnswerOrBeforeAnyOnAReusedConnection() -> None:
    """Lost mid-answer: a reset; lost before any byte on a reused one: retryable."""
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    sink = Sink()
    conn.sendRequest(FORWARD, b"GET", sink, 5.0, False, True)
    conn.dataReceived(headers())
    conn.connectionLost(Failure(ConnectionDone()))
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_RESET
    assert not sink.failed[2]

    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    conn.sendRequest(FORWARD, b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(headers() + END)
    again, reused = acquire(pool)
    assert reused
    sink = Sink()
    again.sendRequest(FORWARD, b"GET", sink, 5.0, False, True)
    again.connectionLost(Failure(ConnectionDone()))
    assert sink.failed is not None
    assert sink.failed[0] == FAIL_RESET
    assert sink.failed[2]


def _idleConnection(pool: UpstreamPool) -> AJPConnection:
    conn, _ = acquire(pool)
    conn.sendRequest(FORWARD, b"GET", Sink(), 5.0, False, True)
    conn.dataReceived(headers() + END)
    sent(conn)
    return conn


def test_aRecentlyUsedConnectionIsLentWithoutACping() -> None:
    pool, _, clock = makePool()
    conn = _idleConnection(pool)
    clock.advance(0.5)
    again, reused = acquire(pool, maxAge=1.0)
    assert again is conn
    assert reused
    assert sent(conn) == b""


def test_anIdleConnectionIsAskedFirst() -> None:
    """Idle for maxAge or more: CPING, and lent once CPONG comes."""
    pool, endpoint, clock = makePool(connectTimeout=2.0)
    conn = _idleConnection(pool)
    clock.advance(30)
    got: list[tuple[Any, bool]] = []
    attempt = pool.acquire(
        ADDRESS, lambda c, r: got.append((c, r)), lambda f: None, False, 1.0
    )
    assert attempt is not None
    assert got == []
    assert sent(conn) == CPING
    conn.dataReceived(CPONG)
    assert got == [(conn, True)]
    assert len(endpoint.connected) == 1


@pytest.mark.parametrize("how", ["silent", "closed", "garbage"])
def test_anUnansweredCpingMeansAFreshConnection(how: str) -> None:
    """No CPONG in connectTimeout, the connection closed, or bytes that are not
    one: that connection is dropped and a new one lent, the request intact."""
    pool, endpoint, clock = makePool(connectTimeout=2.0)
    conn = _idleConnection(pool)
    clock.advance(30)
    got: list[tuple[Any, bool]] = []
    pool.acquire(ADDRESS, lambda c, r: got.append((c, r)), lambda f: None, False, 1.0)
    assert sent(conn) == CPING
    if how == "silent":
        clock.advance(1.9)
        assert got == []
        clock.advance(0.2)
    elif how == "closed":
        conn.connectionLost(Failure(ConnectionDone()))
    else:
        conn.dataReceived(headers())
    assert len(got) == 1
    fresh, reused = got[0]
    assert fresh is not conn
    assert not reused
    assert fresh is endpoint.connected[-1]
    assert conn.lost or conn.transport.disconnecting or conn.transport.disconnected


def test_theCpingWaitIsTheAskersConnectTimeout() -> None:
    """A route's connect_timeout bounds the CPING it asks, not the pool's."""
    pool, endpoint, clock = makePool(connectTimeout=30.0)
    conn = _idleConnection(pool)
    clock.advance(30)
    got: list[tuple[Any, bool]] = []
    pool.acquire(
        ADDRESS, lambda c, r: got.append((c, r)), lambda f: None, False, 1.0, 2.0
    )
    assert sent(conn) == CPING
    clock.advance(1.9)
    assert got == []
    clock.advance(0.2)
    [(fresh, reused)] = got
    assert (fresh, reused) == (endpoint.connected[-1], False)
    assert fresh is not conn


def test_aCpingGivenUpDropsTheConnection() -> None:
    """The exchange gave up while the CPING was out: the connection is cut."""
    pool, _, clock = makePool()
    conn = _idleConnection(pool)
    clock.advance(30)
    failures: list[Failure] = []
    attempt = pool.acquire(ADDRESS, lambda c, r: None, failures.append, False, 1.0)
    assert attempt is not None
    attempt.cancel()
    assert failures
    assert failures[0].check(CancelledError)
    assert conn.transport.disconnecting or conn.transport.disconnected
    assert not clock.getDelayedCalls()


def test_noTimerLeftWhenClosed() -> None:
    pool, _, clock = makePool()
    conn = _idleConnection(pool)
    assert clock.getDelayedCalls()
    conn.connectionLost(Failure(ConnectionDone()))
    assert not clock.getDelayedCalls()


def test_theGateIsEmptyOfProducersOnceUnregistered() -> None:
    pool, _, _ = makePool()
    conn, _ = acquire(pool)
    gate = conn.uploadConsumer()
    client = Producer()
    gate.registerProducer(client, True)
    assert gate.producer is client
    gate.unregisterProducer()
    assert gate.producer is None
    assert BODY_HELD == 65536
