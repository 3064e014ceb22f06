"""
Active health checks against real twisted.web backends on 127.0.0.1: members
go down and come back as their /health page, their port or their body says;
through the proxy, started before its backends, in error after a failed
request, and checked at fast_interval while their state is in doubt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    Stack,
    deferLater,
    theReactor,
)
from tests.tlsfiles import ServingTLS, TestCA
from twisted_proxy.balancer.health import HealthMonitor
from twisted_proxy.balancer.state import DOWN, UNKNOWN, UP, MemberState
from twisted_proxy.config.model import HealthCheck, HealthMethod, Member


class HealthPage(Resource):
    """/health answering 200 "ok", or 500 when switched; or never, when hung."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.body = b"ok"
        self.hang = False
        self.hung: list[defer.Deferred[None]] = []
        self.requests = 0

    def render(self, request: Any) -> Any:
        """Answer as switched, or hold the request open."""
        self.requests += 1
        if self.hang:
            self.hung.append(request.notifyFinish().addErrback(lambda _: None))
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"text/plain")
        return self.body if self.status == 200 else b"broken"


class Watch:
    """A started health monitor of one member, with a way to await transitions."""

    def __init__(self, member: MemberState, monitor: HealthMonitor) -> None:
        self.member = member
        self.monitor = monitor
        self.transitions: list[tuple[str, str]] = []
        self._waiting: list[tuple[str, defer.Deferred[str]]] = []

    def onTransition(
        self, balancer: str, member: MemberState, state: str, reason: str
    ) -> None:
        """Record a transition and wake whoever waits for that state."""
        self.transitions.append((state, reason))
        still = []
        for wanted, d in self._waiting:
            if wanted == state:
                d.callback(reason)
            else:
                still.append((wanted, d))
        self._waiting = still

    def becomes(self, state: str) -> defer.Deferred[str]:
        """Fire with the reason once the member next goes to C{state}."""
        d: defer.Deferred[str] = defer.Deferred()
        self._waiting.append((state, d))
        return d


class Monitors:
    """Starts health monitors of 127.0.0.1 members; stops them all at the end."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.started: list[HealthMonitor] = []

    def watch(self, port: int, method: HealthMethod = "GET", **health: Any) -> Watch:
        """Check member http://127.0.0.1:C{port}, quickly, from now on."""
        member = MemberState(
            Member(f"http://127.0.0.1:{port}", "http", "127.0.0.1", port)
        )
        settings: dict[str, Any] = {
            "uri": "/health",
            "interval": 0.05,
            "timeout": 0.5,
            "passes": 2,
            "fails": 2,
        }
        settings.update(health)
        watch: Watch | None = None

        def onTransition(*args: Any) -> None:
            """Hand the transition to the watch made below."""
            assert watch is not None
            watch.onTransition(*args)

        monitor = HealthMonitor(
            self.reactor,
            [("web", HealthCheck(method=method, **settings), [member])],
            onTransition,
        )
        watch = Watch(member, monitor)
        self.started.append(monitor)
        monitor.startService()
        return watch

    async def close(self) -> None:
        """Stop every monitor; each waits for its connections to close."""
        for monitor in self.started:
            if monitor.running:
                await monitor.stopService()


@pytest_twisted.async_yield_fixture
async def monitors(stack: Stack) -> AsyncIterator[Monitors]:
    """Health monitors, stopped before the backends are."""
    m = Monitors(stack.reactor)
    yield m
    await m.close()


@pytest_twisted.ensureDeferred
async def test_getCheckDownAndBackUp(stack: Stack, monitors: Monitors) -> None:
    """GET /health: up after 2 passes, down after 2 answers of 500, then up again."""
    page = HealthPage()
    port = await stack.backend(page)
    watch = monitors.watch(port)
    assert watch.member.health == UNKNOWN
    assert await watch.becomes(UP) == "GET /health answered 200"
    assert watch.member.health == UP
    page.status = 500
    assert await watch.becomes(DOWN) == "GET /health answered 500"
    assert watch.member.health == DOWN
    assert watch.member.lastCheck > 0
    page.status = 200
    await watch.becomes(UP)
    assert [state for state, _ in watch.transitions] == [UP, DOWN, UP]


@pytest_twisted.ensureDeferred
async def test_tcpCheckDownWhenPortCloses(stack: Stack, monitors: Monitors) -> None:
    """TCP check: up while the backend listens, down once its port is closed."""
    page = HealthPage()
    port = await stack.backend(page)
    listening = stack.ports[-1]
    watch = monitors.watch(port, method="TCP")
    assert await watch.becomes(UP) == "connected"
    assert page.requests == 0
    stack.ports.remove(listening)
    await defer.maybeDeferred(listening.stopListening)
    assert await watch.becomes(DOWN) == "connect refused"
    assert watch.member.lastCheckResult == "connect refused"


@pytest_twisted.ensureDeferred
async def test_cpingCheckPassesOnCpongOnly(stack: Stack, monitors: Monitors) -> None:
    """
    CPING check (AJP members): up on CPONG, down on anything else, an HTTP
    answer or silence, and up again once CPONG comes back.
    """
    answers = {"reply": b"AB\x00\x01\x09"}

    def answer(proto: RawServerProtocol) -> None:
        if proto.received.endswith(b"\x12\x34\x00\x01\x0a") and answers["reply"]:
            proto.transport.write(answers["reply"])  # type: ignore[union-attr]

    raw = RawBackend(answer)
    port = await stack.rawBackend(raw)
    watch = monitors.watch(port, method="CPING", timeout=0.04)
    assert await watch.becomes(UP) == "CPONG"
    answers["reply"] = b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert await watch.becomes(DOWN) == (
        "not AJP: a packet that does not start with AB"
    )
    answers["reply"] = b"AB\x00\x01\x09"
    assert await watch.becomes(UP) == "CPONG"
    answers["reply"] = b""
    assert (await watch.becomes(DOWN)).startswith("timed out")


@pytest_twisted.ensureDeferred
async def test_bodyMismatchGoesDown(stack: Stack, monitors: Monitors) -> None:
    """A 200 whose body does not match expect_body counts as a failure."""
    page = HealthPage()
    page.body = b"degraded"
    port = await stack.backend(page)
    watch = monitors.watch(port, expect_body="^ok$")
    assert await watch.becomes(DOWN) == (
        "GET /health answered 200, body did not match '^ok$'"
    )
    page.body = b"ok"
    assert await watch.becomes(UP) == "GET /health answered 200"


@pytest_twisted.ensureDeferred
async def test_hungBackendTimesOut(stack: Stack, monitors: Monitors) -> None:
    """A backend that never answers is down after 2 timeouts; nothing is left open."""
    page = HealthPage()
    page.hang = True
    port = await stack.backend(page)
    watch = monitors.watch(port, timeout=0.1)
    assert await watch.becomes(DOWN) == "timed out after 0.1s"
    assert page.requests >= 2
    # The cut-off checks' connections are gone from the backend too.
    await monitors.close()
    for finished in page.hung:
        await finished


# Through the proxy: checks, fast_interval and recovery as an operator sees them.


class App(Resource):
    """A backend: /health as switched, any other path its name or a 503 when told."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.healthy = True
        self.unavailableOnce = False
        self.checkedAt: list[float] = []

    def render(self, request: Any) -> bytes:
        """Answer a check or a page."""
        if request.path == b"/health":
            self.checkedAt.append(theReactor().seconds())
            request.setResponseCode(200 if self.healthy else 500)
            return b"ok" if self.healthy else b"failing"
        if self.unavailableOnce:
            self.unavailableOnce = False
            request.setResponseCode(503)
            return b"busy"
        return self.name.encode()


class LogWaiter:
    """Fires Deferreds when a log line containing some text is emitted."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.lines: list[str] = []
        self._waiting: list[tuple[str, defer.Deferred[float]]] = []

    def __call__(self, event: LogEvent) -> None:
        """Keep the line; wake whoever waits for it, with the time it came."""
        line = formatEvent(event)
        self.lines.append(line)
        still = []
        for text, d in self._waiting:
            if text in line:
                d.callback(self.reactor.seconds())
            else:
                still.append((text, d))
        self._waiting = still

    def next(self, text: str, timeout: float = 10.0) -> defer.Deferred[float]:
        """Fire with the time of the next line containing C{text}."""
        d: defer.Deferred[float] = defer.Deferred()
        self._waiting.append((text, d))
        d.addTimeout(timeout, self.reactor)
        return d


@pytest.fixture
def logs(stack: Stack) -> Iterator[LogWaiter]:
    """The log, watched for lines, while the test runs."""
    waiter = LogWaiter(stack.reactor)
    observer = implementer(ILogObserver)(waiter)
    globalLogPublisher.addObserver(observer)
    yield waiter
    globalLogPublisher.removeObserver(observer)


def checkedBalancer(ports: list[int], health: str, extra: str = "") -> str:
    """A proxy config: balancer "web" of 127.0.0.1 members, with health checks."""
    members = "".join(
        f'[[balancer.web.member]]\nurl = "http://127.0.0.1:{p}"\n' for p in ports
    )
    return f"""
[proxy]
access_log = false
connect_timeout = 1.0
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "byrequests"
{extra}
[balancer.web.health]
method = "GET"
uri = "/health"
{health}
{members}
"""


async def freePort(stack: Stack) -> int:
    """A 127.0.0.1 port nothing listens on (for now)."""
    endpoint = TCP4ServerEndpoint(stack.reactor, 0, interface="127.0.0.1")
    listening = await endpoint.listen(Factory.forProtocol(Protocol))
    port = int(listening.getHost().port)
    await defer.maybeDeferred(listening.stopListening)
    return port


async def status(stack: Stack, port: int, path: str = "/page") -> tuple[int, str]:
    """GET C{path} through the proxy: the status and body text."""
    response = await stack.treq().get(f"http://127.0.0.1:{port}{path}")
    return response.code, await response.text()


@pytest_twisted.ensureDeferred
async def test_proxyStartedBeforeItsBackends(stack: Stack, logs: LogWaiter) -> None:
    """
    Down only after C{fails} checks counted from the first; in service within
    C{passes} fast checks of the backends answering, not after the interval.
    """
    ports = [await freePort(stack), await freePort(stack)]
    down = [logs.next(f"member http://127.0.0.1:{p} down") for p in ports]
    # Before the start: the first checks go out while the proxy starts.
    began = stack.reactor.seconds()
    proxy = await stack.proxy(
        checkedBalancer(
            ports, "interval = 30.0\nfast_interval = 0.2\ntimeout = 0.1\nfails = 3"
        )
    )
    for d in down:
        await d
    for p in ports:
        assert any(
            f"member http://127.0.0.1:{p} down: connect refused (3 of 3 failed)" in line
            for line in logs.lines
        )
    assert stack.reactor.seconds() - began >= 0.4
    assert await status(stack, proxy.port) == (503, "no backend available\n")
    up = [logs.next(f"member http://127.0.0.1:{p} up") for p in ports]
    apps = [App("one"), App("two")]
    for app, p in zip(apps, ports, strict=True):
        await stack.backend(app, p)
    answering = stack.reactor.seconds()
    for d in up:
        await d
    # Measured: about 0.4 s (two passes, 0.2 s apart), against interval 30.
    assert stack.reactor.seconds() - answering < 5.0
    assert (await status(stack, proxy.port))[0] == 200


@pytest_twisted.ensureDeferred
async def test_failOnStatusMemberBackAfterPasses(stack: Stack, logs: LogWaiter) -> None:
    """
    A member in error for answering 503 is logged, checked fast and back once
    C{passes} checks pass: well before retry (60 s) or the interval (30 s).
    """
    apps = [App("one"), App("two")]
    ports = [await stack.backend(app) for app in apps]
    up = [logs.next(f"member http://127.0.0.1:{p} up") for p in ports]
    proxy = await stack.proxy(
        checkedBalancer(
            ports,
            "interval = 30.0\nfast_interval = 0.2\ntimeout = 0.1\npasses = 2",
            "fail_on_status = [503]\nretry = 60.0",
        )
    )
    for d in up:
        await d
    sick = proxy.balancer.member("web", f"http://127.0.0.1:{ports[0]}")
    back = logs.next(f"member http://127.0.0.1:{ports[0]} of balancer://web back")
    apps[0].unavailableOnce = True
    answers = [await status(stack, proxy.port) for _ in range(2)]
    assert (503, "busy") in answers
    failed = stack.reactor.seconds()
    assert sick.inError(failed)
    assert (
        f"member http://127.0.0.1:{ports[0]} of balancer://web in error: answered 503"
        in logs.lines
    )
    assert {await status(stack, proxy.port) for _ in range(3)} == {(200, "two")}
    returned = await back
    # Measured: about 0.4 s (checks 0.2 s apart from the last), not 30 or 60.
    assert returned - failed < 5.0
    assert not sick.inError(stack.reactor.seconds())
    served = {(await status(stack, proxy.port))[1] for _ in range(4)}
    assert served == {"one", "two"}


@pytest_twisted.ensureDeferred
async def test_refusedMemberDownFast(stack: Stack, logs: LogWaiter) -> None:
    """A member refusing a request is checked at once and fast: down in a moment."""
    apps = [App("one"), App("two")]
    ports = [await stack.backend(app) for app in apps]
    up = [logs.next(f"member http://127.0.0.1:{p} up") for p in ports]
    proxy = await stack.proxy(
        checkedBalancer(
            ports, "interval = 30.0\nfast_interval = 0.2\ntimeout = 0.1\nfails = 2"
        )
    )
    for d in up:
        await d
    listening = stack.ports.pop(0)
    await defer.maybeDeferred(listening.stopListening)
    down = logs.next(f"member http://127.0.0.1:{ports[0]} down")
    assert {await status(stack, proxy.port) for _ in range(2)} == {(200, "two")}
    failed = stack.reactor.seconds()
    took = await down - failed
    # Measured: about 0.4 s (two failed checks 0.2 s apart), not 30 s.
    assert took < 5.0
    assert proxy.balancer.member("web", f"http://127.0.0.1:{ports[0]}").health == DOWN


@pytest_twisted.ensureDeferred
async def test_failingMemberAloneCheckedFast(stack: Stack, logs: LogWaiter) -> None:
    """Only the member failing its checks is checked at fast_interval."""
    steady, failing = App("steady"), App("failing")
    ports = [await stack.backend(steady), await stack.backend(failing)]
    up = [logs.next(f"member http://127.0.0.1:{p} up") for p in ports]
    await stack.proxy(
        checkedBalancer(
            ports,
            "interval = 1.0\nfast_interval = 0.1\ntimeout = 0.05\nfails = 3",
        )
    )
    for d in up:
        await d
    down = logs.next(f"member http://127.0.0.1:{ports[1]} down")
    failing.healthy = False
    firstFailure = len(failing.checkedAt)
    downAt = await down
    failedChecks = failing.checkedAt[firstFailure:]
    assert len(failedChecks) == 3
    startedFailing = failedChecks[0]
    assert all(b - a < 0.5 for a, b in pairwise(failedChecks))
    steadyMeanwhile = [t for t in steady.checkedAt if startedFailing <= t <= downAt]
    assert len(steadyMeanwhile) <= 1


WSS_BALANCER = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://pool/"
websocket = true
[balancer.pool]
[[balancer.pool.member]]
url = "wss://127.0.0.1:{port}"
tls_ca = "ca.pem"
[balancer.pool.health]
method = "GET"
uri = "/health"
interval = 1.0
fast_interval = 0.2
timeout = 0.19
passes = 2
fails = 1
"""


@pytest_twisted.ensureDeferred
async def test_wssMemberCheckedOverTLS(stack: Stack, tmp_path: Path) -> None:
    """A wss:// member's health check speaks TLS to its port: it answers, stays up."""
    page = HealthPage()
    site = Site(page)
    site.noisy = False
    stack.sites.append(site)
    ca = TestCA(tmp_path)
    tls = TLSMemoryBIOFactory(ServingTLS(ca.issue("127.0.0.1")), False, site)
    tls.noisy = False
    port = await stack.listen(tls)
    proxy = await stack.proxy(WSS_BALANCER, configDir=str(tmp_path), port=port)
    name = f"wss://127.0.0.1:{port}"
    member = proxy.balancer.member("pool", name)
    for _ in range(200):
        if member.health != UNKNOWN:
            break
        await deferLater(stack.reactor, 0.01)
    assert member.health == UP
    assert page.requests >= 2
    assert member.lastCheckResult == "GET /health answered 200"
