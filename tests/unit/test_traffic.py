"""
Traffic: requests and bytes since the start, and the rate over the last
minute, on a Clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from twisted_proxy.core.traffic import WINDOW, Traffic


def test_totalsAndRate() -> None:
    """Totals add up; the rate is the last minute's requests per second."""
    clock = Clock()
    clock.advance(1000)
    traffic = Traffic(clock.seconds)
    for _ in range(30):
        clock.advance(1)
        traffic.count(100, 1000)
        traffic.count(50, 0)
    snap = traffic.snapshot()
    assert (snap.requests, snap.bytesIn, snap.bytesOut) == (60, 4500, 30000)
    assert snap.uptime == 30
    assert snap.recentRequests == 60
    assert snap.requestsPerSecond == 2.0


def test_onlyTheLastMinuteCounts() -> None:
    """Requests older than the window drop out of the rate, not the totals."""
    clock = Clock()
    traffic = Traffic(clock.seconds)
    for _ in range(10):
        traffic.count(0, 0)
    clock.advance(WINDOW + 5)
    traffic.count(0, 0)
    snap = traffic.snapshot()
    assert snap.requests == 11
    assert snap.recentRequests == 1
    assert snap.recentSeconds == WINDOW
    clock.advance(WINDOW * 3)
    assert traffic.snapshot().recentRequests == 0
    assert traffic.snapshot().requestsPerSecond == 0.0


def test_aSlotIsReusedOneMinuteLater() -> None:
    """The same slot a minute later starts from zero, not from the old count."""
    clock = Clock()
    traffic = Traffic(clock.seconds)
    for _ in range(5):
        traffic.count(0, 0)
    clock.advance(WINDOW)
    traffic.count(0, 0)
    assert traffic.snapshot().recentRequests == 1


def test_nothingYet() -> None:
    """At the start: zeros, no division by zero."""
    snap = Traffic(Clock().seconds).snapshot()
    assert (snap.requests, snap.requestsPerSecond, snap.uptime) == (0, 0.0, 0)
