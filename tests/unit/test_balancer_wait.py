"""
A balancer's C{wait} (Apache's C{ProxySet timeout=}): a request that finds no
usable member waits for one on the injected clock, asking again every
L{WAIT_STEP} seconds, and gets 503 only once C{wait} is over. Checked on the
lease with an in-memory holder, and through the HTTP relay on a
MemoryReactorClock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import txaio
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.unit.test_config import balancerErrors
from tests.unit.test_httprelay_memory import GET, Proxy
from tests.unit.test_lease import leaseFor, member, state
from tests.unit.test_websocket_bridge import UPGRADE, accepted
from tests.unit.test_websocket_bridge import Proxy as WebSocketProxy
from twisted_proxy.balancer.lease import CAPACITY_WAIT, WAIT_STEP
from twisted_proxy.balancer.state import DOWN, UP
from twisted_proxy.config import loadString
from twisted_proxy.config.model import Balancer, Member

UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\n"


@pytest.fixture
def logged() -> Any:
    """The log lines, while the test runs, that say a balancer had no member."""
    lines: list[str] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        """Keep the lease's lines about no usable member."""
        text = formatEvent(event)
        if "no usable member" in text:
            lines.append(text)

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


# -- the lease --


def test_aMemberEnabledDuringTheWaitServes() -> None:
    """The only member enabled while the request waits: it takes the request."""
    lease, connector, svc, clock = leaseFor(member(1, disabled=True), wait=2.5)
    lease.start()
    assert (connector.attempts, connector.unavailable503) == ([], 0)
    clock.advance(1.0)
    svc.setFlags("web", "r1", disabled=False)
    clock.advance(WAIT_STEP)
    assert (connector.attempts, connector.unavailable503) == ([1], 0)
    assert state(svc, 1).inFlight == 1
    assert clock.getDelayedCalls() == []


def test_noMemberWithinTheWaitIs503AtItsEnd() -> None:
    """No member usable within C{wait}: 503 when it is over, not before."""
    lease, connector, _, clock = leaseFor(member(1, disabled=True), wait=2.5)
    lease.start()
    for _ in range(24):
        clock.advance(WAIT_STEP)
    assert connector.unavailable503 == 0
    clock.advance(2.5 - clock.seconds())
    assert (connector.attempts, connector.unavailable503) == ([], 1)
    assert clock.getDelayedCalls() == []


def test_theWaitAsksAgainEachStep() -> None:
    """While waiting, exactly one DelayedCall is pending, one step ahead."""
    lease, _, _, clock = leaseFor(member(1, disabled=True), wait=1.0)
    lease.start()
    [pending] = clock.getDelayedCalls()
    assert pending.getTime() == pytest.approx(WAIT_STEP)
    clock.advance(WAIT_STEP)
    [pending] = clock.getDelayedCalls()
    assert pending.getTime() == pytest.approx(2 * WAIT_STEP)


def test_aMemberHealthyAgainServes() -> None:
    """A member health-checked down, found up during the wait, takes the request."""
    lease, connector, svc, clock = leaseFor(member(1), wait=3.0)
    state(svc, 1).health = DOWN
    lease.start()
    clock.advance(2.0)
    assert (connector.attempts, connector.unavailable503) == ([], 0)
    state(svc, 1).health = UP
    svc.healthChanged("web", state(svc, 1), UP, "passed")
    clock.advance(WAIT_STEP)
    assert connector.attempts == [1]


def test_theClientGoneCancelsTheWait() -> None:
    """The lease released while waiting: no DelayedCall left, nothing tried."""
    lease, connector, svc, clock = leaseFor(member(1, disabled=True), wait=2.5)
    lease.start()
    assert len(clock.getDelayedCalls()) == 1
    lease.release(True)
    assert clock.getDelayedCalls() == []
    svc.setFlags("web", "r1", disabled=False)
    clock.advance(5.0)
    assert (connector.attempts, connector.unavailable503) == ([], 0)
    assert state(svc, 1).inFlight == 0


def test_noWaitIs503AtOnce() -> None:
    """C{wait = 0} (the default): 503 at once, and no DelayedCall."""
    lease, connector, _, clock = leaseFor(member(1, disabled=True))
    lease.start()
    assert (connector.attempts, connector.unavailable503) == ([], 1)
    assert clock.getDelayedCalls() == []


def test_aFailoverFindingNoneWaitsToo() -> None:
    """The member tried failed and no other is usable: the failover waits."""
    lease, connector, svc, clock = leaseFor(
        member(1), member(2, disabled=True), failures={1: "connect"}, wait=1.0
    )
    lease.start()
    assert (connector.attempts, connector.unavailable503) == ([1], 0)
    svc.setFlags("web", "r2", disabled=False)
    clock.advance(WAIT_STEP)
    assert (connector.attempts, connector.answered) == ([1, 2], 2)


def test_theCapacityWaitCountsTowardsTheWait() -> None:
    """
    Every member full: the capacity wait comes first, and the balancer's
    wait, counted from the first miss, adds nothing once it is longer.
    """
    lease, connector, svc, clock = leaseFor(
        member(1, max_connections=1), wait=CAPACITY_WAIT - 1
    )
    busy = svc.pick("web")
    assert busy is not None
    lease.start()
    clock.advance(CAPACITY_WAIT)
    assert (connector.attempts, connector.unavailable503) == ([], 1)
    assert clock.getDelayedCalls() == []


def test_theLogSaysItWaited(logged: list[str]) -> None:
    """The 503's log line says how long the request waited; without wait, not."""
    lease, _, _, clock = leaseFor(member(1, disabled=True), wait=0.5)
    lease.start()
    clock.advance(0.5)
    lease, _, _, _ = leaseFor(member(1, disabled=True))
    lease.start()
    assert logged == [
        "route *: no usable member in balancer web after waiting 0.5 s",
        "route *: no usable member in balancer web",
    ]


# -- through the HTTP relay --


def disabledMember(port: int) -> Member:
    """A disabled member on 127.0.0.1:C{port}, route C{rPORT}."""
    return Member(
        f"http://127.0.0.1:{port}",
        "http",
        "127.0.0.1",
        port,
        route=f"r{port}",
        disabled=True,
    )


def test_aRequestIsServedByAMemberEnabledDuringTheWait() -> None:
    """HTTP: the member enabled mid-wait gets the request, the client its 200."""
    proxy = Proxy(
        "balancer://web/",
        Balancer("web", members=(disabledMember(3001),), wait=2.0),
    )
    assert proxy.balancer is not None
    proxy.send(GET)
    proxy.reactor.advance(1.0)
    assert proxy.attempts() == []
    assert proxy.client.value() == b""
    proxy.balancer.setFlags("web", "r3001", disabled=False)
    proxy.reactor.advance(WAIT_STEP)
    assert proxy.attempts() == [3001]
    backend, wire = proxy.accept()
    assert wire.value().startswith(b"GET /x?y=1 HTTP/1.1\r\n")
    backend.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert proxy.client.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert proxy.client.value().endswith(b"\r\n\r\nok")


def test_aRequestGets503WhenTheWaitIsOver() -> None:
    """HTTP: no member within the wait: 503 at its end, nothing connected."""
    proxy = Proxy(
        "balancer://web/",
        Balancer("web", members=(disabledMember(3001),), wait=2.0),
    )
    proxy.send(GET)
    proxy.reactor.advance(1.9)
    assert proxy.client.value() == b""
    proxy.reactor.advance(0.1)
    assert proxy.client.value().startswith(UNAVAILABLE)
    assert proxy.client.value().endswith(b"\r\n\r\nno backend available\n")
    assert proxy.attempts() == []


def test_aClientGoneDuringTheWaitCancelsIt() -> None:
    """HTTP: the client leaves mid-wait: the wait's DelayedCall is cancelled."""
    proxy = Proxy(
        "balancer://web/",
        Balancer("web", members=(disabledMember(3001),), wait=2.0),
    )
    assert proxy.balancer is not None
    before = set(proxy.reactor.getDelayedCalls())
    proxy.send(GET)
    proxy.reactor.advance(WAIT_STEP)
    assert set(proxy.reactor.getDelayedCalls()) - before
    proxy.channel.connectionLost(Failure(ConnectionLost()))
    assert {c for c in proxy.reactor.getDelayedCalls() if c.active()} <= before
    proxy.balancer.setFlags("web", "r3001", disabled=False)
    proxy.reactor.advance(3.0)
    assert proxy.attempts() == []
    assert proxy.balancer.member("web", "r3001").inFlight == 0


def test_withoutWaitTheRequestGets503AtOnce() -> None:
    """HTTP: C{wait = 0}: 503 at once, as before."""
    proxy = Proxy("balancer://web/", Balancer("web", members=(disabledMember(3001),)))
    proxy.send(GET)
    assert proxy.client.value().startswith(UNAVAILABLE)


# -- the configuration --


def test_waitIsRead() -> None:
    """C{wait} is read as seconds; left out, it is 0."""
    text = '[balancer.web]\n{}[[balancer.web.member]]\nurl = "http://h"\n'
    assert loadString(text.format("wait = 2.5\n")).balancer("web").wait == 2.5
    assert loadString(text.format("wait = 3\n")).balancer("web").wait == 3.0
    assert loadString(text.format("")).balancer("web").wait == 0.0


@pytest.mark.parametrize(
    ("line", "got"),
    [("wait = -1", "-1"), ('wait = "2s"', '"2s"'), ("wait = true", "true")],
)
def test_aBadWaitIsAnError(line: str, got: str) -> None:
    """A negative or non-number wait is an error naming balancer.NAME.wait."""
    assert balancerErrors("", line) == [
        "site.toml: balancer.web.wait: expected a number of seconds (0: off),"
        f" got {got}"
    ]


# -- WebSocket handshakes --


@pytest.fixture
def wsReactor() -> Iterator[MemoryReactorClock]:
    """A memory reactor that Autobahn's timers use too, for the test's length."""
    memory = MemoryReactorClock()
    config: Any = txaio.config  # type: ignore[attr-defined]
    previous = config.loop
    config.loop = memory
    yield memory
    config.loop = previous


def wsProxy(reactor: MemoryReactorClock) -> WebSocketProxy:
    """A WebSocket route to balancer "web": one disabled ws:// member, wait 2."""
    disabled = Member(
        "ws://127.0.0.1:3001", "ws", "127.0.0.1", 3001, route="r1", disabled=True
    )
    return WebSocketProxy(reactor, Balancer("web", members=(disabled,), wait=2.0))


def test_aHandshakeWaitsForAMember(wsReactor: MemoryReactorClock) -> None:
    """WebSocket: a handshake waits; the member enabled meanwhile takes it."""
    proxy = wsProxy(wsReactor)
    assert proxy.balancer is not None
    proxy.channel.dataReceived(UPGRADE)
    wsReactor.advance(1.0)
    assert (proxy.attempts(), proxy.client.value()) == ([], b"")
    proxy.balancer.setFlags("web", "r1", disabled=False)
    wsReactor.advance(WAIT_STEP)
    assert proxy.attempts() == [3001]
    backend, wire = proxy.accept()
    backend.dataReceived(accepted(wire.value()))
    assert proxy.client.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


def test_aHandshakeGets503AfterTheWait(wsReactor: MemoryReactorClock) -> None:
    """WebSocket: no member within the wait: 503 at its end."""
    proxy = wsProxy(wsReactor)
    proxy.channel.dataReceived(UPGRADE)
    wsReactor.advance(1.9)
    assert proxy.client.value() == b""
    wsReactor.advance(0.1)
    assert proxy.client.value().startswith(UNAVAILABLE)
    assert proxy.attempts() == []


def test_aClientGoneCancelsTheHandshakeWait(wsReactor: MemoryReactorClock) -> None:
    """WebSocket: the client leaves mid-wait: its wait is cancelled."""
    proxy = wsProxy(wsReactor)
    assert proxy.balancer is not None
    before = set(wsReactor.getDelayedCalls())
    proxy.channel.dataReceived(UPGRADE)
    wsReactor.advance(WAIT_STEP)
    assert set(wsReactor.getDelayedCalls()) - before
    proxy.channel.connectionLost(Failure(ConnectionDone()))
    assert {c for c in wsReactor.getDelayedCalls() if c.active()} <= before
    proxy.balancer.setFlags("web", "r1", disabled=False)
    wsReactor.advance(3.0)
    assert proxy.attempts() == []


def test_aBalancerReloadedAwayEndsTheWaitWith503() -> None:
    """A reload removes the balancer a request waits on: 503, nothing pending."""
    lease, connector, svc, clock = leaseFor(member(1, disabled=True), wait=2.5)
    lease.start()
    svc.reconfigure([])
    clock.advance(WAIT_STEP)
    assert (connector.attempts, connector.unavailable503) == ([], 1)
    assert clock.getDelayedCalls() == []
