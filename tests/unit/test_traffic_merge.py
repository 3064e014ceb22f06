"""
Traffic across worker processes: a process's counts as JSON values
(L{Traffic.document}) and the owner's own counts plus the followers'
(L{Traffic.merged}), as the status and metrics pages show them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from twisted.internet.task import Clock

from twisted_proxy.core.traffic import BUCKETS, WINDOW, Traffic

# A whole minute: second START + n is in slot n of the ring.
START = 100 * WINDOW


def traffic() -> tuple[Traffic, Clock]:
    """Counts started at L{START}, on a Clock."""
    clock = Clock()
    clock.advance(START)
    return Traffic(clock.seconds), clock


def carried(document: dict[str, Any]) -> dict[str, Any]:
    """C{document} as the control channel carries it (JSON)."""
    result: dict[str, Any] = json.loads(json.dumps(document))
    return result


def served() -> tuple[Traffic, Clock, dict[str, Any], dict[str, Any]]:
    """
    The owner's own counts (its clock at START + 61) and two followers'
    documents:
      - own: 1 request at second 1 (slot 1), 2 at second 60 (slot 0);
      - first: 3 at second 60 (the same second), 2 at second 61 (slot 1);
      - second: 7 at second 0 (slot 0, a minute older than the others).
    """
    own, clock = traffic()
    clock.advance(1)
    own.count(100, 1000, route="r1", member="m1", method="GET", status=200)
    clock.advance(59)
    for _ in range(2):
        own.count(
            10, 20, route="r1", member="m1", method="GET", status=200, seconds=0.02
        )
    own.upstreamEvent("connect")
    own.websocketMessage("up")

    first, firstClock = traffic()
    firstClock.advance(60)
    for _ in range(3):
        first.count(
            1, 2, route="r1", member="m1", method="GET", status=200, seconds=0.3
        )
    firstClock.advance(1)
    first.count(5, 5, route="r2", member="m2", method="BREW", status=503, seconds=2.0)
    first.count(5, 5, route="r2", member="m2", method="BREW", status=503, seconds=75)
    first.upstreamEvent("connect")
    first.upstreamEvent("timeout")
    first.websocketMessage("down")
    first.websocketMessage("down")

    second, _ = traffic()
    for _ in range(7):
        second.count(0, 3, route="r1", member="m2", method="POST", status=0)
    second.upstreamEvent("retry")
    second.websocketMessage("up")

    clock.advance(1)
    return own, clock, carried(first.document()), carried(second.document())


def test_aDocumentSurvivesJSON() -> None:
    """
    A document read back from JSON, added to fresh counts, gives the same
    counts, rate and document again.
    """
    own, clock, _, _ = served()
    document = own.document()
    assert carried(document) == json.loads(json.dumps(document))
    again = Traffic(clock.seconds)
    again.started = own.started
    again.add(carried(document))
    assert again.document() == carried(document)
    assert again.snapshot() == own.snapshot()


def test_mergedAddsEveryCount() -> None:
    """
    Requests, bytes, requests by labels, durations, bytes by route, backend
    trouble and WebSocket messages: the owner's plus each follower's.
    """
    own, _, first, second = served()
    total = own.merged([first, second])
    snap = total.snapshot()
    assert (snap.requests, snap.bytesIn, snap.bytesOut) == (15, 133, 1077)
    assert total.byLabels == {
        ("r1", "m1", "GET", "2xx"): 6,
        ("r2", "m2", "other", "5xx"): 2,
        ("r1", "m2", "POST", "none"): 7,
    }
    gets = total.durations["r1", "GET"]
    assert sum(gets.counts) == 5
    assert gets.counts[BUCKETS.index(0.025)] == 2
    assert gets.counts[BUCKETS.index(0.5)] == 3
    assert gets.total == pytest.approx(2 * 0.02 + 3 * 0.3)
    brews = total.durations["r2", "other"]
    assert brews.counts[BUCKETS.index(2.5)] == 1
    assert brews.counts[-1] == 1
    assert brews.total == pytest.approx(77.0)
    assert set(total.durations) == {("r1", "GET"), ("r2", "other")}
    assert total.bytesByRoute == {"r1": [123, 1067], "r2": [10, 10]}
    assert total.upstream == {"connect": 2, "timeout": 1, "retry": 1}
    assert total.websocketMessages == {"up": 2, "down": 2}


def test_theRecentRateOfEveryProcess() -> None:
    """
    The same second counted by two processes adds up; a follower's second
    a minute older does not overwrite it, and a follower's newer second
    replaces the owner's older one in the same slot.
    """
    own, _, first, second = served()
    assert own.snapshot().recentRequests == 2
    for documents in ([first, second], [second, first]):
        snap = own.merged(documents).snapshot()
        # second 60: 2 + 3; second 61: 2 (the owner's second 1 is too old)
        assert snap.recentRequests == 7
        assert snap.recentSeconds == WINDOW
        assert snap.requestsPerSecond == pytest.approx(7 / WINDOW)
    counts, stamps = own.merged([first, second]).document()["recent"]
    assert (counts[0], stamps[0]) == (5, START + 60)
    assert (counts[1], stamps[1]) == (2, START + 61)


def test_mergedKeepsTheOwnersStart() -> None:
    """Uptime and rate window are the owner's, whatever the followers'."""
    own, clock, first, second = served()
    total = own.merged([first, second])
    assert total.started == own.started == START
    assert total.snapshot().uptime == 61
    clock.advance(5)
    assert total.snapshot().uptime == 66


def test_mergedLeavesTheOwnCountsAlone() -> None:
    """The owner's own counts are what they were after a merge, twice over."""
    own, _, first, second = served()
    before = copy.deepcopy(own.document())
    snapshot = own.snapshot()
    own.merged([first, second])
    own.merged([first, second])
    assert own.document() == before
    assert own.snapshot() == snapshot
    own.count(1, 1, route="r1", member="m1", method="GET", status=200, seconds=0.02)
    assert own.merged([first, second]).requests == 16


def test_mergedWithNoFollowers() -> None:
    """No follower reports: the merge is the owner's counts."""
    own, _, _, _ = served()
    total = own.merged([])
    assert total.document() == own.document()
    assert total.snapshot() == own.snapshot()
