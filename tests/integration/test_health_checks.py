"""
Active health checks against real twisted.web backends on 127.0.0.1: members
go down and come back as their /health page, their port or their body says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.integration.support import Stack
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
