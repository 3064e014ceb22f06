"""
The balancer end to end on 127.0.0.1: real backends die and come back while
real clients keep sending; failover, health checks, hot standby, stickiness.
"""

from __future__ import annotations

import time
from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.web.server import Site
from zope.interface import implementer

from tests.integration.support import (
    RawBackend,
    RecordingBackend,
    Served,
    Stack,
    deferLater,
    request,
)
from twisted_proxy.balancer.state import DOWN, UP


class KillableBackend:
    """A named twisted.web backend that can die (port and connections) and return."""

    def __init__(self, name: str) -> None:
        self.resource = RecordingBackend(name)
        site = Site(self.resource)
        site.noisy = False
        # Served keeps every open connection, so kill() can cut them.
        self.factory = Served(site)
        self.name = name
        self.port = 0
        self.listening: IListeningPort | None = None

    async def start(self, stack: Stack) -> int:
        """Listen (on the same port as before, after a kill)."""
        endpoint = TCP4ServerEndpoint(stack.reactor, self.port, interface="127.0.0.1")
        self.listening = await endpoint.listen(self.factory)
        self.port = int(self.listening.getHost().port)  # type: ignore[union-attr]
        return self.port

    async def kill(self) -> None:
        """
        Stop listening and cut every open connection, as a crash would;
        return once they are closed.
        """
        if self.listening is not None:
            await defer.maybeDeferred(self.listening.stopListening)
            self.listening = None
        await self.factory.cutAll()

    @property
    def served(self) -> int:
        """Requests this backend has answered."""
        return sum(1 for r in self.resource.requests if r.uri != b"/health")


@pytest_twisted.async_yield_fixture
async def backends(stack: Stack) -> Any:
    """Three killable backends, killed at the end."""
    made = [KillableBackend(f"backend {n}") for n in (1, 2, 3)]
    for backend in made:
        await backend.start(stack)
    yield made
    for backend in made:
        await backend.kill()


def balancerConfig(
    backends: list[KillableBackend], extra: str = "", health: str = ""
) -> str:
    members = "".join(
        f'[[balancer.web.member]]\nurl = "http://127.0.0.1:{b.port}"\nroute = "{n}"\n'
        + ("standby = true\n" if b.name.endswith("3") and "STANDBY" in extra else "")
        for n, b in enumerate(backends, start=1)
    )
    return f"""
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "byrequests"
{extra.replace("STANDBY", "")}
{health}
{members}
"""


HEALTH = """
[balancer.web.health]
method = "GET"
uri = "/health"
interval = 0.2
timeout = 0.15
passes = 2
fails = 2
"""


async def waitUntil(stack: Stack, test: Any, limit: float = 10.0) -> None:
    """Poll C{test} (cheaply, bounded) until it holds."""
    deadline = time.monotonic() + limit
    while not test():
        assert time.monotonic() < deadline, "condition not reached in time"
        await deferLater(stack.reactor, 0.02)


async def getMany(stack: Stack, port: int, count: int, parallel: int = 4) -> list[int]:
    """Send C{count} GETs, C{parallel} at a time; return the statuses."""
    http = stack.treq()
    statuses: list[int] = []

    async def one() -> None:
        response = await http.get(f"http://127.0.0.1:{port}/page")
        await response.content()
        statuses.append(response.code)

    for start in range(0, count, parallel):
        batch = [
            defer.ensureDeferred(one()) for _ in range(min(parallel, count - start))
        ]
        await defer.gatherResults(batch, consumeErrors=True)
    return statuses


@pytest_twisted.ensureDeferred
async def test_memberKilledUnderLoadNoClientErrors(stack: Stack, backends: Any) -> None:
    """A member dies under load: no client error; health marks it down, then up."""
    one, two, three = backends
    proxy = await stack.proxy(balancerConfig(backends, health=HEALTH))
    member = proxy.balancer.member("web", "1")
    statuses = await getMany(stack, proxy.port, 30)
    killedAt = time.monotonic()
    await one.kill()
    statuses += await getMany(stack, proxy.port, 60)
    assert statuses == [200] * 90
    await waitUntil(stack, lambda: member.health == DOWN)
    # interval x fails plus one timeout, and scheduling slack on a busy machine.
    assert time.monotonic() - killedAt <= 0.2 * 2 + 0.15 + 1.0
    assert "connect" in (member.lastCheckResult or "")
    before = one.served
    await one.start(stack)
    await waitUntil(stack, lambda: member.health == UP)
    statuses = await getMany(stack, proxy.port, 12)
    assert statuses == [200] * 12
    assert one.served > before


@pytest_twisted.ensureDeferred
async def test_standbyTakesOverAndIsReleased(stack: Stack, backends: Any) -> None:
    """Both primaries down: the hot standby serves; a primary back: it serves again."""
    one, two, three = backends
    proxy = await stack.proxy(balancerConfig(backends, extra="STANDBY\nretry = 0.3"))
    assert await getMany(stack, proxy.port, 6) == [200] * 6
    assert three.served == 0
    await one.kill()
    await two.kill()
    assert await getMany(stack, proxy.port, 6) == [200] * 6
    assert three.served >= 6
    await one.start(stack)
    # A member in error is tried again after `retry` seconds.
    primary = proxy.balancer.member("web", "1")
    await waitUntil(stack, lambda: not primary.inError(stack.reactor.seconds()))
    servedByStandby = three.served
    assert await getMany(stack, proxy.port, 6) == [200] * 6
    assert three.served == servedByStandby


@pytest_twisted.ensureDeferred
async def test_stickyClientsStayAndFailOver(stack: Stack, backends: Any) -> None:
    """A sticky client stays on its member for 100 requests and moves when it dies."""
    sticky = '[balancer.web.sticky]\nname = "ROUTEID"\ninsert = true\n'
    proxy = await stack.proxy(balancerConfig(backends, extra=sticky))
    http = stack.treq()
    url = f"http://127.0.0.1:{proxy.port}/page"
    first = await http.get(url)
    cookie = first.headers.getRawHeaders(b"set-cookie")[0]
    assert cookie.startswith(b"ROUTEID=.")
    assert b"HttpOnly" in cookie
    route = cookie.split(b";")[0].split(b".", 1)[1].decode()
    owner = backends[int(route) - 1]
    await first.content()
    servedBefore = [b.served for b in backends]
    for _ in range(100):
        response = await http.get(
            url, headers={b"Cookie": [b"ROUTEID=." + route.encode()]}
        )
        await response.content()
        assert response.code == 200
        assert response.headers.getRawHeaders(b"set-cookie") is None
    served = [b.served - s for b, s in zip(backends, servedBefore, strict=True)]
    assert served[int(route) - 1] == 100
    assert sum(served) == 100
    await owner.kill()
    moved = await http.get(url, headers={b"Cookie": [b"ROUTEID=." + route.encode()]})
    await moved.content()
    assert moved.code == 200
    newCookie = moved.headers.getRawHeaders(b"set-cookie")[0]
    assert not newCookie.startswith(b"ROUTEID=." + route.encode() + b";")


@pytest_twisted.ensureDeferred
async def test_failureIsLoggedNamingTheMember(stack: Stack, backends: Any) -> None:
    """A member that refuses is logged by name, and the request still succeeds."""
    one = backends[0]
    await one.kill()
    lines: list[str] = []

    @implementer(ILogObserver)
    def observe(event: Any) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        proxy = await stack.proxy(balancerConfig(backends))
        assert await getMany(stack, proxy.port, 6, parallel=1) == [200] * 6
    finally:
        globalLogPublisher.removeObserver(observe)
    assert any(f"http://127.0.0.1:{one.port}" in line for line in lines)


def twoRawMembers(ports: list[int], extra: str = "") -> str:
    members = "".join(
        f'[[balancer.web.member]]\nurl = "http://127.0.0.1:{p}"\nroute = "{n}"\n'
        for n, p in enumerate(ports, start=1)
    )
    return f"""
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "byrequests"
{extra}
{members}
"""


@pytest_twisted.ensureDeferred
async def test_failOnStatusReturnsResponseAndPutsMemberInError(
    stack: Stack, logged: list[str]
) -> None:
    """
    A 503 listed in fail_on_status reaches the client and sidelines the
    member, logged with the balancer, member and status.
    """

    def unavailable(request: Any) -> bytes:
        request.setResponseCode(503)
        return b"busy"

    sick = RecordingBackend("sick", handler=unavailable)
    well = RecordingBackend("well")
    ports = [await stack.backend(sick), await stack.backend(well)]
    proxy = await stack.proxy(twoRawMembers(ports, "fail_on_status = [503]"))
    statuses = await getMany(stack, proxy.port, 6, parallel=1)
    assert statuses[0] == 503
    assert statuses[1:] == [200] * 5
    assert len(sick.requests) == 1
    assert proxy.balancer.member("web", "1").lastFailure == "answered 503"
    assert (
        f"member http://127.0.0.1:{ports[0]} of balancer://web in error: answered 503"
        in logged
    )


@pytest_twisted.ensureDeferred
async def test_bodyThatReachedAMemberIsNeverResent(stack: Stack) -> None:
    """A POST whose body reached a member that then died gets 502, not a re-send."""
    first = RawBackend()
    second = RecordingBackend("second")
    ports = [await stack.rawBackend(first), await stack.backend(second)]
    proxy = await stack.proxy(twoRawMembers(ports))
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"POST", b"/order", [(b"Content-Length", b"5")], b"hello")
    )
    conn = await first.waitFor(lambda p: p.received.endswith(b"hello"))
    conn.transport.abortConnection()  # type: ignore[union-attr]
    data = await client.waitFor(lambda d: b"\r\n\r\n" in d)
    assert data.startswith(b"HTTP/1.1 502 ")
    assert second.requests == []


def waitingForCapacity(proxy: Any) -> defer.Deferred[None]:
    """Fires when a request starts to wait for a member at its max_connections."""
    balancer = proxy.balancer
    whenCapacity = balancer.whenCapacity
    started: defer.Deferred[None] = defer.Deferred()

    def waiting(balancerName: str, timeout: float) -> defer.Deferred[bool]:
        released: defer.Deferred[bool] = whenCapacity(balancerName, timeout)
        if not started.called:
            started.callback(None)
        return released

    balancer.whenCapacity = waiting
    return started


@pytest_twisted.ensureDeferred
async def test_fullMemberMakesRequestsWait(stack: Stack) -> None:
    """At max_connections a request waits for the member to be free, then is served."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    members = (
        f'[[balancer.web.member]]\nurl = "http://127.0.0.1:{port}"\n'
        "max_connections = 1\n"
    )
    proxy = await stack.proxy(twoRawMembers([]) + members)
    a = await stack.connect(proxy.port)
    a.transport.write(request(b"GET", b"/a"))  # type: ignore[union-attr]
    first = await raw.waitFor(lambda p: b"GET /a " in p.received)
    held = waitingForCapacity(proxy)
    b = await stack.connect(proxy.port)
    b.transport.write(request(b"GET", b"/b"))  # type: ignore[union-attr]
    # /b is held by the balancer, not sent: the one member is busy.
    await held
    assert not any(b"GET /b " in p.received for p in raw.connections)
    first.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")  # type: ignore[union-attr]
    await a.waitFor(lambda d: d.endswith(b"\r\n\r\na"))
    second = await raw.waitFor(lambda p: b"GET /b " in p.received)
    second.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")  # type: ignore[union-attr]
    data = await b.waitFor(lambda d: d.endswith(b"\r\n\r\nb"))
    assert data.startswith(b"HTTP/1.1 200 OK")
