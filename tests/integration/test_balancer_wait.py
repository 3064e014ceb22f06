"""
A balancer's C{wait} end to end on 127.0.0.1: a request that finds no usable
member waits for one (a real twisted.web member enabled meanwhile serves it),
or gets 503 once the wait is over.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer

from tests.integration.support import RawBackend, RecordingBackend, Stack, request


def disabledBalancer(port: int, wait: float) -> str:
    """A proxy whose one route goes to balancer "web": one disabled member."""
    return f"""
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
wait = {wait}
[[balancer.web.member]]
url = "http://127.0.0.1:{port}"
route = "one"
disabled = true
"""


def waitingForMember(proxy: Any) -> defer.Deferred[None]:
    """Fires when a request first finds no usable member and asks how long to wait."""
    balancer = proxy.balancer
    memberWait = balancer.memberWait
    started: defer.Deferred[None] = defer.Deferred()

    def asked(balancerName: str) -> float:
        wait: float = memberWait(balancerName)
        if not started.called:
            started.callback(None)
        return wait

    balancer.memberWait = asked
    return started


@pytest_twisted.ensureDeferred
async def test_aMemberEnabledDuringTheWaitServesTheRequest(stack: Stack) -> None:
    """The only member is enabled while a request waits: it gets it, and answers."""
    backend = RecordingBackend("one")
    port = await stack.backend(backend)
    proxy = await stack.proxy(disabledBalancer(port, 10.0))
    waiting = waitingForMember(proxy)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/page"))  # type: ignore[union-attr]
    await waiting
    assert backend.requests == []
    proxy.balancer.setFlags("web", "one", disabled=False)
    data = await client.waitFor(lambda d: d.endswith(b"one saw GET /page"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert [r.uri for r in backend.requests] == [b"/page"]


@pytest_twisted.ensureDeferred
async def test_noMemberWithinTheWaitIs503(stack: Stack) -> None:
    """The member never comes back: 503, not before the wait is over."""
    backend = RecordingBackend("one")
    port = await stack.backend(backend)
    proxy = await stack.proxy(disabledBalancer(port, 0.5))
    client = await stack.connect(proxy.port)
    sent = stack.reactor.seconds()
    client.transport.write(request(b"GET", b"/page"))  # type: ignore[union-attr]
    data = await client.waitFor(lambda d: b"\r\n\r\n" in d)
    assert stack.reactor.seconds() - sent >= 0.5
    assert data.startswith(b"HTTP/1.1 503 ")
    assert backend.requests == []


@pytest_twisted.ensureDeferred
async def test_aTcpConnectionWaitsForAMember(stack: Stack) -> None:
    """A tcp listener's connection waits too: the member enabled gets its bytes."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        protocol = "tcp"
        to = "balancer://pool"
        [balancer.pool]
        wait = 10
        [[balancer.pool.member]]
        url = "tcp://127.0.0.1:{port}"
        disabled = true
        """,
        port=port,
    )
    waiting = waitingForMember(proxy)
    client = await stack.connect(proxy.port)
    client.transport.write(b"ping")  # type: ignore[union-attr]
    await waiting
    assert raw.connections == []
    proxy.balancer.setFlags("pool", f"tcp://127.0.0.1:{port}", disabled=False)
    member = await raw.waitFor(lambda p: p.received == b"ping")
    member.transport.write(b"pong")  # type: ignore[union-attr]
    assert await client.waitFor(lambda d: d == b"pong") == b"pong"
