"""
The HTTP data path end to end on 127.0.0.1: routing, headers, and streaming
both ways with backpressure, through real listeners and real clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest_twisted
import treq
from twisted.internet import defer
from twisted.web.server import NOT_DONE_YET

from tests.integration.support import (
    RawBackend,
    RecordingBackend,
    Stack,
    Trickle,
    curl,
    request,
)

ROUTE = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/api/users/"
to = "http://127.0.0.1:{port}/"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/root/"
"""


@pytest_twisted.ensureDeferred
async def test_prefixStrippedAndTargetByteForByte(stack: Stack) -> None:
    """The route prefix is replaced by the target path; %2F, %20 and + pass as sent."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    proxy = await stack.proxy(ROUTE, port=port)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/api/users/x%2Fy%20z+w?q=1+2&r=%2F"))  # type: ignore[union-attr]
    await client.waitFor(lambda data: data.endswith(b"%2F"))
    assert backend.requests[0].uri == b"/x%2Fy%20z+w?q=1+2&r=%2F"
    assert client.received.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest_twisted.ensureDeferred
async def test_longestPrefixWinsAndNoRouteIs404(stack: Stack) -> None:
    """/api/users/... goes to its own route, the rest to / ; nothing matches: 404."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    toml = ROUTE.replace('path = "/"\n', 'path = "/site/"\n')
    proxy = await stack.proxy(toml, port=port)
    http = stack.treq()
    r1 = await http.get(f"http://127.0.0.1:{proxy.port}/api/users/7")
    assert await r1.text() == "backend saw GET /7"
    r2 = await http.get(f"http://127.0.0.1:{proxy.port}/site/page")
    assert await r2.text() == "backend saw GET /root/page"
    r3 = await http.get(f"http://127.0.0.1:{proxy.port}/elsewhere")
    assert r3.code == 404
    await r3.content()
    assert len(backend.requests) == 2


@pytest_twisted.ensureDeferred
async def test_hopByHopRemovedForwardedAdded(stack: Stack) -> None:
    """Hop-by-hop and Connection-named headers go; X-Forwarded-* survive Connection."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    proxy = await stack.proxy(ROUTE, port=port)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(
            b"GET",
            b"/api/users/",
            [
                (b"Connection", b"keep-alive, X-Secret, X-Forwarded-For"),
                (b"X-Secret", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"TE", b"trailers"),
                (b"X-Kept", b"yes"),
            ],
            host=b"public.example.test",
        )
    )
    await client.waitFor(lambda data: b"saw GET /" in data)
    seen = backend.requests[0]
    for name in (b"x-secret", b"keep-alive", b"te"):
        assert seen.header(name) is None
    assert seen.header(b"connection") in (None, b"close", b"keep-alive")
    assert seen.header(b"x-kept") == b"yes"
    assert seen.header(b"x-forwarded-for") == b"127.0.0.1"
    assert seen.header(b"x-forwarded-host") == b"public.example.test"
    assert seen.header(b"x-forwarded-proto") == b"http"
    assert seen.header(b"x-forwarded-port") == str(proxy.port).encode()
    assert seen.header(b"host") == b"127.0.0.1:%d" % port


@pytest_twisted.ensureDeferred
async def test_repeatedSetCookieUnmergedAndLocationRewritten(stack: Stack) -> None:
    """Several Set-Cookie pass unmerged in order; Location is ProxyPassReverse'd."""

    def handler(request: Any) -> bytes:
        request.setResponseCode(302)
        request.responseHeaders.setRawHeaders(b"set-cookie", [b"a=1; Path=/", b"b=2"])
        request.setHeader(b"location", b"http://127.0.0.1:%d/login?next=%%2F" % port)
        return b""

    backend = RecordingBackend(handler=handler)
    port = await stack.backend(backend)
    proxy = await stack.proxy(ROUTE, port=port)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/api/users/me", host=b"www.example.test"))  # type: ignore[union-attr]
    data = await client.waitFor(lambda d: b"\r\n\r\n" in d)
    head = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    cookies = [line for line in head if line.lower().startswith(b"set-cookie:")]
    assert cookies == [b"Set-Cookie: a=1; Path=/", b"Set-Cookie: b=2"]
    assert b"Location: http://www.example.test/api/users/login?next=%2F" in head


@pytest_twisted.ensureDeferred
async def test_slowClientPausesBackend(stack: Stack) -> None:
    """A client that stops reading makes the backend pause; then all bytes arrive."""
    total = 32 * 1024 * 1024
    producing: defer.Deferred[Trickle] = defer.Deferred()

    def handler(request: Any) -> object:
        request.setHeader(b"content-length", b"%d" % total)
        producing.callback(Trickle(request, total))
        return NOT_DONE_YET

    port = await stack.backend(RecordingBackend(handler=handler))
    proxy = await stack.proxy(ROUTE, port=port)
    client = await stack.connect(proxy.port)
    client.transport.pauseProducing()  # type: ignore[union-attr]
    client.transport.write(request(b"GET", b"/api/users/big"))  # type: ignore[union-attr]
    producer = await producing
    sentWhenPaused = await producer.pausedOnce
    # Socket buffers on both sides hold some megabytes at most, never the body.
    assert sentWhenPaused < total // 4
    client.transport.resumeProducing()  # type: ignore[union-attr]
    head = (await client.waitFor(lambda d: b"\r\n\r\n" in d)).index(b"\r\n\r\n") + 4
    data = await client.waitFor(lambda d: len(d) >= head + total)
    assert len(data) == head + total
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")


def _contains(needle: bytes) -> Callable[[bytes], bool]:
    return lambda data: needle in data


@pytest_twisted.ensureDeferred
async def test_uploadReachesBackendBeforeClientFinishes(stack: Stack) -> None:
    """The first body bytes reach the backend while the client still holds the rest."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(ROUTE, port=port)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"POST", b"/api/users/upload", [(b"Content-Length", b"12")], b"first-")
    )
    conn = await raw.waitFor(lambda p: p.received.endswith(b"first-"))
    assert b"POST /upload HTTP/1.1\r\n" in conn.received
    assert b"second" not in conn.received
    client.transport.write(b"second")  # type: ignore[union-attr]
    await raw.waitFor(lambda p: p.received.endswith(b"first-second"))
    conn.transport.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")  # type: ignore[union-attr]
    data = await client.waitFor(lambda d: d.endswith(b"ok"))
    assert data.startswith(b"HTTP/1.1 201 Created\r\n")


@pytest_twisted.ensureDeferred
async def test_chunkedUploadStreamsAsChunked(stack: Stack) -> None:
    """A chunked upload reaches the backend chunk by chunk, re-framed as chunked."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(ROUTE, port=port)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(
            b"PUT",
            b"/api/users/c",
            [(b"Transfer-Encoding", b"chunked")],
            b"5\r\nhello\r\n",
        )
    )
    conn = await raw.waitFor(lambda p: b"hello" in p.received)
    assert b"Transfer-Encoding: chunked\r\n" in conn.received
    client.transport.write(b"6\r\n world\r\n0\r\n\r\n")  # type: ignore[union-attr]
    await raw.waitFor(lambda p: p.received.endswith(b"0\r\n\r\n"))
    assert (
        conn.received.split(b"\r\n\r\n", 1)[1]
        == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    conn.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # type: ignore[union-attr]
    await client.waitFor(lambda d: b"204" in d)


@pytest_twisted.ensureDeferred
async def test_serverSentEventsArriveOneByOne(stack: Stack) -> None:
    """Each SSE event reaches the client before the backend writes the next."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(ROUTE, port=port)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/api/users/events"))  # type: ignore[union-attr]
    conn = await raw.waitFor(lambda p: p.received.endswith(b"\r\n\r\n"))
    conn.transport.write(  # type: ignore[union-attr]
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    for n in range(3):
        event = b"data: event %d\n\n" % n
        conn.transport.write(b"%x\r\n%s\r\n" % (len(event), event))  # type: ignore[union-attr]
        await client.waitFor(_contains(event))
    conn.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
    await client.waitFor(lambda d: d.endswith(b"0\r\n\r\n"))


@pytest_twisted.ensureDeferred
async def test_curlLargeUploadWithExpectContinue(stack: Stack, tmp_path: Any) -> None:
    """
    curl's 100-continue upload of 3 MiB arrives whole at the backend, which
    is asked with Expect too.
    """
    backend = RecordingBackend()
    port = await stack.backend(backend)
    proxy = await stack.proxy(ROUTE, port=port)
    payload = bytes(range(256)) * 4096 * 3
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    out, err, code = await curl(
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{path}",
        f"http://127.0.0.1:{proxy.port}/api/users/upload",
    )
    assert code == 0, err
    assert out == b"backend saw POST /upload"
    assert backend.requests[0].body == payload
    # Expect goes on: the backend (twisted.web) answers the 100 itself.
    assert backend.requests[0].header(b"expect") == b"100-continue"


@pytest_twisted.ensureDeferred
async def test_treqPostRoundTrip(stack: Stack) -> None:
    """treq posts a body and reads the response through the proxy."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    proxy = await stack.proxy(ROUTE, port=port)
    response = await stack.treq().post(
        f"http://127.0.0.1:{proxy.port}/api/users/new", data=b"name=ada"
    )
    assert response.code == 200
    assert await response.text() == "backend saw POST /new"
    assert backend.requests[0].body == b"name=ada"
    assert treq is not None


@pytest_twisted.ensureDeferred
async def test_earlyAnswerKeepsTheConnectionUsable(stack: Stack) -> None:
    """An answer before the upload ends: the rest is dropped, keep-alive goes on."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(ROUTE, port=port)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"POST", b"/api/users/up", [(b"Content-Length", b"10")], b"12345")
    )
    conn = await raw.waitFor(lambda p: p.received.endswith(b"12345"))
    conn.transport.write(b"HTTP/1.1 413 Too Big\r\nContent-Length: 2\r\n\r\nno")  # type: ignore[union-attr]
    await client.waitFor(lambda d: d.endswith(b"\r\n\r\nno"))
    client.transport.write(b"67890")  # type: ignore[union-attr]
    client.transport.write(request(b"GET", b"/api/users/next"))  # type: ignore[union-attr]
    second = await raw.waitFor(lambda p: b"GET /next " in p.received)
    second.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # type: ignore[union-attr]
    data = await client.waitFor(lambda d: d.endswith(b"\r\n\r\nok"))
    assert data.count(b"HTTP/1.1 ") == 2
    assert b"67890" not in b"".join(p.received for p in raw.connections)
