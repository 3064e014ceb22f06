"""
ajp:// routes and balancers against real Tomcats (Debian's tomcat10, each in
a folder of its own with its AJP connector on a free port, a secret and a
jvmRoute): what the servlet saw of the request (body, headers, cookies,
address, TLS), what the client got back, sticky sessions by Tomcat's own
route suffix, failover when a Tomcat stops, and CPING health checks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.support import (
    Stack,
    accessLogLines,
    curl,
    deferLater,
    theReactor,
    tlsListener,
)
from tests.integration.tomcat import SECRET, Tomcat
from twisted_proxy.balancer.state import DOWN, UP
from twisted_proxy.config import load
from twisted_proxy.core.ajp import CPING, END_OF_BODY, ForwardAttributes, forwardRequest
from twisted_proxy.service import ProxyService

ROUTE = """
    [proxy]
    access_log = "{log}"
    {proxy}
    [[listen]]
    endpoint = "tcp:0:interface=127.0.0.1"
    [[route]]
    path = "/app/"
    to = "ajp://127.0.0.1:{port}/"
    secret = "{secret}"
    """

BALANCED = """
    [proxy]
    access_log = false
    [[listen]]
    endpoint = "tcp:0:interface=127.0.0.1"
    [[route]]
    path = "/"
    to = "balancer://web/"
    [balancer.web]
    max_attempts = 1
    [balancer.web.sticky]
    name = "JSESSIONID"
    [balancer.web.health]
    interval = 0.2
    timeout = 0.15
    passes = 1
    fails = 1
    [[balancer.web.member]]
    url = "ajp://127.0.0.1:{one}"
    route = "{routeOne}"
    secret = "{secret}"
    [[balancer.web.member]]
    url = "ajp://127.0.0.1:{two}"
    route = "{routeTwo}"
    secret = "{secret}"
    """


@pytest.fixture(scope="module")
def tomcats(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Tomcat, Tomcat]]:
    one = Tomcat(tmp_path_factory.mktemp("node1"), "node1")
    two = Tomcat(tmp_path_factory.mktemp("node2"), "node2")
    one.start()
    two.start()
    try:
        yield one, two
    finally:
        one.stop()
        two.stop()


async def started(*servers: Tomcat) -> None:
    for server in servers:
        await server.whenListening(theReactor())


def headersOf(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """
    The status line, header lines and body of C{curl -i} output: of the last
    response, after any interim one (a 100 Continue).
    """
    heads, body = raw, b""
    while heads.startswith(b"HTTP/1.1 1"):
        heads = heads.split(b"\r\n\r\n", 1)[1]
    head, _, body = heads.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    pairs = []
    for line in lines:
        name, _, value = line.partition(b": ")
        pairs.append((name, value))
    return status, pairs, body


def header(pairs: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    values = [v for n, v in pairs if n.lower() == name.lower()]
    assert len(values) == 1, (name, pairs)
    return values[0]


async def routeTo(
    stack: Stack, tomcat: Tomcat, tmp_path: Path, proxy: str = "", secret: str = SECRET
) -> tuple[ProxyService, Path]:
    log = tmp_path / "access.log"
    service = await stack.proxy(
        ROUTE, log=log, port=tomcat.port, secret=secret, proxy=proxy
    )
    return service, log


@pytest_twisted.ensureDeferred
async def test_aGetWithHeadersAndCookiesBothWays(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path
) -> None:
    """
    The servlet sees the client's address and port, the Host it asked for, the
    query, a header and the cookies; the client gets the status with its
    standard reason, every header (two of one name, two cookies) and the body.
    """
    one, _ = tomcats
    await started(one)
    proxy, log = await routeTo(stack, one, tmp_path)
    out, err, code = await curl(
        "-i",
        "--local-port",
        "45100-45199",
        "-H",
        "X-Custom: hello there",
        "-H",
        "Cookie: a=1; b=two",
        f"http://127.0.0.1:{proxy.port}/app/index.jsp?x=1&y=%20z",
    )
    assert code == 0, err
    status, pairs, body = headersOf(out)
    assert status == b"HTTP/1.1 200 OK"
    assert header(pairs, b"X-Remote-Addr") == b"127.0.0.1"
    assert 45100 <= int(header(pairs, b"X-Remote-Port")) <= 45199
    assert header(pairs, b"X-Server") == b"127.0.0.1:%d" % proxy.port
    assert header(pairs, b"X-Local-Addr") == b"127.0.0.1"
    assert header(pairs, b"X-Secure") == b"false"
    assert header(pairs, b"X-Scheme") == b"http"
    assert header(pairs, b"X-Query") == b"x=1&y=%20z"
    assert header(pairs, b"X-Custom") == b"hello there"
    assert header(pairs, b"X-Cookies") == b"a=1;b=two;"
    assert [v for n, v in pairs if n == b"X-Many"] == [b"one", b"two"]
    cookies = [v for n, v in pairs if n.lower() == b"set-cookie"]
    assert len(cookies) == 2
    assert cookies[0].startswith(b"JSESSIONID=")
    assert cookies[0].split(b";")[0].endswith(b".node1")
    assert cookies[1].startswith(b"fromTomcat=yes")
    assert body == b"method=GET uri=/index.jsp body=0\n"
    assert header(pairs, b"Content-Length") == b"%d" % len(body)
    (line,) = accessLogLines(proxy, log)
    assert '"GET /app/index.jsp?x=1&y=%20z HTTP/1.1" 200' in line


@pytest.mark.parametrize("chunked", [False, True])
@pytest_twisted.ensureDeferred
async def test_aMebibyteUpload(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path, chunked: bool
) -> None:
    """1 MiB reaches the servlet byte for byte, with a length or chunked."""
    one, _ = tomcats
    await started(one)
    proxy, _ = await routeTo(stack, one, tmp_path)
    body = os.urandom(1 << 20)
    upload = tmp_path / "upload"
    upload.write_bytes(body)
    framing = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    out, err, code = await curl(
        "-i",
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        "Expect: 100-continue",
        *framing,
        "--data-binary",
        f"@{upload}",
        f"http://127.0.0.1:{proxy.port}/app/index.jsp",
    )
    assert code == 0, err
    status, pairs, text = headersOf(out)
    assert status == b"HTTP/1.1 200 OK"
    assert header(pairs, b"X-Body-Length") == b"1048576"
    assert header(pairs, b"X-Body-SHA256") == hashlib.sha256(body).hexdigest().encode()
    assert header(pairs, b"X-Content-Length") == (b"-1" if chunked else b"1048576")
    assert text == b"method=POST uri=/index.jsp body=1048576\n"


@pytest_twisted.ensureDeferred
async def test_aWebSocketHandshakeIsAPlainRequest(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path
) -> None:
    """AJP carries no WebSocket: the handshake reaches Tomcat as a plain GET."""
    one, _ = tomcats
    await started(one)
    proxy, _ = await routeTo(stack, one, tmp_path)
    out, err, code = await curl(
        "-i",
        "-H", "Connection: Upgrade",
        "-H", "Upgrade: websocket",
        "-H", "Sec-WebSocket-Version: 13",
        "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        f"http://127.0.0.1:{proxy.port}/app/index.jsp",
    )  # fmt: skip
    assert code == 0, err
    status, pairs, body = headersOf(out)
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"method=GET uri=/index.jsp body=0\n"


@pytest_twisted.ensureDeferred
async def test_aMebibyteDownload(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path
) -> None:
    """1 MiB (and a HEAD of it) from Tomcat, byte for byte, with its framing."""
    one, _ = tomcats
    await started(one)
    proxy, _ = await routeTo(stack, one, tmp_path)
    url = f"http://127.0.0.1:{proxy.port}/app/big.jsp?size=1048576"
    response = await stack.treq().get(url)
    assert response.code == 200
    body = await response.content()
    assert body == (bytes(range(256)) * 4096)
    response = await stack.treq().head(url)
    assert response.code == 200
    assert await response.content() == b""


@pytest_twisted.ensureDeferred
async def test_overTLSTheServletSeesASecureRequest(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path
) -> None:
    """TLS ended at the proxy: isSecure, https, the cipher, as the servlet sees them."""
    one, _ = tomcats
    await started(one)
    port, ca = await tlsListener(
        stack,
        tmp_path,
        f"""
        alpn = ["h2", "http/1.1"]
        [[route]]
        path = "/"
        to = "ajp://127.0.0.1:{one.port}/"
        secret = "{SECRET}"
        """,
    )
    out, err, code = await curl(
        "-i", "--http1.1", "--cacert", str(ca), f"https://localhost:{port}/index.jsp"
    )
    assert code == 0, err
    status, pairs, _ = headersOf(out)
    assert status == b"HTTP/1.1 200 OK"
    assert header(pairs, b"X-Secure") == b"true"
    assert header(pairs, b"X-Scheme") == b"https"
    assert header(pairs, b"X-Server") == b"localhost:%d" % port
    assert header(pairs, b"X-Cipher").startswith(b"TLS_") or b"-" in header(
        pairs, b"X-Cipher"
    )
    assert header(pairs, b"X-Cipher") != b"null"
    out, err, code = await curl(
        "-i", "--http2", "--cacert", str(ca), f"https://localhost:{port}/index.jsp"
    )
    assert code == 0, err
    status, pairs, _ = headersOf(out)
    assert status.strip() == b"HTTP/2 200"
    assert header(pairs, b"x-secure") == b"true"


@pytest.mark.parametrize("chunked", [False, True])
@pytest_twisted.ensureDeferred
async def test_aBodyOfAJPPacketsIsOnlyABody(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path, chunked: bool
) -> None:
    """
    A body made of AJP packets (a FORWARD_REQUEST for another page, the end
    of a body, a CPING) reaches the servlet as body bytes and nothing else:
    one request, its own answer, and the connection's next request answered
    as itself (CVE-2022-26377).
    """
    one, _ = tomcats
    await started(one)
    proxy, log = await routeTo(stack, one, tmp_path)
    smuggled = forwardRequest(
        b"GET", b"HTTP/1.1", b"/smuggled.jsp", b"192.0.2.66", b"h", 80, False,
        [(b"Host", b"h")], ForwardAttributes(secret=SECRET.encode()),
    )  # fmt: skip
    body = END_OF_BODY + smuggled + CPING + END_OF_BODY
    framing = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    upload = tmp_path / "upload"
    upload.write_bytes(body)
    url = f"http://127.0.0.1:{proxy.port}/app/index.jsp"
    out, err, code = await curl(
        "-i", *framing, "--data-binary", f"@{upload}", url, "--next", "-i", url
    )
    assert code == 0, err
    first, second = out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    _, pairs, text = headersOf(b"HTTP/1.1 200 OK\r\n" + first)
    assert header(pairs, b"X-Body-Length") == b"%d" % len(body)
    assert header(pairs, b"X-Body-SHA256") == hashlib.sha256(body).hexdigest().encode()
    assert text == b"method=POST uri=/index.jsp body=%d\n" % len(body)
    _, pairs, text = headersOf(b"HTTP/1.1 200 OK\r\n" + second)
    assert text == b"method=GET uri=/index.jsp body=0\n"
    assert header(pairs, b"X-Remote-Addr") == b"127.0.0.1"
    assert [line.split('"')[1] for line in accessLogLines(proxy, log)] == [
        "POST /app/index.jsp HTTP/1.1",
        "GET /app/index.jsp HTTP/1.1",
    ]


@pytest_twisted.ensureDeferred
async def test_aWrongSecretIsTomcats403(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path
) -> None:
    one, _ = tomcats
    await started(one)
    proxy, _ = await routeTo(stack, one, tmp_path, secret="not-the-secret")
    out, err, code = await curl("-i", f"http://127.0.0.1:{proxy.port}/app/index.jsp")
    assert code == 0, err
    status, _, _ = headersOf(out)
    assert status == b"HTTP/1.1 403 Forbidden"


@pytest_twisted.ensureDeferred
async def test_aHeadTooLargeForAPacketIs431(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path
) -> None:
    """Headers that do not fit one AJP packet: 431 from the proxy, nothing sent."""
    one, _ = tomcats
    await started(one)
    proxy, log = await routeTo(stack, one, tmp_path)
    out, err, code = await curl(
        "-i",
        "-H",
        "X-Big: " + "x" * 9000,
        f"http://127.0.0.1:{proxy.port}/app/index.jsp",
    )
    assert code == 0, err
    status, _, body = headersOf(out)
    assert status.startswith(b"HTTP/1.1 431 ")
    assert b"too large for the AJP backend" in body
    # The route still works: nothing was left half sent.
    out, err, code = await curl("-i", f"http://127.0.0.1:{proxy.port}/app/index.jsp")
    assert headersOf(out)[0] == b"HTTP/1.1 200 OK"


@pytest_twisted.ensureDeferred
async def test_connectionsAreReusedAndCpingedWhenIdle(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path
) -> None:
    """
    With safe_reuse = 0 every reuse is preceded by a CPING: twenty requests,
    GETs and POSTs, all answered on one or two connections (a request may
    come before the last one's END_RESPONSE has freed its connection).
    """
    one, _ = tomcats
    await started(one)
    proxy, _ = await routeTo(stack, one, tmp_path, proxy="safe_reuse = 0")
    http = stack.treq()
    ports = set()
    for n in range(20):
        url = f"http://127.0.0.1:{proxy.port}/app/index.jsp"
        if n % 2:
            response = await http.post(url, data=b"z" * n)
        else:
            response = await http.get(url)
        assert response.code == 200
        await response.content()
        assert response.headers.getRawHeaders(b"x-body-length") == [
            b"%d" % (n if n % 2 else 0)
        ]
        ports.add(response.headers.getRawHeaders(b"x-remote-port")[0])
    # The client's port as the servlet saw it is the client's, not the
    # proxy's: one connection from treq's pool.
    assert len(ports) == 1
    pool = proxy.context.pool
    assert 1 <= len(pool._all) <= 2


async def balanced(stack: Stack, one: Tomcat, two: Tomcat) -> ProxyService:
    return await stack.proxy(
        BALANCED,
        one=one.port,
        two=two.port,
        routeOne=one.route,
        routeTwo=two.route,
        secret=SECRET,
    )


async def sessionOn(stack: Stack, proxy: ProxyService, route: str) -> bytes:
    """A JSESSIONID that Tomcat with C{route} gave out (bounded tries)."""
    for _ in range(20):
        # A client of its own each time: no cookie kept from the last.
        response = await stack.treq().get(f"http://127.0.0.1:{proxy.port}/index.jsp")
        await response.content()
        session: bytes = response.headers.getRawHeaders(b"x-session")[0]
        if session.endswith(b"." + route.encode()):
            return session
    raise AssertionError(f"no session on {route} in 20 requests")


async def sessionSeen(stack: Stack, proxy: ProxyService, session: bytes) -> bytes:
    """The session the servlet saw for a request that sends C{session}."""
    response = await stack.treq().get(
        f"http://127.0.0.1:{proxy.port}/index.jsp",
        headers={b"Cookie": [b"JSESSIONID=" + session]},
    )
    assert response.code == 200
    await response.content()
    seen = response.headers.getRawHeaders(b"x-session")[0]
    assert isinstance(seen, bytes)
    return seen


@pytest_twisted.ensureDeferred
async def test_stickyByTomcatsJvmRoute(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat]
) -> None:
    """A session stays with the Tomcat whose jvmRoute ends its id, each way."""
    one, two = tomcats
    await started(one, two)
    proxy = await balanced(stack, one, two)
    for route in ("node1", "node2"):
        session = await sessionOn(stack, proxy, route)
        for _ in range(8):
            assert await sessionSeen(stack, proxy, session) == session


@pytest_twisted.ensureDeferred
async def test_aTomcatStoppedMidTestFailsOver(
    stack: Stack, tomcats: tuple[Tomcat, Tomcat], tmp_path: Path
) -> None:
    """
    Tomcat node3 stops: its sticky client is served by node1 at once (a new
    session there), every request answered; the CPING check finds it down,
    and up again once it is back.
    """
    one, _ = tomcats
    three = Tomcat(tmp_path / "node3", "node3")
    three.start()
    try:
        await started(one, three)
        proxy = await balanced(stack, one, three)
        members = {m.member.route: m for m in proxy.balancer.members("web")}
        for _ in range(100):
            if members["node1"].health == UP and members["node3"].health == UP:
                break
            await deferLater(stack.reactor, 0.05)
        assert members["node3"].health == UP
        assert members["node3"].lastCheckResult == "CPONG"
        session = await sessionOn(stack, proxy, "node3")
        await deferToThread(three.stop)
        for _ in range(10):
            seen = await sessionSeen(stack, proxy, session)
            assert seen.endswith(b".node1")
        for _ in range(100):
            if members["node3"].health == DOWN:
                break
            await deferLater(stack.reactor, 0.05)
        assert members["node3"].health == DOWN
        assert members["node1"].health == UP
    finally:
        await deferToThread(three.stop)


@pytest_twisted.ensureDeferred
async def test_shippedTomcatExample(stack: Stack, tmp_path: Path) -> None:
    """
    etc/tomcat-ajp.toml as shipped (listening on a free port, its members'
    ports the test Tomcats'): two Tomcats configured as its comment says
    answer through it, each session staying on its Tomcat.
    """
    etc = Path(__file__).resolve().parents[2] / "etc" / "tomcat-ajp.toml"
    config = load(str(etc))
    [(name, tomcat)] = config.balancers
    secrets = {m.secret for m in tomcat.members}
    assert secrets == {"change-this-secret"}
    one = Tomcat(tmp_path / "node1", "node1", secret="change-this-secret")
    two = Tomcat(tmp_path / "node2", "node2", secret="change-this-secret")
    one.start()
    two.start()
    try:
        await started(one, two)
        members = tuple(
            replace(m, url=f"ajp://127.0.0.1:{t.port}", port=t.port)
            for m, t in zip(tomcat.members, (one, two), strict=True)
        )
        [listener] = config.listen
        config = replace(
            config,
            listen=(replace(listener, endpoint="tcp:0:interface=127.0.0.1"),),
            balancers=((name, replace(tomcat, members=members)),),
        )
        proxy = ProxyService(config, stack.reactor)
        proxy.startService()
        stack.services.append(proxy)
        for route in ("node1", "node2"):
            session = await sessionOn(stack, proxy, route)
            for _ in range(3):
                assert await sessionSeen(stack, proxy, session) == session
    finally:
        await deferToThread(one.stop)
        await deferToThread(two.stop)
