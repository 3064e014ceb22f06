"""The debug trace of upstream exchanges, on a Clock: times, outcomes, wording."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from twisted_proxy.upstream.trace import UpstreamTrace


@dataclass
class Connection:
    """What the trace reads of an upstream connection."""

    requestsSent: int
    connectedAt: float


def test_timesOfAnAnsweredExchange() -> None:
    """Connect, first-byte and total times run from asking the pool."""
    clock = Clock()
    clock.advance(100.0)
    trace = UpstreamTrace(clock, "route */", b"GET", b"/x")
    trace.asking()
    clock.advance(0.25)
    trace.connected(Connection(3, 40.0), reused=True)
    clock.advance(0.5)
    trace.responded(100)
    clock.advance(0.125)
    trace.responded(201)
    clock.advance(1.0)
    with capturedLogs() as events:
        trace.ended("answered", "http://127.0.0.1:8001", None, None, 7, 90)
    [event] = events
    assert event["log_level"] == LogLevel.debug
    assert (
        event["connectTime"],
        event["firstByteTime"],
        event["totalTime"],
        event["connectionAge"],
        event["status"],
    ) == (0.25, 0.5, 1.875, 60.25, 201)
    assert formatEvent(event) == (
        "route */: GET /x -> http://127.0.0.1:8001: 201; reused connection"
        " (request 3 on it, 60.250s old); connect 0.250s, first byte 0.500s,"
        " total 1.875s; 7 body bytes in, 90 bytes out"
    )


def test_failedAttemptThenAnother() -> None:
    """
    An attempt that failed before any response says so, with no first byte;
    the next attempt is timed afresh.
    """
    clock = Clock()
    trace = UpstreamTrace(clock, "route */", b"POST", b"/y")
    trace.asking()
    clock.advance(0.5)
    trace.connected(Connection(1, 0.5), reused=False)
    clock.advance(2.0)
    with capturedLogs() as events:
        trace.ended("failed: reset", "http://h:1", "balancer://b", "r1", 0, 10)
        trace.asking()
        trace.connected(Connection(1, 2.5), reused=False)
        trace.responded(200)
        trace.ended("answered", "http://h:2", "balancer://b", None, 5, 10)
    failed, answered = (formatEvent(e) for e in events)
    assert failed == (
        "route */: POST /y -> http://h:1 (balancer://b, route r1): failed: reset;"
        " new connection (request 1 on it, 0.000s old); connect 0.500s,"
        " first byte -, total 2.500s; 0 body bytes in, 10 bytes out"
    )
    assert events[0]["status"] is None
    assert answered.startswith("route */: POST /y -> http://h:2 (balancer://b): 200;")
    assert events[1]["totalTime"] == 0.0
