"""
Traffic: requests and bytes since the start, and the rate over the last
minute, on a Clock.
"""

from __future__ import annotations

import math

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


def test_requestsByLabelsAndDurations() -> None:
    """Counted by route, member, method (others as "other") and status class."""
    traffic = Traffic(Clock().seconds)
    traffic.count(10, 100, "/", "http://a:1", "GET", 200, 0.003)
    traffic.count(10, 100, "/", "http://a:1", "GET", 204, 0.2)
    traffic.count(5, 0, "/", "http://a:1", "BREW", 502, 70.0)
    traffic.count(5, 0, "/api/", "", "POST", 0, None)
    assert traffic.byLabels == {
        ("/", "http://a:1", "GET", "2xx"): 2,
        ("/", "http://a:1", "other", "5xx"): 1,
        ("/api/", "", "POST", "none"): 1,
    }
    get = traffic.durations["/", "GET"].cumulative()
    assert get[0] == (0.005, 1)
    assert dict(get)[0.25] == 2
    assert get[-1][1] == 2
    assert traffic.durations["/", "other"].cumulative()[-2:] == [
        (60.0, 0),
        (math.inf, 1),
    ]
    assert ("/api/", "POST") not in traffic.durations
    assert traffic.bytesByRoute == {"/": [25, 200], "/api/": [5, 0]}


def test_upstreamEventsAndMessages() -> None:
    """Backend trouble by kind; WebSocket messages by direction."""
    traffic = Traffic(Clock().seconds)
    for kind in ("connect", "failover", "connect"):
        traffic.upstreamEvent(kind)
    traffic.websocketMessage("up")
    traffic.websocketMessage("down")
    traffic.websocketMessage("down")
    assert traffic.upstream == {"connect": 2, "failover": 1}
    assert traffic.websocketMessages == {"up": 1, "down": 2}
