"""
The shipped etc/scenario-*.toml files, run as shipped (only the listener moved
to a free port) in front of real backends on the ports each file names, and
checked for what the operator of that scenario wants.
"""

from __future__ import annotations

import gzip
import ipaddress
import re
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest_twisted
import treq
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.support import RecordingBackend, Stack, curl, request
from tests.tlsfiles import TestCA
from twisted import copyright
from twisted_proxy import __version__
from twisted_proxy.config import Config, Listener, Route, load
from twisted_proxy.service import ProxyService

ETC = Path(__file__).resolve().parents[2] / "etc"


def shipped(name: str) -> Config:
    """Load an etc/ example as shipped, listening on a free loopback port instead."""
    config = load(str(ETC / name))
    return replace(config, listen=(Listener("tcp:0:interface=127.0.0.1"),))


async def startProxy(stack: Stack, config: Config) -> ProxyService:
    """Start a proxy for C{config}; the stack stops it at the end."""
    service = ProxyService(config, stack.reactor)
    service.startService()
    stack.services.append(service)
    return service


def routeFor(config: Config, path: str) -> Route:
    """The configured route whose C{path} is C{path}."""
    [route] = [r for r in config.routes if r.path == path]
    return route


def targetPort(route: Route) -> int:
    """The backend port a direct route sends to."""
    assert route.to is not None
    return route.to.port


class _TrackedChannel(HTTPChannel):
    """A backend connection whose end the test can wait for."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gone: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        self.gone.callback(None)


class TrackedSite(Site):
    """A backend Site that keeps its connections: to count them or to go down."""

    protocol = _TrackedChannel  # type: ignore[assignment]
    noisy = False

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.connections: list[_TrackedChannel] = []

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        self.connections.append(channel)
        return channel


async def trackedBackend(
    stack: Stack, resource: Resource, port: int
) -> tuple[TrackedSite, Any]:
    """Serve C{resource} on C{port}; return its site and listening port."""
    site = TrackedSite(resource)
    await stack.listen(site, port)
    return site, stack.ports[-1]


async def goDown(stack: Stack, site: TrackedSite, listening: Any) -> None:
    """Take a backend down as a crash would: no listener, every connection cut."""
    stack.ports.remove(listening)
    await defer.maybeDeferred(listening.stopListening)
    for channel in site.connections:
        if channel.transport is not None and channel.transport.connected:  # type: ignore[attr-defined]
            channel.transport.abortConnection()  # type: ignore[attr-defined]
        await channel.gone


def redirecting(location: bytes) -> Any:
    """A backend handler: GET .../redirect answers 302 to C{location}."""

    def handler(request: Any) -> bytes:
        if request.path.endswith(b"/redirect"):
            request.setResponseCode(302)
            request.setHeader(b"location", location)
            request.responseHeaders.addRawHeader(b"set-cookie", b"sid=1; Path=/")
            return b""
        request.setHeader(b"content-type", b"text/plain")
        return b"saw %s" % (request.uri,)

    return handler


async def get(
    stack: Stack, port: int, path: str, headers: dict[bytes, list[bytes]] | None = None
) -> tuple[Any, bytes]:
    """GET through the proxy with a plain Agent (no redirects, no decoding)."""
    response = await stack.agent().request(
        b"GET",
        b"http://127.0.0.1:%d%s" % (port, path.encode()),
        Headers(headers or {}),
    )
    return response, await treq.content(response)


def header(response: Any, name: bytes) -> list[bytes]:
    """Every value of response header C{name}."""
    return list(response.headers.getRawHeaders(name, []))


# -- scenario 1: basic reverse proxy --


@pytest_twisted.ensureDeferred
async def test_basicBackendSeesOriginalHost(stack: Stack) -> None:
    """Scenario 1: the backend sees the Host the client asked for, and who asked."""
    config = shipped("scenario-1-basic.toml")
    backend = RecordingBackend()
    await stack.backend(backend, targetPort(config.routes[0]))
    proxy = await startProxy(stack, config)
    response, body = await get(
        stack, proxy.port, "/page?x=1", {b"host": [b"www.example.test"]}
    )
    assert response.code == 200
    assert body == b"backend saw GET /page?x=1"
    seen = backend.requests[0]
    assert seen.header(b"host") == b"www.example.test"
    assert seen.header(b"x-forwarded-host") == b"www.example.test"
    assert seen.header(b"x-forwarded-for") == b"127.0.0.1"
    assert seen.header(b"x-forwarded-server") == b"www.example.test"


@pytest_twisted.ensureDeferred
async def test_basicRedirectsComeBackThroughTheProxy(stack: Stack) -> None:
    """Scenario 1: redirects to the backend or to the public URL name the proxy."""
    config = shipped("scenario-1-basic.toml")
    route = config.routes[0]
    assert route.to is not None
    [public] = route.reverse
    itself = route.to.url.encode()
    locations = {
        b"/to-self": itself + b"login?next=%2F",
        b"/to-public": public.encode() + b"welcome",
    }

    def handler(request: Any) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", locations[request.path])
        return b""

    await stack.backend(RecordingBackend(handler=handler), route.to.port)
    proxy = await startProxy(stack, config)
    front = b"127.0.0.1:%d" % proxy.port
    for host in (b"www.example.test", front):
        r1, _ = await get(stack, proxy.port, "/to-self", {b"host": [host]})
        assert r1.code == 302
        assert header(r1, b"location") == [b"http://%s/login?next=%%2F" % host]
        r2, _ = await get(stack, proxy.port, "/to-public", {b"host": [host]})
        assert header(r2, b"location") == [b"http://%s/welcome" % host]


# -- scenario 2: load-balanced cluster with a hot standby --


async def _cluster(
    stack: Stack,
) -> tuple[ProxyService, list[tuple[RecordingBackend, TrackedSite, Any]]]:
    """Scenario 2's proxy and its members (primaries first, then the standby)."""
    config = shipped("scenario-2-cluster.toml")
    route = config.routes[0]
    assert route.to is not None
    assert route.to.scheme == "balancer"
    members = config.balancer(route.to.host).members
    assert [m.standby for m in members] == [False, False, True]
    started = []
    for member in members:
        backend = RecordingBackend(name=f"member {member.route}")
        site, listening = await trackedBackend(stack, backend, member.port)
        started.append((backend, site, listening))
    return await startProxy(stack, config), started


@pytest_twisted.ensureDeferred
async def test_clusterSharesByRequestsStandbyIdle(stack: Stack) -> None:
    """Scenario 2: the two primaries share requests evenly; the standby gets none."""
    proxy, members = await _cluster(stack)
    http = stack.treq()
    answers = []
    for n in range(6):
        response = await http.get(f"http://127.0.0.1:{proxy.port}/item/{n}")
        assert response.code == 200
        answers.append(await response.text())
    counts = [len(backend.requests) for backend, _, _ in members]
    assert counts == [3, 3, 0]
    assert answers[0].startswith("member ")
    assert answers[0] != answers[1]


@pytest_twisted.ensureDeferred
async def test_clusterStandbyTakesOverOncePrimariesFail(stack: Stack) -> None:
    """Scenario 2: with both primaries down, the standby serves every later request."""
    proxy, members = await _cluster(stack)
    http = stack.treq()
    for n in range(2):
        response = await http.get(f"http://127.0.0.1:{proxy.port}/warm/{n}")
        assert response.code == 200
        await response.content()
    for _, site, listening in members[:2]:
        await goDown(stack, site, listening)
    # Each primary may cost one failed request before it is known to be down.
    codes = []
    for n in range(6):
        response = await http.get(f"http://127.0.0.1:{proxy.port}/down/{n}")
        codes.append(response.code)
        await response.content()
    assert codes[2:] == [200] * 4
    standby = members[2][0]
    assert len(standby.requests) >= 4
    assert all(r.uri.startswith(b"/down/") for r in standby.requests)


@pytest_twisted.ensureDeferred
async def test_clusterManagerDrainsAMember(stack: Stack) -> None:
    """
    Scenario 2: the balancer-manager at /balancer-manager shows the three
    members; draining member 1 with its form sends every new request to 2.
    """
    proxy, members = await _cluster(stack)
    http = stack.treq()
    base = f"http://127.0.0.1:{proxy.port}"
    response = await http.get(base + "/balancer-manager")
    assert response.code == 200
    page = await response.text()
    assert page.count('<tr data-member="http://127.0.0.1:912') == 3
    [nonce] = set(re.findall(r'name="nonce" value="([^"]+)"', page))
    form = {
        "nonce": nonce,
        "balancer": "cluster",
        "action": "update",
        "member": "http://127.0.0.1:9121",
        "weight": "1",
        "tier": "0",
        "route": "1",
        "drain": "on",
    }
    response = await http.post(
        base + "/balancer-manager",
        data=urlencode(form).encode(),
        headers={b"Content-Type": [b"application/x-www-form-urlencoded"]},
        allow_redirects=False,
    )
    assert response.code == 303
    await response.content()
    for n in range(4):
        response = await http.get(f"{base}/after/{n}")
        assert response.code == 200
        await response.content()
    after = [
        [r.uri for r in backend.requests if r.uri.startswith(b"/after/")]
        for backend, _, _ in members
    ]
    assert [len(uris) for uris in after] == [0, 4, 0]


@pytest_twisted.ensureDeferred
async def test_clusterNoClientSeesPrimariesGoDown(stack: Stack) -> None:
    """Scenario 2: every request after both primaries died is served by the standby."""
    proxy, members = await _cluster(stack)
    http = stack.treq()
    response = await http.get(f"http://127.0.0.1:{proxy.port}/warm")
    await response.content()
    for _, site, listening in members[:2]:
        await goDown(stack, site, listening)
    codes = []
    for n in range(4):
        response = await http.get(f"http://127.0.0.1:{proxy.port}/down/{n}")
        codes.append(response.code)
        await response.content()
    assert codes == [200] * 4
    assert len(members[2][0].requests) == 4


# -- scenario 3: microservices by path --


@pytest_twisted.ensureDeferred
async def test_microservicesRouteByLongestPrefix(stack: Stack) -> None:
    """Scenario 3: /api/users/, /api/payments/ reach their services, the rest main."""
    config = shipped("scenario-3-microservices.toml")
    users = RecordingBackend("users")
    payments = RecordingBackend("payments")
    main = RecordingBackend("main")
    await stack.backend(users, targetPort(routeFor(config, "/api/users/")))
    await stack.backend(payments, targetPort(routeFor(config, "/api/payments/")))
    await stack.backend(main, targetPort(routeFor(config, "/")))
    proxy = await startProxy(stack, config)
    host = {b"host": [b"shop.example.test"]}
    _, b1 = await get(stack, proxy.port, "/api/users/42?full=1", host)
    _, b2 = await get(stack, proxy.port, "/api/payments/charge", host)
    _, b3 = await get(stack, proxy.port, "/api/catalog/7", host)
    _, b4 = await get(stack, proxy.port, "/", host)
    assert b1 == b"users saw GET /42?full=1"
    assert b2 == b"payments saw GET /charge"
    assert b3 == b"main saw GET /api/catalog/7"
    assert b4 == b"main saw GET /"
    assert [len(b.requests) for b in (users, payments, main)] == [1, 1, 2]
    assert payments.requests[0].header(b"x-forwarded-prefix") == b"/api/payments"
    assert users.requests[0].header(b"x-forwarded-prefix") is None
    # Only the main app has preserve_host: the services see their own address.
    assert main.requests[0].header(b"host") == b"shop.example.test"
    usersPort = targetPort(routeFor(config, "/api/users/"))
    assert users.requests[0].header(b"host") == b"127.0.0.1:%d" % usersPort


@pytest_twisted.ensureDeferred
async def test_microservicesPathsNormalisedAsTheCommentsSay(stack: Stack) -> None:
    """
    Scenario 3, as its comments say: /api/users/../payments/x reaches the
    payments service as /x, and /api/users (no slash) the main application.
    """
    config = shipped("scenario-3-microservices.toml")
    users = RecordingBackend("users")
    payments = RecordingBackend("payments")
    main = RecordingBackend("main")
    await stack.backend(users, targetPort(routeFor(config, "/api/users/")))
    await stack.backend(payments, targetPort(routeFor(config, "/api/payments/")))
    await stack.backend(main, targetPort(routeFor(config, "/")))
    proxy = await startProxy(stack, config)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"GET", b"/api/users/../payments/x") + request(b"GET", b"/api/users")
    )
    await client.waitFor(lambda d: d.count(b"HTTP/1.1 200 ") == 2)
    assert [r.uri for r in payments.requests] == [b"/x"]
    assert [r.uri for r in main.requests] == [b"/api/users"]
    assert users.requests == []


@pytest_twisted.ensureDeferred
async def test_microservicesRedirectsAndCookiesRewrittenBack(stack: Stack) -> None:
    """Scenario 3: each service's redirects and cookie paths point under its prefix."""
    config = shipped("scenario-3-microservices.toml")
    usersRoute = routeFor(config, "/api/users/")
    paymentsRoute = routeFor(config, "/api/payments/")
    mainRoute = routeFor(config, "/")
    assert usersRoute.to is not None
    assert paymentsRoute.to is not None
    assert mainRoute.to is not None
    [internal] = paymentsRoute.reverse
    for route, location in (
        (usersRoute, usersRoute.to.url.encode() + b"moved?a=1"),
        (paymentsRoute, internal.encode() + b"moved"),
        (mainRoute, mainRoute.to.url.encode() + b"moved"),
    ):
        resource = RecordingBackend(handler=redirecting(location))
        await stack.backend(resource, targetPort(route))
    proxy = await startProxy(stack, config)
    host = {b"host": [b"shop.example.test"]}
    r1, _ = await get(stack, proxy.port, "/api/users/redirect", host)
    r2, _ = await get(stack, proxy.port, "/api/payments/redirect", host)
    r3, _ = await get(stack, proxy.port, "/redirect", host)
    assert header(r1, b"location") == [b"http://shop.example.test/api/users/moved?a=1"]
    assert header(r2, b"location") == [b"http://shop.example.test/api/payments/moved"]
    assert header(r3, b"location") == [b"http://shop.example.test/moved"]
    assert header(r1, b"set-cookie") == [b"sid=1; Path=/api/users/"]
    assert header(r2, b"set-cookie") == [b"sid=1; Path=/api/payments/"]
    assert header(r3, b"set-cookie") == [b"sid=1; Path=/"]


# -- scenario 4: TLS termination --


def shippedTLS(folder: Path) -> Config:
    """
    Scenario 4 as shipped, both listeners on free loopback ports and the
    certificate files (the operator's own) made for the test in C{folder}.
    """
    config = load(str(ETC / "scenario-4-tls.toml"))
    issued = TestCA(folder).issue("localhost", "127.0.0.1", stem="proxy")
    tlsListener, redirectListener = config.listen
    assert tlsListener.tls is not None
    tls = replace(
        tlsListener.tls, certificate=str(issued.certificate), key=str(issued.key)
    )
    return replace(
        config,
        listen=(
            replace(tlsListener, endpoint="tcp:0:interface=127.0.0.1", tls=tls),
            replace(redirectListener, endpoint="tcp:0:interface=127.0.0.1"),
        ),
    )


@pytest_twisted.ensureDeferred
async def test_tlsBackendToldSchemeAndPort(stack: Stack, tmp_path: Path) -> None:
    """
    Over HTTPS (HTTP/1.1 or HTTP/2) the plain-HTTP backend hears https and
    the public port; HSTS is sent.
    """
    config = shippedTLS(tmp_path)
    backend = RecordingBackend()
    await stack.backend(backend, targetPort(routeFor(config, "/")))
    service = await startProxy(stack, config)
    port = service.port
    for version, shown in (("--http1.1", b"HTTP/1.1 200"), ("--http2", b"HTTP/2 200")):
        out, err, code = await curl(
            "-i",
            version,
            "--cacert",
            str(tmp_path / "ca.pem"),
            "--resolve",
            f"localhost:{port}:127.0.0.1",
            f"https://localhost:{port}/account?id=1",
        )
        assert code == 0, err
        assert out.startswith(shown), out
        assert b"\r\nstrict-transport-security: max-age=31536000\r\n" in out.lower()
        assert out.endswith(b"backend saw GET /account?id=1")
    received = backend.requests[-1]
    assert received.header(b"x-forwarded-proto") == b"https"
    assert received.header(b"x-forwarded-port") == str(port).encode()


@pytest_twisted.ensureDeferred
async def test_tlsPlainHTTPRedirected(stack: Stack, tmp_path: Path) -> None:
    """Plain HTTP on the second listener gets 301 to the same path on HTTPS."""
    config = shippedTLS(tmp_path)
    backend = RecordingBackend()
    await stack.backend(backend, targetPort(routeFor(config, "/")))
    service = await startProxy(stack, config)
    redirectPort = service.ports[1].getHost().port  # type: ignore[attr-defined]
    response, _ = await get(stack, redirectPort, "/account?id=1")
    assert response.code == 301
    assert header(response, b"location") == [b"https://localhost:8443/account?id=1"]
    assert backend.requests == []


# -- scenario 5: WebSockets beside HTTP --


class _Echo(WebSocketServerProtocol):  # type: ignore[misc]
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class _Talker(WebSocketClientProtocol):  # type: ignore[misc]
    """Sends each of C{messages}, collects the echoes, closes with 4000."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[bytes, bool]] = []
        self.echoes: list[tuple[bytes, bool]] = []
        self.closed: defer.Deferred[tuple[bool, int | None]] = defer.Deferred()

    def onOpen(self) -> None:
        for payload, isBinary in self.messages:
            self.sendMessage(payload, isBinary)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.echoes.append((payload, isBinary))
        if len(self.echoes) == len(self.messages):
            self.sendClose(4000, "done")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed.callback((wasClean, code))


@pytest_twisted.ensureDeferred
async def test_websocketsBridgedBesideHTTP(stack: Stack) -> None:
    """
    Under /ws/ a WebSocket reaches the application's endpoint and echoes come
    back byte-exact; a page from the same application is plain HTTP.
    """
    config = shipped("scenario-5-websockets.toml")
    root = Resource()
    echoFactory = WebSocketServerFactory()
    echoFactory.protocol = _Echo
    root.putChild(b"ws", WebSocketResource(echoFactory))
    root.putChild(b"page", RecordingBackend("app"))
    await stack.backend(root, targetPort(routeFor(config, "/")))
    service = await startProxy(stack, config)
    response, body = await get(stack, service.port, "/page")
    assert (response.code, body) == (200, b"app saw GET /page")
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{service.port}/ws/")
    talker = _Talker()
    talker.messages = [("héllo".encode(), False), (bytes(range(256)) * 4, True)]
    factory.protocol = lambda: talker  # type: ignore[assignment]
    endpoint = TCP4ClientEndpoint(stack.reactor, "127.0.0.1", service.port)
    await endpoint.connect(factory)
    wasClean, code = await talker.closed.addTimeout(10, stack.reactor)
    assert talker.echoes == talker.messages
    assert wasClean


# -- scenario 6: hardening --


def _hardenedHandler(request: Any) -> bytes:
    request.setHeader(b"x-powered-by", b"PHP/8.3.0")
    request.setHeader(b"server", b"Apache/2.4.58 (Unix)")
    request.setHeader(b"content-type", b"text/html")
    if request.path == b"/missing":
        request.setResponseCode(404)
        return b"no such page"
    return b"<p>hello</p>"


def _assertHardenedHead(head: bytes) -> None:
    """No version anywhere in the head, Server without one, the two guard headers."""
    lines = head.split(b"\r\n")[1:]
    names = [line.split(b":", 1)[0].lower() for line in lines]
    assert b"server: twisted-proxy" in [line.lower() for line in lines]
    assert b"x-frame-options: deny" in [line.lower() for line in lines]
    assert b"x-content-type-options: nosniff" in [line.lower() for line in lines]
    assert b"via" not in names
    assert b"x-powered-by" not in names
    for version in (__version__, copyright.version, "Apache/"):
        assert version.encode() not in head


def _head(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


@pytest_twisted.ensureDeferred
async def test_hardenedResponsesCarryGuardHeadersOnly(stack: Stack) -> None:
    """Scenario 6: no Via, version or X-Powered-By; guard headers on 200 and 404."""
    config = shipped("scenario-6-hardening.toml")
    backend = RecordingBackend(handler=_hardenedHandler)
    await stack.backend(backend, targetPort(config.routes[0]))
    proxy = await startProxy(stack, config)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(
            b"GET",
            b"/",
            [(b"X-Debug", b"1"), (b"X-Forwarded-For", b"6.6.6.6")],
            host=b"secure.example.test",
        )
    )
    ok = await client.waitFor(lambda d: d.endswith(b"<p>hello</p>"))
    assert ok.startswith(b"HTTP/1.1 200 ")
    _assertHardenedHead(_head(ok))
    client.transport.write(request(b"GET", b"/missing"))  # type: ignore[union-attr]
    data = await client.waitFor(lambda d: d.endswith(b"no such page"))
    missing = data[len(ok) :]
    assert missing.startswith(b"HTTP/1.1 404 ")
    _assertHardenedHead(_head(missing))
    seen = backend.requests[0]
    assert seen.header(b"via") is None
    assert seen.header(b"x-debug") is None
    # No trusted proxies: a client cannot forge its address.
    assert seen.headerValues(b"x-forwarded-for") == [b"127.0.0.1"]


@pytest_twisted.ensureDeferred
async def test_hardenedRefusesAbsoluteFormForAnotherHost(stack: Stack) -> None:
    """Scenario 6: an absolute-form request for another host is refused, not relayed."""
    config = shipped("scenario-6-hardening.toml")
    backend = RecordingBackend()
    await stack.backend(backend, targetPort(config.routes[0]))
    proxy = await startProxy(stack, config)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(
            b"GET",
            b"http://elsewhere.example.test/secret",
            host=b"127.0.0.1:%d" % proxy.port,
        )
    )
    data = await client.waitFor(lambda d: b"\r\n\r\n" in d)
    assert data.startswith(b"HTTP/1.1 403 ")
    _assertHardenedHead(_head(data))
    await client.lost
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_hardenedRefusesForwardProxyRequest(stack: Stack) -> None:
    """Scenario 6: a forward-proxy request as curl -x sends it is refused."""
    config = shipped("scenario-6-hardening.toml")
    backend = RecordingBackend()
    await stack.backend(backend, targetPort(config.routes[0]))
    proxy = await startProxy(stack, config)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(
            b"GET",
            b"http://elsewhere.example.test/secret",
            [(b"Proxy-Connection", b"Keep-Alive")],
            host=b"elsewhere.example.test",
        )
    )
    data = await client.waitFor(lambda d: b"\r\n\r\n" in d)
    assert data.startswith(b"HTTP/1.1 403 ")
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_hardenedClientOutsideAllowedNetworkRefused(stack: Stack) -> None:
    """Scenario 6: with allow = 192.0.2.0/24, a client on 127.0.0.1 gets 403."""
    config = shipped("scenario-6-hardening.toml")
    [route] = config.routes
    network = ipaddress.ip_network("192.0.2.0/24")
    config = replace(config, routes=(replace(route, allow=(network,)),))
    backend = RecordingBackend()
    await stack.backend(backend, targetPort(route))
    proxy = await startProxy(stack, config)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/", host=b"secure.example.test"))  # type: ignore[union-attr]
    data = await client.waitFor(lambda d: b"\r\n\r\n" in d and d.endswith(b"\n"))
    assert data.startswith(b"HTTP/1.1 403 ")
    _assertHardenedHead(_head(data))
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_hardenedEdgeRulesAsTheCommentsSay(stack: Stack) -> None:
    """
    Scenario 6, as its comments say: a path above the root and a malformed
    Host get 400, TRACE 405, more than max_headers fields 400; a client's
    Forwarded, X-Real-IP and "_" headers never reach the backend.
    """
    config = shipped("scenario-6-hardening.toml")
    backend = RecordingBackend()
    await stack.backend(backend, targetPort(config.routes[0]))
    proxy = await startProxy(stack, config)
    many = [(b"X-N", b"%d" % i) for i in range(50)]
    for data, status in [
        (request(b"GET", b"/../../etc/passwd"), b"400"),
        (request(b"GET", b"/", host=b"evil.example/x?y"), b"400"),
        (request(b"TRACE", b"/"), b"405"),
        (request(b"GET", b"/", many), b"400"),
    ]:
        client = await stack.connect(proxy.port)
        client.transport.write(data)  # type: ignore[union-attr]
        reply = await client.waitFor(lambda d: b"\r\n\r\n" in d)
        assert reply.startswith(b"HTTP/1.1 " + status + b" ")
        _assertHardenedHead(_head(reply))
    assert backend.requests == []
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(
            b"GET",
            b"/ok",
            [
                (b"Forwarded", b"for=6.6.6.6"),
                (b"X-Real-IP", b"6.6.6.6"),
                (b"X_Forwarded_For", b"6.6.6.6"),
            ],
        )
    )
    await client.waitFor(lambda d: d.endswith(b"backend saw GET /ok"))
    [seen] = backend.requests
    names = {n.lower() for n, _ in seen.headers}
    assert not names & {b"forwarded", b"x-real-ip", b"x_forwarded_for"}


@pytest_twisted.ensureDeferred
async def test_hardenedAsShippedServesLoopback(stack: Stack) -> None:
    """Scenario 6: as shipped, the loopback client is inside the allowed networks."""
    config = shipped("scenario-6-hardening.toml")
    backend = RecordingBackend()
    await stack.backend(backend, targetPort(config.routes[0]))
    proxy = await startProxy(stack, config)
    response, body = await get(stack, proxy.port, "/ok")
    assert response.code == 200
    assert body == b"backend saw GET /ok"


# -- scenario 7: tuning --


HTML = b"<html><body>" + b"<p>compress me</p>" * 200 + b"</body></html>"


def _typed(request: Any) -> bytes:
    if request.path.endswith(b".png"):
        request.setHeader(b"content-type", b"image/png")
        return b"\x89PNG" + b"\x00" * 2000
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    return HTML


@pytest_twisted.ensureDeferred
async def test_tuningGzipsListedTypesForClientsThatAccept(stack: Stack) -> None:
    """Scenario 7: text/html is gzipped for gzip clients; other clients, types not."""
    config = shipped("scenario-7-tuning.toml")
    assert "text/html" in config.proxy.compress
    assert "image/png" not in config.proxy.compress
    await stack.backend(
        RecordingBackend(handler=_typed), targetPort(routeFor(config, "/"))
    )
    proxy = await startProxy(stack, config)
    gzipOK = {b"accept-encoding": [b"gzip, deflate"]}
    r1, b1 = await get(stack, proxy.port, "/page", gzipOK)
    assert header(r1, b"content-encoding") == [b"gzip"]
    assert b"Accept-Encoding" in b", ".join(header(r1, b"vary"))
    assert gzip.decompress(b1) == HTML
    assert len(b1) < len(HTML)
    r2, b2 = await get(stack, proxy.port, "/page")
    assert header(r2, b"content-encoding") == []
    assert b2 == HTML
    r3, b3 = await get(stack, proxy.port, "/logo.png", gzipOK)
    assert header(r3, b"content-encoding") == []
    assert b3.startswith(b"\x89PNG")


@pytest_twisted.ensureDeferred
async def test_tuningReusesBackendConnections(stack: Stack) -> None:
    """Scenario 7: two sequential requests reach the backend over one connection."""
    config = shipped("scenario-7-tuning.toml")
    backend = RecordingBackend()
    site, _ = await trackedBackend(stack, backend, targetPort(routeFor(config, "/")))
    proxy = await startProxy(stack, config)
    for path in ("/one", "/two"):
        # A fresh client connection each time: only the backend side is reused.
        client = await stack.connect(proxy.port)
        client.transport.write(  # type: ignore[union-attr]
            request(b"GET", path.encode(), [(b"Connection", b"close")])
        )
        await client.lost
        assert client.received.startswith(b"HTTP/1.1 200 ")
    assert [r.uri for r in backend.requests] == [b"/one", b"/two"]
    assert len(site.connections) == 1


@pytest_twisted.ensureDeferred
async def test_tuningTimeoutsAndPoolAsConfigured(stack: Stack) -> None:
    """Scenario 7: the connect timeout, pool size and TTL are the file's, applied."""
    config = shipped("scenario-7-tuning.toml")
    assert config.proxy.connect_timeout == 2.0
    assert config.proxy.pool_size == 32
    assert config.proxy.pool_ttl == 120.0
    assert config.proxy.keepalive is True
    assert routeFor(config, "/reports/").timeout == 300.0
    assert routeFor(config, "/").timeout is None
    assert config.proxy.timeout == 60.0
    proxy = await startProxy(stack, config)
    pool = proxy.context.pool
    assert pool.connectTimeout == config.proxy.connect_timeout
    assert pool.maxIdle == config.proxy.pool_size
    assert pool.idleTTL == config.proxy.pool_ttl


@pytest_twisted.ensureDeferred
async def test_tuningReportsGoToTheReportService(stack: Stack) -> None:
    """Scenario 7: /reports/ reaches the report service with its prefix replaced."""
    config = shipped("scenario-7-tuning.toml")
    app = RecordingBackend("app")
    reports = RecordingBackend("reports")
    await stack.backend(app, targetPort(routeFor(config, "/")))
    await stack.backend(reports, targetPort(routeFor(config, "/reports/")))
    proxy = await startProxy(stack, config)
    http = stack.treq()
    r1 = await http.get(f"http://127.0.0.1:{proxy.port}/reports/q3.csv")
    r2 = await http.get(f"http://127.0.0.1:{proxy.port}/index.html")
    assert await r1.text() == "reports saw GET /q3.csv"
    assert await r2.text() == "app saw GET /index.html"


class _Health(Resource):
    """A backend whose /health says "ok" until it is made to fail."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.healthy = True
        self.served = 0

    def render(self, request: Any) -> bytes:
        if request.path == b"/health":
            if not self.healthy:
                request.setResponseCode(500)
                return b"failing"
            return b"ok"
        self.served += 1
        return self.name.encode()


def _fast(config: Config) -> Config:
    """The shipped file with its health interval shortened, for a quick test."""
    [(name, balancer)] = config.balancers
    assert balancer.health is not None
    health = replace(balancer.health, interval=0.1, timeout=0.05)
    return replace(config, balancers=((name, replace(balancer, health=health)),))


@pytest_twisted.ensureDeferred
async def test_backendDownHealthCheckHandsOverToStandby(stack: Stack) -> None:
    """Scenario 8: a failing /health takes a member out; both out: standby serves."""
    config = _fast(shipped("scenario-8-backend-down.toml"))
    [(_, balancer)] = config.balancers
    assert balancer.health is not None
    assert (balancer.health.method, balancer.health.uri) == ("GET", "/health")
    assert [m.standby for m in balancer.members] == [False, False, True]
    backends = []
    for n, member in enumerate(balancer.members, start=1):
        resource = _Health(f"member {n}")
        await stack.backend(resource, member.port)
        backends.append(resource)
    proxy = await startProxy(stack, config)
    states = proxy.balancer.members("app")
    http = stack.treq()

    async def served() -> list[str]:
        answers = []
        for _ in range(4):
            response = await http.get(f"http://127.0.0.1:{proxy.port}/")
            answers.append(await response.text())
        return answers

    assert set(await served()) == {"member 1", "member 2"}
    backends[0].healthy = False
    await _until(stack, lambda: states[0].health == "down")
    assert set(await served()) == {"member 2"}
    backends[1].healthy = False
    await _until(stack, lambda: states[1].health == "down")
    assert set(await served()) == {"member 3"}
    backends[0].healthy = True
    await _until(stack, lambda: states[0].health == "up")
    assert set(await served()) == {"member 1"}


async def _until(stack: Stack, test: Any) -> None:
    """Poll C{test} (bounded) while health checks run."""
    from tests.integration.support import deferLater

    for _ in range(250):
        if test():
            return
        await deferLater(stack.reactor, 0.02)
    raise AssertionError("health state not reached in time")


@pytest_twisted.ensureDeferred
async def test_stickySessionsKeepTheirMember(stack: Stack) -> None:
    """Scenario 9: the proxy hands out ROUTEID and keeps each client on its member."""
    config = shipped("scenario-9-sticky.toml")
    [(_, balancer)] = config.balancers
    backends = {}
    for member in balancer.members:
        backend = RecordingBackend(name=f"{member.route}")
        await stack.backend(backend, member.port)
        backends[member.route] = backend
    proxy = await startProxy(stack, config)
    http = stack.treq()
    url = f"http://127.0.0.1:{proxy.port}/cart"
    first = await http.get(url)
    await first.content()
    [cookie] = first.headers.getRawHeaders(b"set-cookie")
    route = cookie.split(b";")[0].split(b"=.", 1)[1].decode()
    assert route in ("node1", "node2")
    for _ in range(10):
        again = await http.get(
            url, headers={b"Cookie": [b"ROUTEID=." + route.encode()]}
        )
        assert await again.text() == f"{route} saw GET /cart"
        assert again.headers.getRawHeaders(b"set-cookie") is None
