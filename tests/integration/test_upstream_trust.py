"""
Upstream you can trust, end to end with real misbehaving backends on
127.0.0.1: a request that may not run twice is never sent twice, timeouts are
per I/O (a long upload that moves is never cut), a client that stops reading
is let go, a backend's leftovers never fail the next client, and Expect:
100-continue is the backend's to answer.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.web.server import NOT_DONE_YET

from tests.integration.support import (
    RawBackend,
    RawClient,
    RawServerProtocol,
    RecordingBackend,
    Stack,
    Trickle,
    hasReplies,
    parseReplies,
    request,
    theReactor,
)

PLAIN = """
[proxy]
access_log = false
{proxy}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
"""

BALANCED = """
[proxy]
access_log = false
{proxy}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://b/"
[balancer.b]
{balancer}
[[balancer.b.member]]
url = "http://127.0.0.1:{port}"
[[balancer.b.member]]
url = "http://127.0.0.1:{standby}"
standby = true
"""


def _write(proto: Any, data: bytes) -> None:
    proto.transport.write(data)


def _requests(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(request line, head, body) of each complete request in C{data}."""
    found = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            break
        found.append((head.split(b"\r\n")[0], head, rest[:length]))
        data = rest[length:]
    return found


def _behaving(
    answer: Callable[[RawServerProtocol, int, bytes, bytes], object],
) -> RawBackend:
    """
    A raw backend calling C{answer(connection, index, line, body)} once per
    complete request on each connection (index counts from 0 per connection).
    """
    answered: dict[RawServerProtocol, int] = {}

    def onData(proto: RawServerProtocol) -> None:
        requests = _requests(proto.received)
        for index in range(answered.get(proto, 0), len(requests)):
            answered[proto] = index + 1
            line, _head, body = requests[index]
            answer(proto, index, line, body)

    return RawBackend(onData)


def _ok(proto: RawServerProtocol, line: bytes) -> None:
    body = b"ran " + line
    _write(
        proto, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def _ran(backend: RawBackend, line: bytes) -> int:
    """How many times the backend received the request C{line}, all connections."""
    return sum(
        1
        for proto in backend.connections
        for got, _head, _body in _requests(proto.received)
        if got == line
    )


async def _exchange(client: RawClient, *requests: bytes) -> list[Any]:
    """Send C{requests} one after another on C{client}, each after its answer."""
    for count, data in enumerate(requests, 1):
        _write(client, data)
        await client.waitFor(hasReplies(count))
    return parseReplies(client.received)


# -- a request that may not run twice is never sent twice -------------------------


def _dropsThePayment(
    proto: RawServerProtocol, index: int, line: bytes, body: bytes
) -> None:
    """Answers everything but /pay, which it reads whole and then hangs up on."""
    if line.startswith(b"POST /pay"):
        proto.transport.loseConnection()  # type: ignore[union-attr]
    else:
        _ok(proto, line)


@pytest_twisted.ensureDeferred
async def test_postIsNeverSentTwice(stack: Stack, logged: list[str]) -> None:
    """
    A POST on a reused connection that the backend read and then closed
    unanswered gets 502: it is not sent again (the backend ran it once).
    """
    backend = _behaving(_dropsThePayment)
    port = await stack.rawBackend(backend)
    proxy = await stack.proxy(PLAIN, port=port, proxy="")
    client = await stack.connect(proxy.port)
    warm, pay = await _exchange(
        client,
        request(b"GET", b"/warm"),
        request(b"POST", b"/pay", [(b"Content-Length", b"5")], b"10eur"),
    )
    assert warm.status == 200
    assert pay.status == 502
    assert _ran(backend, b"POST /pay HTTP/1.1") == 1
    # It went on the warm connection (used within safe_reuse), the only one.
    assert len(backend.connections) == 1
    assert any("not sent again (POST with a body)" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_postIsNeverSentToAnotherMember(stack: Stack) -> None:
    """On a balancer route, the standby member never gets the dropped POST either."""
    backend = _behaving(_dropsThePayment)
    standby = _behaving(lambda proto, index, line, body: _ok(proto, line))
    port = await stack.rawBackend(backend)
    standbyPort = await stack.rawBackend(standby)
    proxy = await stack.proxy(
        BALANCED, port=port, standby=standbyPort, proxy="", balancer=""
    )
    client = await stack.connect(proxy.port)
    _warm, pay = await _exchange(
        client,
        request(b"GET", b"/warm"),
        request(b"POST", b"/pay", [(b"Content-Length", b"5")], b"10eur"),
    )
    assert pay.status == 502
    assert _ran(backend, b"POST /pay HTTP/1.1") == 1
    assert _ran(standby, b"POST /pay HTTP/1.1") == 0


@pytest_twisted.ensureDeferred
async def test_postGoesOnAFreshConnectionPastSafeReuse(stack: Stack) -> None:
    """
    With safe_reuse = 0 a request with a body never takes a pooled
    connection; a GET still does.
    """
    backend = _behaving(lambda proto, index, line, body: _ok(proto, line))
    port = await stack.rawBackend(backend)
    proxy = await stack.proxy(PLAIN, port=port, proxy="safe_reuse = 0")
    client = await stack.connect(proxy.port)
    replies = await _exchange(
        client,
        request(b"GET", b"/a"),
        request(b"POST", b"/b", [(b"Content-Length", b"1")], b"x"),
        request(b"GET", b"/c"),
    )
    assert [r.status for r in replies] == [200, 200, 200]
    lines = [
        [line for line, _, _ in _requests(p.received)] for p in backend.connections
    ]
    # The POST opened a connection of its own; the GET after it reused one.
    assert lines == [
        [b"GET /a HTTP/1.1"],
        [b"POST /b HTTP/1.1", b"GET /c HTTP/1.1"],
    ]


@pytest_twisted.ensureDeferred
async def test_getRetriedOnceFreshOutsideMaxAttempts(stack: Stack) -> None:
    """
    A GET that a reused connection drops before any answer gets one more
    try on a fresh connection to the same member, even with max_attempts = 0.
    """

    def dropsTheSecond(
        proto: RawServerProtocol, index: int, line: bytes, body: bytes
    ) -> None:
        if index == 1:
            proto.transport.loseConnection()  # type: ignore[union-attr]
        else:
            _ok(proto, line)

    backend = _behaving(dropsTheSecond)
    standby = _behaving(lambda proto, index, line, body: _ok(proto, line))
    port = await stack.rawBackend(backend)
    standbyPort = await stack.rawBackend(standby)
    proxy = await stack.proxy(
        BALANCED,
        port=port,
        standby=standbyPort,
        proxy="",
        balancer="max_attempts = 0",
    )
    client = await stack.connect(proxy.port)
    replies = await _exchange(
        client, request(b"GET", b"/one"), request(b"GET", b"/two")
    )
    assert [r.status for r in replies] == [200, 200]
    assert replies[1].body == b"ran GET /two HTTP/1.1"
    assert _ran(backend, b"GET /two HTTP/1.1") == 2
    assert len(backend.connections) == 2
    assert standby.connections == []


@pytest_twisted.ensureDeferred
async def test_strayBytesAfter204FailNoFollowUp(stack: Stack) -> None:
    """
    A backend that leaves stray bytes on its connection after a 204 (sent
    once the next request is on it): 8 follow-up GETs all get their own
    answer, none a 502 and none another's.
    """

    def strays(proto: RawServerProtocol, index: int, line: bytes, body: bytes) -> None:
        if line.startswith(b"GET /stray"):
            _write(proto, b"HTTP/1.1 204 No Content\r\n\r\n")
            proto.dirty = True  # type: ignore[attr-defined]
        elif getattr(proto, "dirty", False):
            _write(proto, b"leftover from the 204\r\n\r\n")
        else:
            _ok(proto, line)

    backend = _behaving(strays)
    port = await stack.rawBackend(backend)
    proxy = await stack.proxy(PLAIN, port=port, proxy="")
    client = await stack.connect(proxy.port)
    follow = [request(b"GET", b"/f%d" % n) for n in range(8)]
    replies = await _exchange(client, request(b"GET", b"/stray"), *follow)
    assert replies[0].status == 204
    assert [(r.status, r.body) for r in replies[1:]] == [
        (200, b"ran GET /f%d HTTP/1.1" % n) for n in range(8)
    ]


# -- timeouts per I/O ---------------------------------------------------------------


class _SlowReader(Protocol):
    """
    A backend that takes a request body slowly but steadily: one read every
    5 ms, from a small socket receive buffer (so what it has not read waits
    on the proxy's side, as it does for a body much larger than the kernel's
    buffers).
    """

    def connectionMade(self) -> None:
        self.data = b""
        self.transport.getHandle().setsockopt(  # type: ignore[union-attr]
            socket.SOL_SOCKET, socket.SO_RCVBUF, 131072
        )

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        requests = _requests(self.data)
        if requests:
            line, _head, body = requests[0]
            reply = b"took %d" % len(body)
            _write(
                self,
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                % (len(reply), reply),
            )
            return
        self.transport.pauseProducing()  # type: ignore[union-attr]
        theReactor().callLater(0.005, self._more)

    def _more(self) -> None:
        if self.transport is not None and self.transport.connected:  # type: ignore[attr-defined]
            self.transport.resumeProducing()  # type: ignore[attr-defined]


class _Stopper(Protocol):
    """A backend that reads the start of a request, then never reads again."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]


def _factory(protocol: type[Protocol]) -> Any:
    factory = Factory.forProtocol(protocol)
    factory.noisy = False
    return factory


@pytest_twisted.ensureDeferred
async def test_longUploadThatMovesIsNeverCut(stack: Stack) -> None:
    """
    With timeout = 0.5, a 12 MiB PUT that the backend reads steadily for
    much longer than that arrives whole: the timeout is for no byte moving.
    """
    port = await stack.listen(_factory(_SlowReader))
    proxy = await stack.proxy(PLAIN, port=port, proxy="timeout = 0.5")
    client = await stack.connect(proxy.port)
    size = 12 * 1024 * 1024
    started = theReactor().seconds()
    _write(
        client,
        request(b"PUT", b"/up", [(b"Content-Length", b"%d" % size)], b"x" * size),
    )
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 200
    assert reply.body == b"took %d" % size
    assert theReactor().seconds() - started > 1.0


@pytest_twisted.ensureDeferred
async def test_backendThatStopsReadingTimesOut(stack: Stack, logged: list[str]) -> None:
    """A backend that takes none of the body for timeout: 504, logged."""
    port = await stack.listen(_factory(_Stopper))
    proxy = await stack.proxy(PLAIN, port=port, proxy="timeout = 0.2")
    client = await stack.connect(proxy.port)
    size = 8 * 1024 * 1024
    _write(
        client,
        request(b"PUT", b"/up", [(b"Content-Length", b"%d" % size)], b"x" * size),
    )
    reply = (parseReplies(await client.waitFor(hasReplies(1))))[0]
    assert reply.status == 504
    assert any(
        "backend took none of the request body for 0.2s" in line for line in logged
    )


# -- a client that stops reading is let go ------------------------------------------


@pytest_twisted.ensureDeferred
async def test_clientThatStopsReadingIsLetGo(stack: Stack, logged: list[str]) -> None:
    """
    A client that stops reading a 256 MiB response is cut after send_timeout,
    and so is the backend's connection (its producer is stopped).
    """
    stopped: defer.Deferred[None] = defer.Deferred()

    def big(req: Any) -> Any:
        req.notifyFinish().addErrback(lambda _: stopped.callback(None))
        Trickle(req, 256 * 1024 * 1024, 65536)
        return NOT_DONE_YET

    backend = RecordingBackend(handler=big)
    port = await stack.backend(backend)
    proxy = await stack.proxy(PLAIN, port=port, proxy="send_timeout = 0.2")
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/big"))
    await client.waitFor(lambda data: len(data) > 0)
    client.transport.pauseProducing()  # type: ignore[union-attr]
    await stopped
    # Reading again, the client finds its connection cut short.
    client.transport.resumeProducing()  # type: ignore[union-attr,attr-defined]
    await client.lost
    assert len(client.received) < 64 * 1024 * 1024
    assert any(
        "took no response bytes for 0.2s (send_timeout)" in line for line in logged
    )


# -- Expect: 100-continue is the backend's to answer --------------------------------


def _expecting(
    onHead: Callable[[RawServerProtocol, bytes], object],
) -> RawBackend:
    """A raw backend that calls C{onHead(connection, head)} when a head is in."""

    def onData(proto: RawServerProtocol) -> None:
        if b"\r\n\r\n" in proto.received and not getattr(proto, "headSeen", False):
            proto.headSeen = True  # type: ignore[attr-defined]
            onHead(proto, proto.received.split(b"\r\n\r\n", 1)[0])
        requests = _requests(proto.received)
        if requests and not getattr(proto, "answered", False):
            proto.answered = True  # type: ignore[attr-defined]
            _write(
                proto,
                b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s"
                % (len(requests[0][2]), requests[0][2]),
            )

    return RawBackend(onData)


_UPLOAD = (
    b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n"
)


@pytest_twisted.ensureDeferred
async def test_backendRefusesBeforeTheBody(stack: Stack) -> None:
    """
    The backend is asked with Expect and refuses at once (413): the client
    gets the 413 without a 100 before it, and its connection is closed.
    """
    heads: list[bytes] = []

    def refuse(proto: RawServerProtocol, head: bytes) -> None:
        heads.append(head)
        _write(proto, b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")

    backend = _expecting(refuse)
    port = await stack.rawBackend(backend)
    proxy = await stack.proxy(PLAIN, port=port, proxy="continue_timeout = 30")
    client = await stack.connect(proxy.port)
    _write(client, _UPLOAD)
    await client.lost
    assert client.received.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in client.received
    assert b"\r\nConnection: close\r\n" in client.received
    assert b"\r\nExpect: 100-continue" in heads[0]


@pytest_twisted.ensureDeferred
async def test_backendsContinueRelayed(stack: Stack) -> None:
    """The backend's 100 reaches the client, whose body then reaches the backend."""
    backend = _expecting(
        lambda proto, head: _write(proto, b"HTTP/1.1 100 Continue\r\n\r\n")
    )
    port = await stack.rawBackend(backend)
    proxy = await stack.proxy(PLAIN, port=port, proxy="continue_timeout = 30")
    client = await stack.connect(proxy.port)
    _write(client, _UPLOAD)
    await client.waitFor(lambda data: data == b"HTTP/1.1 100 Continue\r\n\r\n")
    _write(client, b"0123456789")
    await client.waitFor(lambda data: data.endswith(b"0123456789"))
    assert b"HTTP/1.1 201 Created\r\n" in client.received


@pytest_twisted.ensureDeferred
async def test_silentBackendGetsTheBodyAfterContinueTimeout(stack: Stack) -> None:
    """
    A backend that never says 100: after continue_timeout the proxy asks the
    client for its body itself, and the backend gets it.
    """
    backend = _expecting(lambda proto, head: None)
    port = await stack.rawBackend(backend)
    proxy = await stack.proxy(PLAIN, port=port, proxy="continue_timeout = 0.1")
    client = await stack.connect(proxy.port)
    _write(client, _UPLOAD)
    await client.waitFor(lambda data: data == b"HTTP/1.1 100 Continue\r\n\r\n")
    _write(client, b"0123456789")
    await client.waitFor(lambda data: data.endswith(b"0123456789"))
    assert b"HTTP/1.1 201 Created\r\n" in client.received
