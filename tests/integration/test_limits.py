"""
The listener's limits and refusals, end to end: slow or oversized heads and
bodies, smuggling-shaped framing, forward-proxy and CONNECT requests, and
route access lists. A refused request must never reach the backend.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.integration.support import (
    RawBackend,
    RawClient,
    RecordingBackend,
    Reply,
    Stack,
    hasReplies,
    parseReplies,
    request,
)

CONFIG = """
[proxy]
access_log = false
{proxy}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
{route}
"""


async def _guarded(
    stack: Stack, proxy: str = "", route: str = ""
) -> tuple[RecordingBackend, RawClient]:
    """A recording backend behind a proxy with these settings, and a client."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    service = await stack.proxy(CONFIG, port=port, proxy=proxy, route=route)
    return backend, await stack.connect(service.port)


def _write(proto: Any, data: bytes) -> None:
    proto.transport.write(data)


async def _refusedWith(client: RawClient, data: bytes) -> Reply:
    """Send C{data}; the one response, once the proxy has closed the connection."""
    _write(client, data)
    await client.lost
    [reply] = parseReplies(client.received)
    return reply


@pytest_twisted.ensureDeferred
async def test_slowHeadGets408AndClose(stack: Stack) -> None:
    """A client that sends half a request head within header_timeout gets 408."""
    backend, client = await _guarded(stack, proxy="header_timeout = 0.3")
    reply = await _refusedWith(client, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert reply.status == 408
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_idleKeepAliveClientClosed(stack: Stack) -> None:
    """An idle keep-alive connection is closed after idle_timeout."""
    backend, client = await _guarded(stack, proxy="idle_timeout = 0.3")
    _write(client, request(b"GET", b"/once"))
    await client.waitFor(hasReplies(1))
    await client.lost
    [reply] = parseReplies(client.received)
    assert reply.status == 200
    assert len(backend.requests) == 1


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-Big", b"a" * 4096)],
        [(b"X-Many-%d" % n, b"b" * 100) for n in range(30)],
    ],
    ids=["one-long-header", "many-headers"],
)
@pytest_twisted.ensureDeferred
async def test_oversizedHeadIs431(
    stack: Stack, headers: list[tuple[bytes, bytes]]
) -> None:
    """A head over max_header_bytes, in one header or in many, gets 431."""
    backend, client = await _guarded(stack, proxy="max_header_bytes = 2048")
    reply = await _refusedWith(client, request(b"GET", b"/", headers))
    assert reply.status == 431
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_overlongRequestLineRefused(stack: Stack) -> None:
    """A request line longer than max_header_bytes gets 414 (or 431)."""
    backend, client = await _guarded(stack, proxy="max_header_bytes = 2048")
    reply = await _refusedWith(client, request(b"GET", b"/" + b"a" * 4096))
    assert reply.status in (414, 431)
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_declaredBodyOverLimitIs413(stack: Stack) -> None:
    """A Content-Length over max_body_bytes gets 413 before any backend is asked."""
    backend, client = await _guarded(stack, proxy="max_body_bytes = 100")
    reply = await _refusedWith(
        client,
        request(b"POST", b"/upload", [(b"Content-Length", b"1000")], b"z" * 200),
    )
    assert reply.status == 413
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_chunkedBodyOverLimitStopped(stack: Stack) -> None:
    """A chunked body past max_body_bytes gets 413 or is cut, never relayed whole."""
    backend, client = await _guarded(stack, proxy="max_body_bytes = 100")
    chunk = b"%x\r\n%s\r\n" % (60, b"c" * 60)
    _write(
        client,
        request(b"POST", b"/upload", [(b"Transfer-Encoding", b"chunked")], chunk),
    )
    _write(client, chunk + chunk + b"0\r\n\r\n")
    await client.lost
    replies = parseReplies(client.received)
    assert [r.status for r in replies] in ([], [413])
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_chunkedBodyOverLimitClosesBackendConnection(stack: Stack) -> None:
    """When a streamed body passes max_body_bytes the backend's connection is closed."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    service = await stack.proxy(
        CONFIG, port=port, proxy="max_body_bytes = 100", route=""
    )
    client = await stack.connect(service.port)
    chunk = b"%x\r\n%s\r\n" % (60, b"c" * 60)
    _write(
        client,
        request(b"POST", b"/upload", [(b"Transfer-Encoding", b"chunked")], chunk),
    )
    conn = await raw.waitFor(lambda p: b"c" * 60 in p.received)
    _write(client, chunk)
    await client.lost
    assert parseReplies(client.received)[0].status == 413
    # Bounded: the bug leaves it open for the route's 60 s timeout.
    await conn.lost.addTimeout(0.5, stack.reactor)
    assert not conn.received.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize(
    ("name", "head"),
    [
        (
            "length-and-chunked",
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0"
            b"\r\n\r\n",
        ),
        ("two-lengths", b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("bad-chunk-size", b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"),
        ("two-hosts", b"Host: other.example\r\n\r\n"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_ambiguousRequestIs400AndClosed(
    stack: Stack, name: str, head: bytes
) -> None:
    """Smuggling-shaped framing or a second Host gets 400 and the connection closes."""
    backend, client = await _guarded(stack)
    reply = await _refusedWith(
        client, b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head
    )
    assert reply.status == 400
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_absoluteFormForOtherHostIs403(stack: Stack) -> None:
    """GET http://elsewhere.example/ is refused 403: not an open proxy."""
    backend, client = await _guarded(stack)
    _write(client, request(b"GET", b"http://elsewhere.example/secret"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 403
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_absoluteFormNamingThisHostIsServed(stack: Stack) -> None:
    """An absolute-form target naming the request's own Host is served as usual."""
    backend, client = await _guarded(stack)
    _write(client, request(b"GET", b"http://127.0.0.1/page?q=1", host=b"127.0.0.1"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 200
    assert [r.uri for r in backend.requests] == [b"/page?q=1"]


@pytest_twisted.ensureDeferred
async def test_connectIs405WithAllow(stack: Stack) -> None:
    """
    CONNECT gets 405 naming the allowed methods (its Allow header spelt as
    every other header is), and no tunnel.
    """
    backend, client = await _guarded(stack)
    _write(
        client,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    received = await client.waitFor(hasReplies(1))
    assert b"\r\nAllow: GET, HEAD, " in received
    [reply] = parseReplies(received)
    assert reply.status == 405
    allow = reply.header(b"allow") or b""
    assert b"GET" in allow
    assert b"CONNECT" not in allow
    assert backend.requests == []


@pytest.mark.parametrize(
    "acl", ['allow = ["192.0.2.0/24"]', 'deny = ["127.0.0.0/8"]'], ids=["allow", "deny"]
)
@pytest_twisted.ensureDeferred
async def test_routeAccessListRefusesLoopback(stack: Stack, acl: str) -> None:
    """A route's allow/deny list that excludes 127.0.0.1 answers it 403."""
    backend, client = await _guarded(stack, route=acl)
    _write(client, request(b"GET", b"/private"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 403
    assert backend.requests == []
