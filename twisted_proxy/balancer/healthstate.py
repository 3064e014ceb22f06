"""
The deciding part of active health checks: pure, no clock, no I/O.

L{HealthTracker} turns a run of passed and failed checks (and failed
requests) into state transitions and says whether a member is settled;
L{nextCheckDelay} turns that into the time to its next check;
L{statusMatches} and L{Expectation} judge an answer.
L{twisted_proxy.balancer.health} is the I/O around them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from twisted_proxy.balancer.state import DOWN, UNKNOWN, UP
from twisted_proxy.config.model import HealthCheck

__all__ = [
    "DEFAULT_FAST_INTERVAL",
    "MAX_BODY",
    "Expectation",
    "HealthTracker",
    "fastInterval",
    "nextCheckDelay",
    "statusMatches",
]

MAX_BODY = 65536
"""Bytes of an answer's body read at most for C{expect_body}."""

DEFAULT_FAST_INTERVAL = 2.0
"""Seconds between checks of a member not settled, unless C{fast_interval} says."""


@dataclass(eq=False, slots=True)
class HealthTracker:
    """
    One member's rise/fall counter: checks in, state transitions out.

    From any state, C{fails} failed checks in a row lead to L{DOWN} and
    C{passes} passed checks in a row to L{UP} (when not already there); a
    result of the other kind resets the run. Counting starts with the very
    first check, so a member is never down after fewer than C{fails} checks.

    A request that failed (L{requestFailed}) makes an up or unknown member
    I{suspect}: its run of passes starts again, and C{passes} passed checks
    in a row clear the suspicion (L{observe} says L{UP} then, even if the
    member was up all along).

    L{settled} tells whether the member may wait the normal interval for its
    next check, or should be re-checked at the fast interval. Pure: no
    clock, no I/O.
    """

    passes: int
    """Checks in a row that bring the member up."""
    fails: int
    """Checks in a row that take it down."""
    state: str = UNKNOWN
    """L{UNKNOWN}, L{UP} or L{DOWN}."""
    consecutivePasses: int = field(default=0, init=False)
    """Checks passed in a row, up to now."""
    consecutiveFails: int = field(default=0, init=False)
    """Checks failed in a row, up to now."""
    suspect: bool = field(default=False, init=False)
    """A request failed since the last confirmation; passes must clear it."""
    everUp: bool = field(default=False, init=False)
    """Whether the member has been up (since it was first watched)."""
    # A result against the state (or none yet) that no full run of passes or
    # fails has confirmed or overruled since.
    _doubted: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        passes, fails, state = self.passes, self.fails, self.state
        if passes < 1 or fails < 1:
            raise ValueError(f"passes and fails must be at least 1: {passes}, {fails}")
        if state not in (UNKNOWN, UP, DOWN):
            raise ValueError(f"unknown health state {state!r}")
        self.everUp = state == UP
        self._doubted = state == UNKNOWN

    def observe(self, ok: bool) -> str | None:
        """
        Count one check's result; return the new state if it changed (or
        L{UP} when C{passes} checks in a row clear a suspect member), else None.
        """
        if ok:
            self.consecutivePasses += 1
            self.consecutiveFails = 0
            if self.state != UP:
                self._doubted = True
            if self.consecutivePasses >= self.passes:
                self._doubted = False
                if self.state != UP or self.suspect:
                    self.state = UP
                    self.everUp = True
                    self.suspect = False
                    return UP
        else:
            self.consecutiveFails += 1
            self.consecutivePasses = 0
            if self.state != DOWN:
                self._doubted = True
            if self.consecutiveFails >= self.fails:
                self._doubted = False
                if self.state != DOWN:
                    self.state = DOWN
                    self.suspect = False
                    return DOWN
        return None

    def requestFailed(self) -> None:
        """
        A request to the member failed: its passes start again from zero, and
        only C{passes} of them in a row clear it. No effect on a down member.
        """
        if self.state != DOWN:
            self.suspect = True
            self.consecutivePasses = 0

    @property
    def settled(self) -> bool:
        """
        Whether the normal interval applies to the next check.

        Not while the member is unknown, nor after a check against its state
        (a failure while up, a pass while down) until C{passes} checks in a
        row pass or C{fails} fail, nor while it is suspect; nor while it is
        down without ever having been up, so that a backend started after
        the proxy is in service soon after it answers.
        """
        if self.suspect or self._doubted:
            return False
        return self.state != DOWN or self.everUp


def fastInterval(check: HealthCheck) -> float:
    """
    The seconds between checks of a member whose state is not settled:
    C{fast_interval}, by default the smaller of 2 s and C{interval}, and
    never more than C{interval}.
    """
    fast = DEFAULT_FAST_INTERVAL if check.fast_interval is None else check.fast_interval
    return min(fast, check.interval)


def nextCheckDelay(tracker: HealthTracker, check: HealthCheck) -> float:
    """Seconds from the start of a member's last check to the start of its next."""
    return check.interval if tracker.settled else fastInterval(check)


def statusMatches(status: int, expect: Sequence[str]) -> bool:
    """
    Tell whether C{status} is one of C{expect}: classes like ``"2xx"`` or exact
    codes like ``"204"`` (an empty C{expect} matches nothing).
    """
    for pattern in expect:
        pattern = pattern.strip().lower()
        if len(pattern) == 3 and pattern.endswith("xx") and pattern[0].isdigit():
            if status // 100 == int(pattern[0]):
                return True
        elif pattern.isdigit() and int(pattern) == status:
            return True
    return False


class Expectation:
    """
    What an HTTP check expects of an answer, compiled once per balancer.

    The body, when C{expect_body} is set, is searched (C{re.search}) as UTF-8
    text, undecodable bytes replaced; only its first L{MAX_BODY} bytes count.

    :raise re.error: if C{expect_body} is not a valid regular expression.
    """

    def __init__(self, check: HealthCheck) -> None:
        self.method = check.method
        self.uri = check.uri
        self.expectStatus = tuple(check.expect_status)
        self.bodyPattern = check.expect_body
        self._body = (
            None if check.expect_body is None else re.compile(check.expect_body)
        )

    @property
    def readsBody(self) -> bool:
        """Whether the body must be read at all."""
        return self._body is not None

    def judge(self, status: int, body: bytes = b"") -> tuple[bool, str]:
        """Return whether an answer passes, and what it was in words."""
        said = f"{self.method} {self.uri} answered {status}"
        if not statusMatches(status, self.expectStatus):
            return False, said
        if self._body is not None and not self._body.search(
            body[:MAX_BODY].decode("utf-8", "replace")
        ):
            return False, f"{said}, body did not match {self.bodyPattern!r}"
        return True, said
