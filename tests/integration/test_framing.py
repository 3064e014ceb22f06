"""
How responses are framed on their way back, and which headers the proxy adds
or takes away on each side, end to end on 127.0.0.1 with real clients.
"""

from __future__ import annotations

import gzip
import http.client
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    RecordingBackend,
    Stack,
    answerEach,
    curl,
    hasReplies,
    parseReplies,
    request,
)
from twisted_proxy.service import ProxyService

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


async def _proxy(
    stack: Stack, port: int, proxy: str = "", route: str = ""
) -> ProxyService:
    return await stack.proxy(CONFIG, port=port, proxy=proxy, route=route)


def _write(proto: Any, data: bytes) -> None:
    proto.transport.write(data)


def _answerAll(response: bytes) -> RawBackend:
    """A raw backend that gives every request the same response."""
    return RawBackend(answerEach(lambda proto, index, head: _write(proto, response)))


@pytest_twisted.ensureDeferred
async def test_contentLengthBodyPassesAsIs(stack: Stack) -> None:
    """A Content-Length response reaches the client with that length, unchunked."""
    raw = _answerAll(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/fixed"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 200
    assert reply.header(b"content-length") == b"11"
    assert reply.header(b"transfer-encoding") is None
    assert reply.body == b"hello world"


@pytest_twisted.ensureDeferred
async def test_chunkedBodyStaysChunkedAndIntact(stack: Stack) -> None:
    """A chunked response reaches an HTTP/1.1 client chunked, its body intact."""
    chunks = [b"first ", b"x" * 70000, b" last"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    raw = _answerAll(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/chunked"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.chunked
    assert reply.header(b"content-length") is None
    assert reply.body == b"".join(chunks)


@pytest_twisted.ensureDeferred
async def test_closeDelimitedBodyReframedForKeepAlive(stack: Stack) -> None:
    """A body ended by the backend's close reaches a 1.1 client chunked, whole."""

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        _write(proto, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        _write(proto, b"until the end " * 1000)
        proto.transport.loseConnection()  # type: ignore[union-attr]

    raw = RawBackend(answerEach(respond))
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/stream"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.chunked
    assert reply.body == b"until the end " * 1000
    # The client's connection survives the backend's close.
    _write(client, request(b"GET", b"/again"))
    replies = parseReplies(await client.waitFor(hasReplies(2)))
    assert replies[1].body == b"until the end " * 1000
    assert len(raw.connections) == 2


@pytest_twisted.ensureDeferred
async def test_chunkedWinsOverBackendContentLength(stack: Stack) -> None:
    """Backend sends Content-Length and chunked: the client never gets that length."""

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        if head.startswith(b"GET /both "):
            _write(
                proto,
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )
        else:
            _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")

    raw = RawBackend(answerEach(respond))
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/both"))
    # Relayed without that length, or refused as a 502: either is safe.
    await client.waitFor(lambda data: b"hello" in data or b" 502 " in data)
    _write(client, request(b"GET", b"/next"))
    data = await client.waitFor(lambda data: data.endswith(b"second"))
    firstHead = data.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
    assert b"content-length: 100" not in firstHead
    # With the stale length the client would read the next response as body.
    first, second = parseReplies(data)
    assert first.status == 502 or first.body == b"hello"
    assert second.body == b"second"


@pytest_twisted.ensureDeferred
async def test_pipelinedRequestsAnsweredInOrder(stack: Stack) -> None:
    """Two requests sent in one write are answered in order on the connection."""
    backend = RecordingBackend()
    proxy = await _proxy(stack, await stack.backend(backend))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/first") + request(b"GET", b"/second"))
    replies = parseReplies(await client.waitFor(hasReplies(2)))
    assert [r.body for r in replies] == [
        b"backend saw GET /first",
        b"backend saw GET /second",
    ]


@pytest_twisted.ensureDeferred
async def test_clientConnectionCloseHonoured(stack: Stack) -> None:
    """A client's Connection: close gets its answer, then the proxy closes."""
    backend = RecordingBackend()
    proxy = await _proxy(stack, await stack.backend(backend))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/bye", [(b"Connection", b"close")]))
    await client.lost
    [reply] = parseReplies(client.received)
    assert reply.body == b"backend saw GET /bye"
    assert backend.requests[0].header(b"connection") in (None, b"close")


@pytest_twisted.ensureDeferred
async def test_http10ClientGetsCloseDelimitedBody(stack: Stack) -> None:
    """An HTTP/1.0 client gets a 1.0 answer, the whole body, then the close."""

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        _write(proto, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nold ")
        _write(proto, b"school")
        proto.transport.loseConnection()  # type: ignore[union-attr]

    raw = RawBackend(answerEach(respond))
    port = await stack.rawBackend(raw)
    proxy = await _proxy(stack, port)
    client = await stack.connect(proxy.port)
    _write(client, b"GET /old HTTP/1.0\r\nUser-Agent: ancient\r\n\r\n")
    await client.lost
    [reply] = parseReplies(client.received, closed=True)
    assert reply.version == b"HTTP/1.0"
    assert reply.status == 200
    assert reply.header(b"transfer-encoding") is None
    assert reply.body == b"old school"
    head = raw.connections[0].received
    assert head.startswith(b"GET /old HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % port in head


@pytest_twisted.ensureDeferred
async def test_http10ClientWithLengthIsClosedAfter(stack: Stack) -> None:
    """An HTTP/1.0 request gets the backend's body and the connection closes."""
    backend = RecordingBackend()
    proxy = await _proxy(stack, await stack.backend(backend))
    client = await stack.connect(proxy.port)
    _write(client, b"GET /plain HTTP/1.0\r\n\r\n")
    await client.lost
    [reply] = parseReplies(client.received)
    assert reply.version == b"HTTP/1.0"
    assert reply.body == b"backend saw GET /plain"
    assert backend.requests[0].uri == b"/plain"


@pytest_twisted.ensureDeferred
async def test_http10KeepAliveIsKept(stack: Stack) -> None:
    """
    An HTTP/1.0 client asking for keep-alive gets it while the length is
    known (Connection: keep-alive, two answers on one connection); a body of
    unknown length still ends with the close.
    """

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        if b" /streamed " in head:
            _write(proto, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            _write(proto, b"4\r\nlast\r\n0\r\n\r\n")
        else:
            _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")

    raw = RawBackend(answerEach(respond))
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    ask = b"\r\nConnection: Keep-Alive\r\n\r\n"
    _write(client, b"GET /a HTTP/1.0" + ask)
    first = await client.waitFor(hasReplies(1))
    assert b"\r\nConnection: keep-alive\r\n" in first
    _write(client, b"GET /b HTTP/1.0" + ask)
    await client.waitFor(hasReplies(2))
    _write(client, b"GET /streamed HTTP/1.0" + ask)
    await client.lost
    replies = parseReplies(client.received, closed=True)
    assert [(r.version, r.status, r.body) for r in replies] == [
        (b"HTTP/1.0", 200, b"one"),
        (b"HTTP/1.0", 200, b"one"),
        (b"HTTP/1.0", 200, b"last"),
    ]
    assert replies[2].header(b"connection") == b"close"
    assert replies[2].header(b"transfer-encoding") is None


@pytest_twisted.ensureDeferred
async def test_headKeepsLengthSendsNoBody(stack: Stack) -> None:
    """HEAD gets the backend's Content-Length and no body; the next request works."""

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        if head.startswith(b"HEAD "):
            _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        else:
            _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget")

    raw = RawBackend(answerEach(respond))
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    _write(client, request(b"HEAD", b"/doc"))
    [head] = parseReplies(await client.waitFor(hasReplies(1, [True])), [True])
    assert head.status == 200
    assert head.header(b"content-length") == b"1234"
    _write(client, request(b"GET", b"/doc"))
    data = await client.waitFor(hasReplies(2, [True]))
    replies = parseReplies(data, [True])
    assert replies[1].body == b"get"
    # Nothing but the two responses: the HEAD left no body bytes behind.
    assert data.endswith(b"\r\n\r\nget")
    assert data.count(b"HTTP/1.1 200") == 2


@pytest.mark.parametrize(
    ("status", "extra"),
    [
        (b"204 No Content", b""),
        (b"304 Not Modified", b'ETag: "v1"\r\nContent-Length: 500\r\n'),
    ],
)
@pytest_twisted.ensureDeferred
async def test_noBodyStatusKeepsConnection(
    stack: Stack, status: bytes, extra: bytes
) -> None:
    """204 and 304 carry no body; the next request on the connection works."""

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        if index == 0:
            _write(proto, b"HTTP/1.1 " + status + b"\r\n" + extra + b"\r\n")
        else:
            _write(proto, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")

    raw = RawBackend(answerEach(respond))
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/first"))
    [first] = parseReplies(await client.waitFor(hasReplies(1)))
    assert first.status == int(status[:3])
    assert first.header(b"transfer-encoding") is None
    _write(client, request(b"GET", b"/second"))
    data = await client.waitFor(hasReplies(2))
    second = parseReplies(data)[1]
    assert second.status == 200
    assert second.body == b"next"
    assert data.split(b"\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(raw.connections) == 1


@pytest_twisted.ensureDeferred
async def test_interimContinueFromBackendSkipped(stack: Stack) -> None:
    """A backend's unasked-for 100 Continue never reaches the client; the 200 does."""
    raw = _answerAll(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
    )
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/interim"))
    data = await client.waitFor(lambda d: d.endswith(b"final"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"100 Continue" not in data


@pytest_twisted.ensureDeferred
async def test_keepAliveReusesOneBackendConnection(stack: Stack) -> None:
    """Two requests on one client connection travel on one backend connection."""
    raw = _answerAll(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    proxy = await _proxy(stack, await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/one"))
    await client.waitFor(hasReplies(1))
    _write(client, request(b"GET", b"/two"))
    replies = parseReplies(await client.waitFor(hasReplies(2)))
    assert [r.body for r in replies] == [b"ok", b"ok"]
    assert len(raw.connections) == 1
    received = raw.connections[0].received
    assert received.count(b"GET /one HTTP/1.1") == 1
    assert received.count(b"GET /two HTTP/1.1") == 1


@pytest_twisted.ensureDeferred
async def test_httpClientKeepAliveAndServerHeader(stack: Stack) -> None:
    """http.client gets two answers on one connection, Server: twisted-proxy."""
    backend = RecordingBackend()
    proxy = await _proxy(stack, await stack.backend(backend))

    def fetchTwice(port: int) -> list[tuple[int, list[str], bytes]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            results = []
            for path in ("/a", "/b"):
                connection.request("GET", path)
                response = connection.getresponse()
                servers = response.headers.get_all("Server") or []
                results.append((response.status, servers, response.read()))
            return results
        finally:
            connection.close()

    results = await deferToThread(fetchTwice, proxy.port)
    assert results == [
        (200, ["twisted-proxy"], b"backend saw GET /a"),
        (200, ["twisted-proxy"], b"backend saw GET /b"),
    ]


@pytest_twisted.ensureDeferred
async def test_serverTokensNoneSendsNoServer(stack: Stack) -> None:
    """server_tokens = "none": no Server on a proxied or an error response."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    proxy = await stack.proxy(
        CONFIG.replace('path = "/"', 'path = "/app/"'),
        port=port,
        proxy='server_tokens = "none"',
        route="",
    )
    base = f"http://127.0.0.1:{proxy.port}"
    out, err, code = await curl("--include", f"{base}/app/x")
    assert code == 0, err
    assert out.startswith(b"HTTP/1.1 200")
    assert b"\r\nserver:" not in out.lower()
    out, err, code = await curl("--include", f"{base}/missing")
    assert code == 0, err
    assert out.startswith(b"HTTP/1.1 404")
    assert b"\r\nserver:" not in out.lower()


@pytest_twisted.ensureDeferred
async def test_responseHeaderDirectivesOnProxiedAndErrors(stack: Stack) -> None:
    """[proxy.response_headers] set/unset apply to proxied, 404 and 400 responses."""

    def handler(request: Any) -> bytes:
        request.setHeader(b"x-powered-by", b"PHP/5.1")
        request.setHeader(b"x-frame-options", b"ALLOWALL")
        return b"page"

    port = await stack.backend(RecordingBackend(handler=handler))
    directives = (
        '[proxy.response_headers]\nunset = ["X-Powered-By"]\n'
        '[proxy.response_headers.set]\n"X-Frame-Options" = "DENY"\n'
    )
    proxy = await stack.proxy(
        CONFIG.replace('path = "/"', 'path = "/app/"'),
        port=port,
        proxy=directives,
        route="",
    )
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/app/page"))
    await client.waitFor(hasReplies(1))
    _write(client, request(b"GET", b"/nowhere"))
    ok, missing = parseReplies(await client.waitFor(hasReplies(2)))
    assert ok.status == 200
    assert ok.body == b"page"
    assert missing.status == 404
    assert missing.header(b"date") is not None
    for reply in (ok, missing):
        assert reply.headerValues(b"x-frame-options") == [b"DENY"]
        assert reply.header(b"x-powered-by") is None
    bad = await stack.connect(proxy.port)
    _write(bad, b"GET / HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n")
    await bad.lost
    [refused] = parseReplies(bad.received)
    assert refused.status == 400
    assert refused.headerValues(b"x-frame-options") == [b"DENY"]


@pytest_twisted.ensureDeferred
async def test_routeRequestHeaderDirectivesReachBackend(stack: Stack) -> None:
    """[route.request_headers] set replaces and unset removes what the backend sees."""
    backend = RecordingBackend()
    directives = (
        '[route.request_headers]\nunset = ["X-Debug"]\n'
        '[route.request_headers.set]\n"X-Env" = "production"\n'
    )
    proxy = await _proxy(stack, await stack.backend(backend), route=directives)
    response = await stack.treq().get(
        f"http://127.0.0.1:{proxy.port}/h",
        headers={"X-Debug": "1", "X-Env": "dev", "X-Other": "kept"},
    )
    await response.content()
    seen = backend.requests[0]
    assert seen.header(b"x-debug") is None
    assert seen.headerValues(b"x-env") == [b"production"]
    assert seen.header(b"x-other") == b"kept"


@pytest_twisted.ensureDeferred
async def test_viaOnAddsViaBothWays(stack: Stack) -> None:
    """via = "on" appends this proxy to Via on the request and on the response."""

    def handler(request: Any) -> bytes:
        request.setHeader(b"via", b"1.1 backend-cache")
        return b"via"

    backend = RecordingBackend(handler=handler)
    proxy = await _proxy(
        stack,
        await stack.backend(backend),
        proxy='via = "on"\nserver_name = "edge.example.test"',
    )
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/via", [(b"Via", b"1.0 client-side")]))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    toBackend = b", ".join(backend.requests[0].headerValues(b"via"))
    assert toBackend == b"1.0 client-side, 1.1 edge.example.test"
    toClient = b", ".join(reply.headerValues(b"via"))
    assert toClient == b"1.1 backend-cache, 1.1 edge.example.test"


@pytest.mark.parametrize("preserve", [True, False])
@pytest_twisted.ensureDeferred
async def test_preserveHost(stack: Stack, preserve: bool) -> None:
    """preserve_host passes the client's Host on; without it the backend's is sent."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    setting = f"preserve_host = {'true' if preserve else 'false'}"
    proxy = await _proxy(stack, port, route=setting)
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/host", host=b"www.example.test"))
    await client.waitFor(hasReplies(1))
    expected = b"www.example.test" if preserve else b"127.0.0.1:%d" % port
    assert backend.requests[0].headerValues(b"host") == [expected]
    assert backend.requests[0].header(b"x-forwarded-host") == b"www.example.test"


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        ('trusted_proxies = ["127.0.0.0/8"]', b"203.0.113.7, 127.0.0.1"),
        ("", b"127.0.0.1"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_trustedProxyExtendsForwardedFor(
    stack: Stack, trusted: str, expected: bytes
) -> None:
    """A trusted peer's X-Forwarded-For is extended; anyone else's is replaced."""
    backend = RecordingBackend()
    proxy = await _proxy(stack, await stack.backend(backend), proxy=trusted)
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/xff", [(b"X-Forwarded-For", b"203.0.113.7")]))
    await client.waitFor(hasReplies(1))
    assert backend.requests[0].headerValues(b"x-forwarded-for") == [expected]


@pytest_twisted.ensureDeferred
async def test_compressGzipsTextHtmlWhenAccepted(stack: Stack) -> None:
    """compress = ["text/html"] gzips an HTML page for a gzip client, not for others."""
    page = b"<html><body>" + b"<p>hello, compressible world</p>" * 500 + b"</html>"

    def handler(request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return page

    port = await stack.backend(RecordingBackend(handler=handler))
    proxy = await _proxy(stack, port, proxy='compress = ["text/html"]')
    url = f"http://127.0.0.1:{proxy.port}/page"
    # curl without --compressed hands over the gzip bytes as they came.
    out, err, code = await curl("--include", "-H", "Accept-Encoding: gzip", url)
    assert code == 0, err
    head, body = out.split(b"\r\n\r\n", 1)
    headLines = head.lower().split(b"\r\n")
    assert b"content-encoding: gzip" in headLines
    assert not any(line.startswith(b"content-length:") for line in headLines)
    assert any(
        line.startswith(b"vary:") and b"accept-encoding" in line for line in headLines
    )
    assert len(body) < len(page) // 4
    assert gzip.decompress(body) == page

    # treq would ask for gzip itself: a hand-made request asks for nothing.
    client = await stack.connect(proxy.port)
    _write(client, request(b"GET", b"/page"))
    [plain] = parseReplies(await client.waitFor(hasReplies(1)))
    assert plain.header(b"content-encoding") is None
    assert plain.header(b"content-length") == b"%d" % len(page)
    assert plain.body == page

    # HEAD is told what its GET would get: gzip, and no body.
    _write(
        client,
        request(b"HEAD", b"/page", [(b"Accept-Encoding", b"gzip")]),
    )
    data = await client.waitFor(lambda d: d.count(b"\r\n\r\n") >= 2)
    head = data.split(b"\r\n\r\n")[1].lower()
    assert b"content-encoding: gzip" in head
    assert data.endswith(b"\r\n\r\n")
