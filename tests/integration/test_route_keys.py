"""
The route keys C{aliases}, C{match}, C{exclude} and C{connect_timeout} end to
end on 127.0.0.1: real backends record what they were asked for (path and
query), a raw client checks what it got back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

from tests.integration.support import (
    RawBackend,
    RecordingBackend,
    Reply,
    Stack,
    hasReplies,
    parseReplies,
    request,
)
from tests.integration.wspeers import AsyncioThread
from twisted_proxy.service import ProxyService

HEAD = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
"""


async def ask(
    stack: Stack,
    proxy: ProxyService,
    target: bytes,
    host: bytes = b"proxy.test",
    method: bytes = b"GET",
    body: bytes = b"",
) -> Reply:
    """One request on a connection of its own; the reply."""
    client = await stack.connect(proxy.port)
    headers = [(b"Content-Length", b"%d" % len(body))] if body else []
    client.transport.write(request(method, target, headers, body, host))  # type: ignore[union-attr]
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))[:1]
    return reply


def uris(backend: RecordingBackend) -> list[bytes]:
    """The request-targets C{backend} received, in order."""
    return [r.uri for r in backend.requests]


# -- aliases ----------------------------------------------------------------------


async def aliased(
    stack: Stack,
) -> tuple[ProxyService, RecordingBackend, RecordingBackend, int]:
    """
    A route on example.test and its aliases, and a host-less "/" route
    whose backend redirects to the first's; and the first's port.
    """

    def redirect(request: Any) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", b"http://127.0.0.1:%d/login" % ports["a"])
        return b""

    a = RecordingBackend("a")
    main = RecordingBackend("main", redirect)
    ports = {"a": await stack.backend(a), "main": await stack.backend(main)}
    proxy = await stack.proxy(
        HEAD
        + """
        [[route]]
        host = "example.test"
        aliases = ["www.example.test", "*.example.org"]
        path = "/a/"
        to = "http://127.0.0.1:{a}/"
        [[route]]
        path = "/"
        to = "http://127.0.0.1:{main}/"
        """,
        **{name: str(port) for name, port in ports.items()},
    )
    return proxy, a, main, ports["a"]


@pytest_twisted.ensureDeferred
async def test_aliasesAreServedAsTheHost(stack: Stack) -> None:
    """Each alias reaches the route; another name falls to the host-less one."""
    proxy, a, main, _ = await aliased(stack)
    for host in (b"example.test", b"WWW.example.test:8080", b"x.example.org"):
        reply = await ask(stack, proxy, b"/a/x?q=1", host)
        assert (reply.status, reply.body) == (200, b"a saw GET /x?q=1")
    reply = await ask(stack, proxy, b"/a/x?q=1", b"example.org")
    assert reply.status == 302
    assert uris(a) == [b"/x?q=1"] * 3
    assert uris(main) == [b"/a/x?q=1"]


@pytest_twisted.ensureDeferred
async def test_aliasesInReverseAndAbsoluteForm(stack: Stack) -> None:
    """
    A backend URL of the aliased route is rewritten for a request on an
    alias, as for the host; an absolute-form request may name an alias.
    """
    proxy, a, _, aPort = await aliased(stack)
    for host in (b"www.example.test", b"x.example.org"):
        reply = await ask(stack, proxy, b"/go", host)
        assert reply.header(b"location") == b"http://%s/a/login" % host
    reply = await ask(stack, proxy, b"/go", b"other.test")
    assert reply.header(b"location") == b"http://127.0.0.1:%d/login" % aPort
    target = b"http://x.example.org/a/abs"
    reply = await ask(stack, proxy, target, b"x.example.org")
    assert (reply.status, reply.body) == (200, b"a saw GET /abs")
    reply = await ask(stack, proxy, b"http://elsewhere.test/a/abs", b"elsewhere.test")
    assert reply.status == 403
    assert uris(a) == [b"/abs"]


# -- match ------------------------------------------------------------------------

MATCHED = """
[[route]]
match = "^/img/(.*\\\\.gif)$"
to = "http://127.0.0.1:{img}/static/$1"
[[route]]
match = "^/api/v[0-9]+/"
to = "http://127.0.0.1:{api}/base"
[[route]]
match = "^/pool/([a-z]+)/(.*)$"
to = "balancer://pool/m/$2/$1"
[[route]]
match = "^/f/a(.*)$"
to = "http://127.0.0.1:{api}/files/$1"
[[route]]
path = "/"
to = "http://127.0.0.1:{main}/"
[[balancer.pool.member]]
url = "http://127.0.0.1:{member}"
"""


async def matched(stack: Stack) -> tuple[ProxyService, dict[str, RecordingBackend]]:
    """A proxy on MATCHED, and its backends by name."""
    backends = {
        name: RecordingBackend(name) for name in ("img", "api", "member", "main")
    }
    ports = {name: str(await stack.backend(b)) for name, b in backends.items()}
    return await stack.proxy(HEAD + MATCHED, **ports), backends


@pytest_twisted.ensureDeferred
async def test_matchRoutes(stack: Stack) -> None:
    """
    $N are the captured bytes, a to without any has the request path
    appended, a balancer target takes them too, the query follows; what no
    pattern matches goes to the prefix route.
    """
    proxy, backends = await matched(stack)
    probes = [
        (b"/img/a/b%20c.gif?v=2", "img", b"/static/a/b%20c.gif?v=2"),
        (b"/api/v2/users?id=7", "api", b"/base/api/v2/users?id=7"),
        (b"/pool/abc/x/y?z=1", "member", b"/m/x/y/abc?z=1"),
        (b"/img/a.png", "main", b"/img/a.png"),
        (b"/api/vx/users", "main", b"/api/vx/users"),
    ]
    for target, name, seen in probes:
        reply = await ask(stack, proxy, target)
        assert (reply.status, reply.body) == (
            200,
            b"%s saw GET %s" % (name.encode(), seen),
        )
    assert {name: uris(b) for name, b in backends.items()} == {
        "img": [b"/static/a/b%20c.gif?v=2"],
        "api": [b"/base/api/v2/users?id=7"],
        "member": [b"/m/x/y/abc?z=1"],
        "main": [b"/img/a.png", b"/api/vx/users"],
    }


@pytest_twisted.ensureDeferred
async def test_aCaptureMakingADotSegmentIs400(stack: Stack) -> None:
    """A backreference never makes the backend climb out of its path."""
    proxy, backends = await matched(stack)
    reply = await ask(stack, proxy, b"/f/a..")
    assert reply.status == 400
    reply = await ask(stack, proxy, b"/f/a.x")
    assert (reply.status, reply.body) == (200, b"api saw GET /files/.x")
    assert [uris(b) for b in backends.values()] == [[], [b"/files/.x"], [], []]


@pytest_twisted.ensureDeferred
async def test_matchRouteCarriesWebSockets(stack: Stack, peers: AsyncioThread) -> None:
    """A WebSocket upgrade on a match route reaches the substituted path."""
    backend = await peers.backend()
    proxy = await stack.proxy(
        HEAD
        + """
        [[route]]
        match = "^/ws/([a-z]+)$"
        to = "ws://127.0.0.1:{port}/echo/$1"
        """,
        port=backend.port,
    )
    ws = await peers.connect(f"ws://127.0.0.1:{proxy.port}/ws/room?x=1")
    await peers.call(ws.send("hello"))
    assert await peers.call(ws.recv()) == "hello"
    assert [r.path for r in backend.requests] == ["/echo/room?x=1"]


# -- exclude ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_excludedPathsAre404(stack: Stack) -> None:
    """
    Requests under an exclude route (a prefix or a pattern), with a body or
    without, get 404 and reach no backend; the rest is proxied.
    """
    app = RecordingBackend("app")
    proxy = await stack.proxy(
        HEAD
        + """
        [[route]]
        path = "/app/"
        to = "http://127.0.0.1:{app}/"
        [[route]]
        path = "/app/static/"
        exclude = true
        [[route]]
        match = "\\\\.php$"
        exclude = true
        """,
        app=await stack.backend(app),
    )
    for target in (b"/app/static/x.css", b"/app/static/", b"/app/x.php?a=1"):
        reply = await ask(stack, proxy, target)
        assert (reply.status, reply.body) == (404, b"not proxied\n")
    reply = await ask(stack, proxy, b"/app/static/up", method=b"POST", body=b"abc")
    assert (reply.status, reply.body) == (404, b"not proxied\n")
    reply = await ask(stack, proxy, b"/app/x.css?v=1")
    assert (reply.status, reply.body) == (200, b"app saw GET /x.css?v=1")
    reply = await ask(stack, proxy, b"/other")
    assert (reply.status, reply.body) == (404, b"no route for this request\n")
    assert uris(app) == [b"/x.css?v=1"]


# -- connect_timeout --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connectTimeoutPerRoute(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    A backend that accepts but never answers the TLS handshake: a route's
    connect_timeout, not [proxy]'s 30 s, ends the wait (504), for a direct
    target and for a balancer member, which is put in error.
    """
    silent = await stack.rawBackend(RawBackend())
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        connect_timeout = 30
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [[route]]
        path = "/direct/"
        to = "https://127.0.0.1:{silent}/"
        connect_timeout = 0.2
        [[route]]
        path = "/pool/"
        to = "balancer://pool/"
        connect_timeout = 0.3
        [[balancer.pool.member]]
        url = "https://127.0.0.1:{silent}"
        """,
        configDir=str(tmp_path),
        silent=silent,
    )
    reply = await ask(stack, proxy, b"/direct/x")
    assert reply.status == 504
    reply = await ask(stack, proxy, b"/pool/x")
    assert reply.status == 504
    handshakes = [line for line in logged if "no handshake within" in line]
    assert len(handshakes) == 2, logged
    assert "no handshake within 0.2s" in handshakes[0]
    assert "no handshake within 0.3s" in handshakes[1]
    member = proxy.balancer.member("pool", f"https://127.0.0.1:{silent}")  # type: ignore[union-attr]
    assert member.inError(stack.reactor.seconds())
