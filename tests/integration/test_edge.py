"""
Safe at the edge, end to end over HTTP/1.1 on 127.0.0.1: paths normalised
before routing and access lists (no way around an "/admin/" rule), what a
backend receives for each, hosts that are checked, what the proxy answers
itself (OPTIONS *, TRACE, HTTP/1.2), and what the access log keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import deferLater

from tests.integration.support import (
    RawBackend,
    RawClient,
    RecordingBackend,
    Reply,
    Stack,
    answerEach,
    hasReplies,
    parseReplies,
    request,
    theReactor,
)
from twisted_proxy.service import ProxyService

# "/admin/" is open only to a network no test client is in; "/" to all.
GUARDED = """
[proxy]
access_log = {log}
access_log_format = "%h \\"%r\\" %>s %U%q"
server_name = "proxy.example.test"
header_timeout = 30.0
{proxy}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/admin/"
to = "http://127.0.0.1:{admin}/"
allow = ["192.0.2.0/24"]
[[route]]
path = "/api/users/"
to = "http://127.0.0.1:{users}/"
[[route]]
path = "/api/payments/"
to = "http://127.0.0.1:{payments}/"
[[route]]
path = "/"
to = "http://127.0.0.1:{main}/"
{route}
"""


class Site:
    """A proxy with four recording backends behind GUARDED's routes."""

    def __init__(self, proxy: ProxyService, **backends: RecordingBackend) -> None:
        self.proxy = proxy
        self.backends = backends

    def received(self) -> dict[str, list[bytes]]:
        """The request-targets each backend received, by backend."""
        return {
            name: [r.uri for r in backend.requests]
            for name, backend in self.backends.items()
            if backend.requests
        }


async def _site(
    stack: Stack, proxy: str = "", route: str = "", log: str = "false"
) -> Site:
    backends = {
        name: RecordingBackend(name) for name in ("admin", "users", "payments", "main")
    }
    ports = {name: await stack.backend(b) for name, b in backends.items()}
    route = route.format(**ports)
    service = await stack.proxy(
        GUARDED,
        proxy=proxy,
        route=route,
        log=log,
        **{k: str(v) for k, v in ports.items()},
    )
    return Site(service, **backends)


def _write(proto: Any, data: bytes) -> None:
    proto.transport.write(data)


async def _ask(stack: Stack, site: Site, data: bytes) -> Reply:
    """Send C{data} on a new connection; the first response."""
    client = await stack.connect(site.proxy.port)
    _write(client, data)
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))[:1]
    return reply


async def _refusedAtOnce(client: RawClient, data: bytes) -> Reply:
    """
    Send C{data}: the one response and the close must come without waiting
    for any timer (header_timeout is 30 s; a 5 s guard fails the test).
    """
    _write(client, data)
    guard = deferLater(theReactor(), 5.0, lambda: None)
    first = await defer.DeferredList(
        [client.lost, guard], fireOnOneCallback=True, consumeErrors=True
    )
    guard.cancel()
    assert first[1] == 0, "no answer within 5 s"
    [reply] = parseReplies(client.received)
    return reply


# -- an "/admin/" rule cannot be walked past ---------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/admin/secret",
        b"//admin/secret",
        b"///admin//secret",
        b"/./admin/secret",
        b"/x/../admin/secret",
        b"/%61dmin/secret",
        b"/%2e/admin/secret",
        b"/admin;x/secret",
        b"/;x/admin/secret",
        b"/ADMIN/../admin/secret",
        b"/admin/",
        b"/admin/?x=1",
    ],
)
@pytest_twisted.ensureDeferred
async def test_adminRuleHoldsForEverySpelling(stack: Stack, target: bytes) -> None:
    """Every spelling of a path under /admin/ meets /admin/'s access list: 403."""
    site = await _site(stack)
    reply = await _ask(stack, site, request(b"GET", target))
    assert reply.status == 403
    assert reply.body == b"forbidden\n"
    assert site.received() == {}


@pytest_twisted.ensureDeferred
async def test_adminRuleOffWhenSlashesAreNotMerged(stack: Stack) -> None:
    """
    With merge_slashes = false, "//admin/secret" is not under "/admin/": the
    catch-all route gets it, as sent (README says so).
    """
    site = await _site(stack, proxy="merge_slashes = false")
    reply = await _ask(stack, site, request(b"GET", b"//admin/secret"))
    assert reply.status == 200
    assert site.received() == {"main": [b"//admin/secret"]}


@pytest.mark.parametrize(
    ("target", "backend", "received"),
    [
        # Apache sends this one to payments as "/x".
        (b"/api/users/../payments/x", "payments", b"/x"),
        (b"/api//users/7", "users", b"/7"),
        (b"/api/users/%7e%61?q=%7e%61", "users", b"/~a?q=%7e%61"),
        (b"/api/users/a%2fb%3F", "users", b"/a%2Fb%3F"),
        (b"/static/caf\xc3\xa9.css", "main", b"/static/caf%C3%A9.css"),
        (b"/s?q={a}|^[b]`", "main", b"/s?q={a}|^[b]`"),
        # Path parameters: ignored for matching, forwarded.
        (b"/api/users;v=2/7;x", "users", b"/7;x"),
        (b"/app/page;jsessionid=ABC.1?x", "main", b"/app/page;jsessionid=ABC.1?x"),
        # "/api/users/" does not answer "/api/users": the next route does.
        (b"/api/users", "main", b"/api/users"),
        (b"/api/users?x=1", "main", b"/api/users?x=1"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_backendReceivesTheNormalisedPath(
    stack: Stack, target: bytes, backend: str, received: bytes
) -> None:
    """The route chosen and the target forwarded come from the normalised path."""
    site = await _site(stack)
    reply = await _ask(stack, site, request(b"GET", target))
    assert reply.status == 200
    assert site.received() == {backend: [received]}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (b"/../../etc/passwd", b"the path climbs above the root\n"),
        (b"/%2e%2e/%2e%2e/etc/passwd", b"the path climbs above the root\n"),
        (b"/a%00b", b"%00 in the request path\n"),
        (b"/a%zz", b"invalid percent-encoding in the request path\n"),
        (b"/a#frag", b"a fragment in the request target\n"),
        (b"/..;/admin/secret", b"a dot segment with parameters in the path\n"),
        (b"/a\x01b", b"a control character in the request head\n"),
        (b"/a\x7fb", b"a control character in the request head\n"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_unservableTargetsRefused(
    stack: Stack, target: bytes, message: bytes
) -> None:
    """Targets a server must not guess at get 400, closed; no backend sees them."""
    site = await _site(stack)
    client = await stack.connect(site.proxy.port)
    reply = await _refusedAtOnce(client, request(b"GET", target))
    assert reply.status == 400
    assert reply.body == message
    assert reply.header(b"connection") == b"close"
    assert site.received() == {}


# -- hosts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        b"evil.example/x?y",
        b'evil.com/"><x',
        b"user@proxy.example.test",
        b"a b",
        b"",
        b"example.test:80:80",
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformedHostRefused(stack: Stack, host: bytes) -> None:
    """A Host that is not host[:port] is a 400: it never reaches a backend."""
    site = await _site(stack)
    client = await stack.connect(site.proxy.port)
    reply = await _refusedAtOnce(client, request(b"GET", b"/", host=host))
    assert reply.status == 400
    assert reply.body == b"malformed Host header\n"
    assert site.received() == {}


@pytest_twisted.ensureDeferred
async def test_absoluteFormAuthorityChecked(stack: Stack) -> None:
    """An absolute-form target's authority is checked like a Host."""
    site = await _site(stack)
    client = await stack.connect(site.proxy.port)
    reply = await _refusedAtOnce(
        client, request(b"GET", b"http://user@proxy.example.test/")
    )
    assert reply.status == 400
    ok = await _ask(stack, site, request(b"GET", b"http://proxy.example.test./a//b?c"))
    assert ok.status == 200
    assert site.received() == {"main": [b"/a/b?c"]}


@pytest_twisted.ensureDeferred
async def test_preservedHostOfHTTP10WithoutHost(stack: Stack) -> None:
    """
    preserve_host with an HTTP/1.0 request that has no Host: the backend gets
    server_name, as Apache sends, never its own address.
    """
    site = await _site(stack, proxy="preserve_host = true")
    client = await stack.connect(site.proxy.port)
    _write(client, b"GET /p HTTP/1.0\r\n\r\n")
    await client.lost
    assert parseReplies(client.received, closed=True)[0].status == 200
    [seen] = site.backends["main"].requests
    assert seen.headerValues(b"host") == [b"proxy.example.test"]
    assert seen.header(b"x-forwarded-host") is None


@pytest_twisted.ensureDeferred
async def test_locationRewrittenWithTheCheckedHost(stack: Stack) -> None:
    """A redirect from the backend comes back naming the client's (valid) Host."""
    raw = RawBackend(
        answerEach(
            lambda proto, index, head: _write(
                proto,
                b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/next\r\n"
                b"Content-Length: 0\r\n\r\n" % proto.transport.getHost().port,  # type: ignore[union-attr]
            )
        )
    )
    port = await stack.rawBackend(raw)
    service = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [[route]]
        path = "/"
        to = "http://127.0.0.1:{port}/"
        """,
        port=port,
    )
    client = await stack.connect(service.port)
    _write(client, request(b"GET", b"/", host=b"www.example.test:8080"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.header(b"location") == b"http://www.example.test:8080/next"


# -- what the proxy answers itself ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_optionsAsteriskAnsweredByTheProxy(stack: Stack) -> None:
    """OPTIONS * gets 200 with Allow from the proxy; no backend is asked."""
    site = await _site(stack)
    client = await stack.connect(site.proxy.port)
    _write(client, request(b"OPTIONS", b"*") + request(b"GET", b"/after"))
    replies = parseReplies(await client.waitFor(hasReplies(2)))
    assert replies[0].status == 200
    assert replies[0].header(b"allow") == (
        b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"
    )
    assert replies[0].header(b"content-length") == b"0"
    assert replies[0].header(b"server") == b"twisted-proxy"
    assert replies[1].status == 200
    assert site.received() == {"main": [b"/after"]}


@pytest_twisted.ensureDeferred
async def test_asteriskOnlyForOptions(stack: Stack) -> None:
    """The target "*" with any other method is a 400."""
    site = await _site(stack)
    client = await stack.connect(site.proxy.port)
    reply = await _refusedAtOnce(client, request(b"GET", b"*"))
    assert reply.status == 400
    assert site.received() == {}


@pytest_twisted.ensureDeferred
async def test_traceRefusedUnlessTheRouteAllowsIt(stack: Stack) -> None:
    """TRACE gets 405 with Allow; a route with trace = true passes it on."""
    site = await _site(
        stack,
        route='[[route]]\npath = "/debug/"\nto = "http://127.0.0.1:{main}/"\n'
        "trace = true",
    )
    refused = await _ask(stack, site, request(b"TRACE", b"/x"))
    assert refused.status == 405
    assert refused.header(b"allow") == b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"
    assert site.received() == {}
    passed = await _ask(stack, site, request(b"TRACE", b"/debug/x"))
    assert passed.status == 200
    assert site.received() == {"main": [b"/x"]}
    assert site.backends["main"].requests[0].method == b"TRACE"


@pytest_twisted.ensureDeferred
async def test_laterHTTP1MinorAnsweredAsHTTP11(stack: Stack) -> None:
    """An HTTP/1.2 request is served and answered as HTTP/1.1, not 505."""
    site = await _site(stack)
    client = await stack.connect(site.proxy.port)
    _write(client, b"GET /v HTTP/1.2\r\nHost: h\r\n\r\n" + request(b"GET", b"/w"))
    replies = parseReplies(await client.waitFor(hasReplies(2)))
    assert [(r.version, r.status) for r in replies] == [
        (b"HTTP/1.1", 200),
        (b"HTTP/1.1", 200),
    ]
    assert site.received() == {"main": [b"/v", b"/w"]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\nHost: h\n\n", b"bare LF in the request head\n"),
        (b"GET / HTTP/1.1\nHost: h\n", b"bare LF in the request head\n"),
        (b"GET /\r\n", b"HTTP/0.9 request (no protocol version)\n"),
        (
            b"GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n",
            b"bare CR or LF in the request head\n",
        ),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", b"HTTP version not supported\n"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformedHeadsRefusedAtOnce(
    stack: Stack, data: bytes, message: bytes
) -> None:
    """
    Bare-LF lines and HTTP/0.9 requests get their 400 (or 505) at once,
    never 408 after header_timeout; the connection is closed.
    """
    site = await _site(stack)
    client = await stack.connect(site.proxy.port)
    reply = await _refusedAtOnce(client, data)
    assert reply.status in (400, 505)
    assert reply.body == message
    assert reply.header(b"connection") == b"close"
    assert site.received() == {}


# -- what reaches the backend -----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_clientClaimsDropped(stack: Stack) -> None:
    """
    Header names with "_" never reach the backend, nor a client's own
    Forwarded and X-Real-IP: the proxy's X-Forwarded-For names the client.
    """
    site = await _site(stack)
    reply = await _ask(
        stack,
        site,
        request(
            b"POST",
            b"/form",
            [
                (b"X_Forwarded_For", b"203.0.113.9"),
                (b"Content_Length", b"100"),
                (b"X-Real-IP", b"203.0.113.9"),
                (b"Forwarded", b"for=203.0.113.9"),
                (b"X-Keep", b"yes"),
                (b"Content-Length", b"5"),
            ],
            b"hello",
        ),
    )
    assert reply.status == 200
    [seen] = site.backends["main"].requests
    names = {n.lower() for n, _ in seen.headers}
    assert not {b"x_forwarded_for", b"content_length", b"x-real-ip", b"forwarded"} & (
        names
    )
    assert seen.header(b"x-keep") == b"yes"
    assert seen.header(b"x-forwarded-for") == b"127.0.0.1"
    assert seen.body == b"hello"


@pytest_twisted.ensureDeferred
async def test_trustedProxysClaimsKept(stack: Stack) -> None:
    """From a trusted proxy, Forwarded and X-Real-IP are passed on."""
    site = await _site(stack, proxy='trusted_proxies = ["127.0.0.0/8"]')
    await _ask(
        stack,
        site,
        request(
            b"GET",
            b"/",
            [(b"X-Real-IP", b"203.0.113.9"), (b"Forwarded", b"for=203.0.113.9")],
        ),
    )
    [seen] = site.backends["main"].requests
    assert seen.header(b"x-real-ip") == b"203.0.113.9"
    assert seen.header(b"forwarded") == b"for=203.0.113.9"


# -- the access log: what was received, and what was routed -----------------------


@pytest_twisted.ensureDeferred
async def test_accessLogKeepsTheRequestLineAndTheNormalisedPath(
    stack: Stack, tmp_path: Path
) -> None:
    """%r is the request line as received (the evidence), %U the normalised path."""
    log = tmp_path / "access.log"
    site = await _site(stack, log=f'"{log}"')
    await _ask(stack, site, request(b"GET", b"//x/./../admin;p/secret?q=1"))
    client = await stack.connect(site.proxy.port)
    await _refusedAtOnce(client, b"GET /a HTTP/1.1\nHost: h\n\n")
    await site.proxy.stopService()
    lines = log.read_text().splitlines()
    assert lines == [
        '127.0.0.1 "GET //x/./../admin;p/secret?q=1 HTTP/1.1" 403 /admin;p/secret?q=1',
        '127.0.0.1 "GET /a HTTP/1.1" 400 /a',
    ]


@pytest_twisted.ensureDeferred
async def test_stickyPathParameterSurvivesNormalisation(stack: Stack) -> None:
    """
    A ;jsessionid= path parameter still names the member once the path is
    normalised, and reaches that member unchanged.
    """
    one, two = RecordingBackend("one"), RecordingBackend("two")
    ports = [await stack.backend(one), await stack.backend(two)]
    service = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [[route]]
        path = "/app/"
        to = "balancer://b/"
        [balancer.b]
        sticky = {{ name = "JSESSIONID" }}
        [[balancer.b.member]]
        url = "http://127.0.0.1:{one}"
        route = "n1"
        [[balancer.b.member]]
        url = "http://127.0.0.1:{two}"
        route = "n2"
        """,
        one=ports[0],
        two=ports[1],
    )
    client = await stack.connect(service.port)
    targets = [
        b"/app/cart;jsessionid=ABC.n2",
        b"//app/./x/../cart;jsessionid=ABC.n2?q=1",
        b"/%61pp/cart;jsessionid=ABC.n2",
    ]
    _write(client, b"".join(request(b"GET", t) for t in targets))
    replies = parseReplies(await client.waitFor(hasReplies(3)))
    assert [r.status for r in replies] == [200, 200, 200]
    assert one.requests == []
    assert [r.uri for r in two.requests] == [
        b"/cart;jsessionid=ABC.n2",
        b"/cart;jsessionid=ABC.n2?q=1",
        b"/cart;jsessionid=ABC.n2",
    ]
