"""
``[proxy] log_level`` end to end: with "debug" each upstream exchange is
logged (member, route, new or reused connection, timings, status, bytes);
with "info" none is.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_twisted
from twisted.logger import LogEvent, LogLevel, formatEvent, globalLogPublisher

from tests.integration.support import (
    RecordingBackend,
    Stack,
    hasReplies,
    parseReplies,
    request,
)

BALANCED = """
[proxy]
access_log = false
log_level = "{level}"
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://pool/"
[balancer.pool]
[[balancer.pool.member]]
url = "http://127.0.0.1:{port}"
route = "node1"
"""


@pytest.fixture
def debugEvents() -> Iterator[list[LogEvent]]:
    """The debug-level events emitted during the test."""
    events: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_level") == LogLevel.debug:
            events.append(event)

    globalLogPublisher.addObserver(observe)  # type: ignore[arg-type]
    yield events
    globalLogPublisher.removeObserver(observe)  # type: ignore[arg-type]


async def twoRequests(stack: Stack, level: str) -> tuple[int, list[bytes]]:
    """Two GETs on one client connection through a proxy at C{level}."""
    port = await stack.backend(RecordingBackend())
    proxy = await stack.proxy(BALANCED, port=port, level=level)
    client = await stack.connect(proxy.port)
    for n, path in enumerate((b"/one", b"/two")):
        client.transport.write(request(b"GET", path))  # type: ignore[union-attr]
        await client.waitFor(hasReplies(n + 1))
    return port, [reply.body for reply in parseReplies(client.received)]


@pytest_twisted.ensureDeferred
async def test_debugLogsEachUpstreamExchange(
    stack: Stack, debugEvents: list[LogEvent]
) -> None:
    """
    With log_level = "debug", each exchange is logged: the member, its
    balancer and route, a new connection then the same one reused (request
    2 on it), the times, the status and the bytes; with "info", none is.
    """
    await twoRequests(stack, "info")
    assert [e for e in debugEvents if "connectionRequests" in e] == []
    port, bodies = await twoRequests(stack, "debug")
    member = f"http://127.0.0.1:{port}"
    exchanges = [e for e in debugEvents if "connectionRequests" in e]
    assert [
        (
            e["path"],
            e["backend"],
            e["balancer"],
            e["memberRoute"],
            e["connection"],
            e["connectionRequests"],
            e["status"],
            e["bytesIn"],
        )
        for e in exchanges
    ] == [
        ("/one", member, "balancer://pool", "node1", "new", 1, 200, len(bodies[0])),
        ("/two", member, "balancer://pool", "node1", "reused", 2, 200, len(bodies[1])),
    ]
    first, second = exchanges
    for event in exchanges:
        assert 0 <= event["connectTime"] <= event["totalTime"] < 5.0
        assert 0 <= event["firstByteTime"] <= event["totalTime"]
        assert event["bytesOut"] > len(b"GET /one HTTP/1.1\r\n\r\n")
    assert second["connectionAge"] > first["connectionAge"]
    assert formatEvent(first).startswith(
        f"route */: GET /one -> {member} (balancer://pool, route node1): 200;"
        " new connection (request 1 on it, 0."
    )
    assert " reused connection (request 2 on it, " in formatEvent(second)
