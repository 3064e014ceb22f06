"""
PurposeTimer: one deadline at a time for a connection, with what it is for.
"""

from __future__ import annotations

import gc

from twisted.internet.task import Clock

from twisted_proxy.core.timer import PurposeTimer


def _timer() -> tuple[Clock, PurposeTimer, list[str | None]]:
    clock = Clock()
    fired: list[str | None] = []
    return clock, PurposeTimer(clock.callLater, fired.append), fired


def test_runsOutForItsPurpose() -> None:
    """The owner is told which purpose ran out, once, when it runs out."""
    clock, timer, fired = _timer()
    timer.arm(5, "head")
    clock.advance(4.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == ["head"]
    assert timer.purpose is None
    assert clock.getDelayedCalls() == []


def test_armingAgainReplacesTheDeadlineWithOneCall() -> None:
    """A new purpose re-aims the running call: one call, the new deadline."""
    clock, timer, fired = _timer()
    timer.arm(5, "head")
    first = clock.getDelayedCalls()
    clock.advance(3)
    timer.arm(10, "body")
    assert clock.getDelayedCalls() == first
    clock.advance(9.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == ["body"]


def test_armingAfterItRanOutMakesANewCall() -> None:
    """Once it ran out, arming it starts a fresh call."""
    clock, timer, fired = _timer()
    timer.arm(1, "idle")
    clock.advance(1)
    timer.arm(2, "head")
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(2)
    assert fired == ["idle", "head"]


def test_extendPushesTheRunningDeadlineOnly() -> None:
    """extend moves a running deadline and keeps its purpose; none: nothing."""
    clock, timer, fired = _timer()
    timer.extend(5)
    assert clock.getDelayedCalls() == []
    timer.arm(2, "upload")
    clock.advance(1.5)
    timer.extend(2)
    clock.advance(1.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == ["upload"]
    timer.extend(3)
    assert clock.getDelayedCalls() == []


def test_forgottenPurposeRunsOutAsNone() -> None:
    """A purpose given up leaves the call running, with nothing to do."""
    clock, timer, fired = _timer()
    timer.arm(1, "upload")
    timer.forget()
    clock.advance(1)
    assert fired == [None]


def test_cancelLeavesNoCall() -> None:
    """cancel stops the call; cancelling again, or with none, is harmless."""
    clock, timer, fired = _timer()
    timer.cancel()
    timer.arm(1, "head")
    timer.cancel()
    timer.cancel()
    assert clock.getDelayedCalls() == []
    assert timer.purpose is None
    clock.advance(5)
    assert fired == []


def test_closeStopsForGoodAndLetsTheOwnerGo() -> None:
    """
    Closed (the connection is gone): the deadline is stopped, arming it
    again does nothing, and it no longer holds the owner's callback.
    """
    clock, timer, fired = _timer()
    timer.arm(1, "head")
    timer.close()
    timer.arm(1, "idle")
    assert clock.getDelayedCalls() == []
    assert timer.purpose is None
    clock.advance(5)
    assert fired == []
    assert fired.append not in gc.get_referents(timer)
