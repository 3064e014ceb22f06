"""
What clients see, what backends see and what is logged when a backend or a
client fails: refused, silent, disabled, cut mid-body, gone, or stale.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.web.client import ResponseFailed

from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    RecordingBackend,
    Stack,
    answerEach,
    hasReplies,
    parseReplies,
    request,
)

CONFIG = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/app/"
to = "http://127.0.0.1:{port}/"
{route}
"""

BALANCED = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://pool/"
[balancer.pool]
[[balancer.pool.member]]
url = "http://127.0.0.1:{port}"
disabled = true
[[balancer.pool.member]]
url = "http://127.0.0.1:{port2}"
disabled = true
"""

FAILOVER = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://pool/"
[balancer.pool]
method = "roundrobin"
[[balancer.pool.member]]
url = "http://127.0.0.1:{dead}"
[[balancer.pool.member]]
url = "http://127.0.0.1:{live}"
"""


def _write(proto: Any, data: bytes) -> None:
    proto.transport.write(data)


def _logLine(lines: list[str], *words: str) -> str:
    """The one logged line that holds every word in C{words}."""
    found = [line for line in lines if all(word in line for word in words)]
    assert len(found) == 1, (words, lines)
    return found[0]


async def _closedPort(stack: Stack) -> int:
    """A port on 127.0.0.1 that was just bound and closed: it refuses."""
    endpoint = TCP4ServerEndpoint(stack.reactor, 0, interface="127.0.0.1")
    port = await endpoint.listen(Factory.forProtocol(Protocol))
    number = int(port.getHost().port)  # type: ignore[attr-defined]
    await port.stopListening()
    return number


@pytest_twisted.ensureDeferred
async def test_refusedBackendIs502(stack: Stack, logged: list[str]) -> None:
    """A backend that refuses connections gives a short plain 502, logged."""
    dead = await _closedPort(stack)
    proxy = await stack.proxy(CONFIG, port=dead, route="")
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/app/x"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 502
    assert reply.header(b"content-type") == b"text/plain; charset=utf-8"
    assert 0 < len(reply.body) < 100
    assert b"<" not in reply.body
    assert b"Traceback" not in reply.body
    _logLine(logged, "route */app/", f"http://127.0.0.1:{dead}", "connect failed")
    # The connection survives for the next request.
    _write(client, request(b"GET", b"/app/y"))
    assert parseReplies(await client.waitFor(hasReplies(2)))[1].status == 502


@pytest_twisted.ensureDeferred
async def test_silentBackendIs504(stack: Stack, logged: list[str]) -> None:
    """A backend that never answers within the route timeout gives 504, logged."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, route="timeout = 0.3")
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/app/slow"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 504
    assert reply.header(b"content-type") == b"text/plain; charset=utf-8"
    # The backend's connection is given up, not kept for another request.
    await raw.connections[0].lost
    _logLine(logged, "route */app/", f"http://127.0.0.1:{port}", "0.3s")


@pytest_twisted.ensureDeferred
async def test_allMembersDisabledIs503(stack: Stack, logged: list[str]) -> None:
    """A balancer whose members are all disabled answers 503; no backend is asked."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    port2 = await stack.backend(backend)
    proxy = await stack.proxy(BALANCED, port=port, port2=port2)
    response = await stack.treq().get(f"http://127.0.0.1:{proxy.port}/any")
    assert response.code == 503
    assert await response.text() == "no backend available\n"
    assert backend.requests == []
    _logLine(logged, "route */", "balancer pool")


@pytest_twisted.ensureDeferred
async def test_backendDiesMidBodyCutsClient(stack: Stack, logged: list[str]) -> None:
    """A backend that dies mid-body makes the client's connection close short."""
    raw = RawBackend(
        answerEach(
            lambda proto, index, head: _write(
                proto, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"
            )
        )
    )
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, route="")
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/app/big"))
    await client.waitFor(lambda data: data.endswith(b"0123456789"))
    raw.connections[0].transport.abortConnection()  # type: ignore[union-attr]
    await client.lost
    head, body = client.received.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 1000" in head
    assert body == b"0123456789"
    _logLine(logged, "route */app/", f"http://127.0.0.1:{port}", "closed")


@pytest_twisted.ensureDeferred
async def test_backendDiesMidBodyFailsTreqRead(stack: Stack) -> None:
    """treq sees the 200 head, then reading the cut body fails."""
    raw = RawBackend(
        answerEach(
            lambda proto, index, head: _write(
                proto, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"
            )
        )
    )
    proxy = await stack.proxy(CONFIG, port=await stack.rawBackend(raw), route="")
    response = await stack.treq().get(f"http://127.0.0.1:{proxy.port}/app/big")
    assert response.code == 200
    raw.connections[0].transport.abortConnection()  # type: ignore[union-attr]
    with pytest.raises(ResponseFailed):
        await response.content()


@pytest_twisted.ensureDeferred
async def test_clientGoneClosesBackendConnection(
    stack: Stack, logged: list[str]
) -> None:
    """A client leaving mid-response closes its backend connection, never reused."""

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        if head.startswith(b"GET /big "):
            _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            _write(proto, b"x" * 1000)
        else:
            _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    raw = RawBackend(answerEach(respond))
    proxy = await stack.proxy(CONFIG, port=await stack.rawBackend(raw), route="")
    leaving = await stack.connect(proxy.port)
    _write(leaving, request(b"GET", b"/app/big"))
    await leaving.waitFor(lambda data: data.endswith(b"x" * 1000))
    leaving.transport.abortConnection()  # type: ignore[union-attr]
    await raw.connections[0].lost
    _logLine(logged, "route */app/", "client went away")

    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/app/small"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.body == b"ok"
    assert len(raw.connections) == 2
    assert b"/small" not in raw.connections[0].received
    assert raw.connections[1].received.startswith(b"GET /small HTTP/1.1\r\n")


@pytest_twisted.ensureDeferred
async def test_staleKeepAliveRetriedOnFreshConnection(stack: Stack) -> None:
    """A pooled connection dropped as the next request arrives: retried, 200."""

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        if proto is raw.connections[0] and index == 1:
            # The keep-alive race: the backend had decided to close just then.
            proto.transport.loseConnection()  # type: ignore[union-attr]
        else:
            _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")

    raw = RawBackend(answerEach(respond))
    proxy = await stack.proxy(CONFIG, port=await stack.rawBackend(raw), route="")
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/app/one"))
    await client.waitFor(hasReplies(1))
    _write(client, request(b"GET", b"/app/two"))
    replies = parseReplies(await client.waitFor(hasReplies(2)))
    assert [(r.status, r.body) for r in replies] == [(200, b"fresh"), (200, b"fresh")]
    assert len(raw.connections) == 2
    assert raw.connections[0].received.count(b"GET /two ") == 1
    assert raw.connections[1].received.startswith(b"GET /two HTTP/1.1\r\n")


@pytest_twisted.ensureDeferred
async def test_backendClosingAfterEachAnswerIsTransparent(stack: Stack) -> None:
    """A backend closing right after each answer (no Connection: close): all 200."""

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
        proto.transport.loseConnection()  # type: ignore[union-attr]

    raw = RawBackend(answerEach(respond))
    proxy = await stack.proxy(CONFIG, port=await stack.rawBackend(raw), route="")
    http = stack.treq()
    for n in range(3):
        response = await http.get(f"http://127.0.0.1:{proxy.port}/app/{n}")
        assert response.code == 200
        assert await response.content() == b"done"
    assert len(raw.connections) == 3


@pytest_twisted.ensureDeferred
async def test_backendStallingMidBodyCutsClient(
    stack: Stack, logged: list[str]
) -> None:
    """A backend that stalls mid-body past the route timeout: the client is cut off."""
    raw = RawBackend(
        answerEach(
            lambda proto, index, head: _write(
                proto,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npart\r\n",
            )
        )
    )
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, route="timeout = 0.3")
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/app/stall"))
    await client.lost
    head, body = client.received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    # Cut, not ended: no last chunk, so the client knows the body is incomplete.
    assert body == b"4\r\npart\r\n"
    await raw.connections[0].lost
    _logLine(logged, "route */app/", f"http://127.0.0.1:{port}", "0.3s")


@pytest_twisted.ensureDeferred
async def test_backendClosingWithoutAnswerIs502(stack: Stack) -> None:
    """A fresh backend connection closed without a response gives 502, no retry."""
    raw = RawBackend(
        answerEach(
            lambda proto, index, head: proto.transport.loseConnection()  # type: ignore[union-attr]
        )
    )
    proxy = await stack.proxy(CONFIG, port=await stack.rawBackend(raw), route="")
    client = await stack.connect(proxy.port)
    _write(client, request(b"POST", b"/app/once", [(b"Content-Length", b"0")]))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 502
    assert len(raw.connections) == 1


@pytest_twisted.ensureDeferred
async def test_garbageFromBackendIs502(stack: Stack, logged: list[str]) -> None:
    """A backend answering with something that is not HTTP gives 502, logged."""
    raw = RawBackend(
        answerEach(lambda proto, index, head: _write(proto, b"SSH-2.0-OpenSSH\r\n\r\n"))
    )
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, route="")
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/app/x"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 502
    assert b"SSH" not in client.received
    await raw.connections[0].lost
    _logLine(logged, "route */app/", f"http://127.0.0.1:{port}", "bad response")


@pytest_twisted.ensureDeferred
async def test_refusedMemberFailsOverToAnother(stack: Stack) -> None:
    """A balancer member refusing connections: the request goes to the next, 200."""
    backend = RecordingBackend()
    live = await stack.backend(backend)
    dead = await _closedPort(stack)
    proxy = await stack.proxy(FAILOVER, dead=dead, live=live)
    http = stack.treq()
    codes = []
    for n in range(2):
        response = await http.get(f"http://127.0.0.1:{proxy.port}/{n}")
        await response.content()
        codes.append(response.code)
    assert codes == [200, 200]
    assert len(backend.requests) == 2
