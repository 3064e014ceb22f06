"""
Tests for L{twisted_proxy.balancer.health}: the rise/fall state machine, the
answer checks, and the check loops on a L{Clock} (no sockets, no waiting).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from twisted_proxy.balancer.health import HealthMonitor
from twisted_proxy.balancer.healthprobe import describeFailure
from twisted_proxy.balancer.healthstate import (
    MAX_BODY,
    Expectation,
    HealthTracker,
    fastInterval,
    nextCheckDelay,
    statusMatches,
)
from twisted_proxy.balancer.state import DOWN, UNKNOWN, UP, MemberState
from twisted_proxy.config.model import HealthCheck, HealthMethod, Member
from twisted_proxy.tls.backend import CertificateChainError

OK = (True, "GET /health answered 200")
BAD = (False, "GET /health answered 500")


def memberState(port: int = 9002, index: int = 0) -> MemberState:
    """Return the state of member http://127.0.0.1:C{port}."""
    return MemberState(
        Member(f"http://127.0.0.1:{port}", "http", "127.0.0.1", port), index
    )


def observeAll(tracker: HealthTracker, results: str) -> list[str | None]:
    """Feed C{results} ("+" passed, "-" failed); return what each observe said."""
    return [tracker.observe(r == "+") for r in results]


# The state machine.


def test_unknownToUpAfterPasses() -> None:
    """From unknown, C{passes} passed checks in a row make the member up, once."""
    tracker = HealthTracker(passes=2, fails=3)
    assert tracker.state == UNKNOWN
    assert observeAll(tracker, "+++") == [None, UP, None]
    assert tracker.state == UP
    assert tracker.consecutivePasses == 3


def test_unknownToDownAfterFails() -> None:
    """From unknown, C{fails} failed checks in a row take the member down, once."""
    tracker = HealthTracker(passes=2, fails=3)
    assert observeAll(tracker, "----") == [None, None, DOWN, None]
    assert tracker.state == DOWN
    assert tracker.consecutiveFails == 4


def test_upToDownAfterFails() -> None:
    """An up member goes down after C{fails} failures in a row, not before."""
    tracker = HealthTracker(passes=1, fails=3, state=UP)
    assert observeAll(tracker, "--") == [None, None]
    assert tracker.state == UP
    assert tracker.observe(False) == DOWN


def test_downToUpAfterPasses() -> None:
    """A down member comes back after C{passes} passes in a row, not before."""
    tracker = HealthTracker(passes=3, fails=1, state=DOWN)
    assert observeAll(tracker, "++") == [None, None]
    assert tracker.state == DOWN
    assert tracker.observe(True) == UP


def test_oppositeResultResetsTheRun() -> None:
    """A pass breaks a run of failures (and back): only runs in a row count."""
    tracker = HealthTracker(passes=2, fails=2)
    assert observeAll(tracker, "-+-+-+") == [None] * 6
    assert tracker.state == UNKNOWN
    assert (tracker.consecutivePasses, tracker.consecutiveFails) == (1, 0)
    assert tracker.observe(False) is None
    assert (tracker.consecutivePasses, tracker.consecutiveFails) == (0, 1)
    assert tracker.observe(False) == DOWN


def test_unknownSurvivesFewerFailsThanTheFall() -> None:
    """Unknown with failures short of C{fails}, then passes: up, never down."""
    tracker = HealthTracker(passes=2, fails=3)
    assert observeAll(tracker, "--++") == [None, None, None, UP]


def test_flapping() -> None:
    """Down, up, down again: each transition is reported exactly when reached."""
    tracker = HealthTracker(passes=1, fails=1)
    assert observeAll(tracker, "-+-+") == [DOWN, UP, DOWN, UP]


def test_staysWhereItIs() -> None:
    """More passes while up, more failures while down: no transition."""
    up = HealthTracker(passes=1, fails=1, state=UP)
    down = HealthTracker(passes=1, fails=1, state=DOWN)
    assert observeAll(up, "+++") == [None] * 3
    assert observeAll(down, "---") == [None] * 3


@pytest.mark.parametrize(
    ("passes", "fails", "state"), [(0, 1, UNKNOWN), (1, 0, UNKNOWN), (1, 1, "sick")]
)
def test_trackerRefusesNonsense(passes: int, fails: int, state: str) -> None:
    """Rise and fall below one, or an unknown state, are refused."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies
        HealthTracker(passes, fails, state)


def settledAfter(tracker: HealthTracker, results: str) -> list[bool]:
    """Feed C{results}; return whether the tracker was settled after each."""
    settled = []
    for r in results:
        tracker.observe(r == "+")
        settled.append(tracker.settled)
    return settled


def test_firstFailedCheckNeverTakesItDown() -> None:
    """Counting starts at the first check: fewer than C{fails} leave it unknown."""
    tracker = HealthTracker(passes=2, fails=3)
    assert tracker.observe(False) is None
    assert (tracker.state, tracker.consecutiveFails) == (UNKNOWN, 1)
    assert observeAll(tracker, "-") == [None]
    assert tracker.state == UNKNOWN


def test_unknownIsNotSettled() -> None:
    """Unknown is unconfirmed: not settled until C{passes} pass or C{fails} fail."""
    tracker = HealthTracker(passes=2, fails=3)
    assert not tracker.settled
    assert settledAfter(tracker, "+-++") == [False, False, False, True]
    assert tracker.state == UP


def test_failureOfAnUpMemberUnsettlesUntilARunConfirms() -> None:
    """Up, a failure: unsettled until C{passes} pass (back) or C{fails} fail (down)."""
    back = HealthTracker(passes=2, fails=3, state=UP)
    assert back.settled
    assert settledAfter(back, "-+-++") == [False] * 4 + [True]
    assert back.state == UP
    down = HealthTracker(passes=2, fails=3, state=UP)
    assert settledAfter(down, "---") == [False, False, True]
    assert down.state == DOWN


def test_passOfADownMemberUnsettlesUntilARunConfirms() -> None:
    """Down (having been up), a pass: unsettled until a full run either way."""
    tracker = HealthTracker(passes=2, fails=2, state=UP)
    observeAll(tracker, "--")
    assert (tracker.state, tracker.settled) == (DOWN, True)
    assert settledAfter(tracker, "+--") == [False, False, True]
    assert settledAfter(tracker, "++") == [False, True]
    assert tracker.state == UP


def test_downWithoutEverBeingUpIsNotSettled() -> None:
    """A member never up (started after the proxy) stays watched closely while down."""
    tracker = HealthTracker(passes=2, fails=2)
    assert settledAfter(tracker, "----") == [False] * 4
    assert (tracker.state, tracker.everUp) == (DOWN, False)
    assert settledAfter(tracker, "++") == [False, True]
    assert tracker.everUp


def test_requestFailedNeedsPassesSince() -> None:
    """A failed request restarts the passes; C{passes} more report UP again."""
    tracker = HealthTracker(passes=2, fails=3, state=UP)
    observeAll(tracker, "+++")
    tracker.requestFailed()
    assert (tracker.suspect, tracker.consecutivePasses, tracker.settled) == (
        True,
        0,
        False,
    )
    assert observeAll(tracker, "+-+") == [None, None, None]
    assert tracker.observe(True) == UP
    assert (tracker.state, tracker.suspect, tracker.settled) == (UP, False, True)


def test_requestFailedThenChecksFailGoesDown() -> None:
    """A suspect member whose checks fail goes down after C{fails}, suspicion over."""
    tracker = HealthTracker(passes=2, fails=2, state=UP)
    tracker.requestFailed()
    assert observeAll(tracker, "--") == [None, DOWN]
    assert (tracker.suspect, tracker.settled) == (False, True)


def test_requestFailedIgnoredWhenDown() -> None:
    """A request that failed on a member already down changes nothing."""
    tracker = HealthTracker(passes=1, fails=1, state=UP)
    tracker.observe(False)
    tracker.requestFailed()
    assert (tracker.state, tracker.suspect, tracker.settled) == (DOWN, False, True)


@pytest.mark.parametrize(
    ("settings", "fast"),
    [
        ({}, 2.0),
        ({"interval": 1.5}, 1.5),
        ({"fast_interval": 0.25}, 0.25),
        ({"fast_interval": 50.0}, 30.0),
    ],
)
def test_fastInterval(settings: dict[str, float], fast: float) -> None:
    """fast_interval, by default the smaller of 2 s and interval, never above it."""
    assert fastInterval(HealthCheck(**settings)) == fast  # type: ignore[arg-type]


def test_nextCheckDelay() -> None:
    """Settled members wait the interval, the others the fast interval."""
    check = HealthCheck(interval=30.0, fast_interval=0.5)
    up = HealthTracker(passes=1, fails=1, state=UP)
    assert nextCheckDelay(up, check) == 30.0
    up.observe(False)
    assert nextCheckDelay(up, check) == 30.0
    assert nextCheckDelay(HealthTracker(passes=1, fails=1), check) == 0.5


# Judging answers.


@pytest.mark.parametrize(
    ("status", "expect", "matches"),
    [
        (200, ("2xx",), True),
        (299, ("2xx",), True),
        (302, ("2xx", "3xx"), True),
        (500, ("2xx", "3xx"), False),
        (404, ("2xx",), False),
        (204, ("204",), True),
        (200, ("204",), False),
        (503, ("2xx", "503"), True),
        (200, ("2XX",), True),
        (200, (), False),
        (200, ("xx", "2", "abc"), False),
    ],
)
def test_statusMatches(status: int, expect: Sequence[str], matches: bool) -> None:
    """Status classes ("2xx") and exact codes ("204") match as HAProxy's expect."""
    assert statusMatches(status, expect) is matches


def test_expectationStatus() -> None:
    """An answer outside expect_status fails, and says what it was."""
    expectation = Expectation(HealthCheck(method="HEAD", uri="/ping"))
    assert expectation.judge(204) == (True, "HEAD /ping answered 204")
    assert expectation.judge(500) == (False, "HEAD /ping answered 500")
    assert not expectation.readsBody


def test_expectationBody() -> None:
    """expect_body is searched in the body; a mismatch says which pattern."""
    expectation = Expectation(HealthCheck(uri="/health", expect_body=r"^ok\b"))
    assert expectation.readsBody
    assert expectation.judge(200, b"ok then") == (True, "GET /health answered 200")
    assert expectation.judge(200, b"not ok") == (
        False,
        r"GET /health answered 200, body did not match '^ok\\b'",
    )
    assert expectation.judge(500, b"ok") == (False, "GET /health answered 500")


def test_expectationBodyBoundedAndLenient() -> None:
    """Only the first 64 KiB count; bytes that are not UTF-8 do not break it."""
    expectation = Expectation(HealthCheck(expect_body="found"))
    assert not expectation.judge(200, b"x" * MAX_BODY + b"found")[0]
    assert expectation.judge(200, b"\xff\xfe found")[0]


def test_expectationBadPattern() -> None:
    """An invalid expect_body regular expression is refused up front."""
    with pytest.raises(Exception, match="unterminated"):
        Expectation(HealthCheck(expect_body="(oops"))


@pytest.mark.parametrize(
    ("exception", "words"),
    [
        (error.ConnectionRefusedError(), "connect refused"),
        (error.DNSLookupError("nope"), "name lookup failed"),
        (error.TimeoutError(), "connect timed out"),
        (ResponseNeverReceived([]), "connection closed without an answer"),
        (RuntimeError("boom"), "check failed: RuntimeError: boom"),
    ],
)
def test_describeFailure(exception: Exception, words: str) -> None:
    """A failed check's reason reads as a few plain words."""
    assert describeFailure(Failure(exception)) == words


def test_describeTLSFailure() -> None:
    """A member's refused certificate is named as the proxy's requests name it."""
    untrusted = ResponseNeverReceived([Failure(CertificateChainError(20, 0))])
    assert describeFailure(Failure(untrusted), "localhost") == (
        "TLS failed: certificate not trusted (unable to get local issuer certificate)"
    )
    wrongName = ResponseNeverReceived([Failure(VerificationError([]))])
    assert describeFailure(Failure(wrongName), "backend.test") == (
        "TLS failed: certificate does not match host name backend.test"
    )


# The loops, on a Clock, with a scripted check.


class ScriptedCheck:
    """
    A fake check: each member answers from its script (a result, "hang",
    "deaf" or "raise"), then the default; every call is recorded with the time.
    """

    def __init__(self, clock: Clock, default: object = OK) -> None:
        self.clock = clock
        self.default = default
        self.scripts: dict[str, list[object]] = {}
        self.calls: list[tuple[float, str]] = []
        self.hanging: list[Deferred[tuple[bool, str]]] = []
        self.cancelled = 0

    def script(self, member: MemberState, *results: object) -> None:
        """Make C{member}'s next checks answer C{results}, in order."""
        self.scripts.setdefault(member.name, []).extend(results)

    def __call__(self, member: MemberState) -> Deferred[tuple[bool, str]]:
        """Check C{member}: record the call and answer from its script."""
        self.calls.append((self.clock.seconds(), member.name))
        script = self.scripts.get(member.name)
        result = script.pop(0) if script else self.default
        if result == "raise":
            raise RuntimeError("boom")
        if result in ("hang", "deaf"):
            # A "deaf" check does not even hear that it was cancelled.
            d: Deferred[tuple[bool, str]] = Deferred(
                self._cancelled if result == "hang" else None
            )
            self.hanging.append(d)
            return d
        assert isinstance(result, tuple)
        return defer.succeed(result)

    def _cancelled(self, d: Deferred[tuple[bool, str]]) -> None:
        """Count a hanging check that was cancelled."""
        self.cancelled += 1

    def times(self, member: MemberState) -> list[float]:
        """When C{member} was checked."""
        return [t for t, name in self.calls if name == member.name]


class Transitions:
    """Records C{onTransition} calls."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    def __call__(
        self, balancer: str, member: MemberState, state: str, reason: str
    ) -> None:
        """Record one transition."""
        self.seen.append((balancer, member.name, state, reason))


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """The health monitor's log messages, formatted, while the test runs."""
    messages: list[str] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        """Keep the health module's events, formatted."""
        if event.get("log_namespace", "").startswith("twisted_proxy.balancer.health"):
            messages.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield messages
    globalLogPublisher.removeObserver(observe)


def monitor(
    *members: MemberState, **health: Any
) -> tuple[HealthMonitor, Clock, ScriptedCheck, Transitions]:
    """A monitor (not started) of balancer "web" of C{members}, on a fresh Clock."""
    clock = Clock()
    check = ScriptedCheck(clock)
    transitions = Transitions()
    health.setdefault("uri", "/health")
    monitor = HealthMonitor(
        clock,
        [("web", HealthCheck(**health), members)],
        transitions,
        check=check,
    )
    return monitor, clock, check, transitions


def stop(monitor: HealthMonitor, clock: Clock) -> None:
    """Stop C{monitor}; it must be done at once and leave nothing on C{clock}."""
    stopped = monitor.stopService()
    assert stopped.called
    assert clock.getDelayedCalls() == []


def advanceTo(clock: Clock, when: float) -> None:
    """Advance C{clock} to C{when}, running each call at the time it is due."""
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls()]
        if not due or min(due) > when:
            break
        clock.advance(max(0.0, min(due) - clock.seconds()))
    clock.advance(when - clock.seconds())


def test_firstCheckAtOnceThenEveryInterval() -> None:
    """Checked at start, fast until confirmed up, then every interval (no waiting)."""
    member = memberState()
    svc, clock, check, _ = monitor(member, interval=30.0)
    svc.startService()
    assert check.times(member) == [0.0]
    advanceTo(clock, 1.9)
    assert check.times(member) == [0.0]
    advanceTo(clock, 2.0)
    assert member.health == UP
    advanceTo(clock, 31.9)
    assert check.times(member) == [0.0, 2.0]
    advanceTo(clock, 92)
    assert check.times(member) == [0.0, 2.0, 32.0, 62.0, 92.0]
    stop(svc, clock)


def upMember(port: int = 9002, index: int = 0) -> MemberState:
    """A member its checks already found up."""
    member = memberState(port, index)
    member.health = UP
    return member


def test_failedCheckRecheckedFastUntilDownThenInterval() -> None:
    """After a failure: fast_interval until down; down: interval; a pass: fast."""
    member = upMember()
    svc, clock, check, transitions = monitor(
        member, interval=30.0, fast_interval=0.5, fails=3, passes=2
    )
    check.script(member, OK, BAD, BAD, BAD, BAD, OK, OK)
    svc.startService()
    advanceTo(clock, 31.0)
    assert check.times(member) == [0.0, 30.0, 30.5, 31.0]
    assert member.health == DOWN
    advanceTo(clock, 91.5)
    assert check.times(member)[4:] == [61.0, 91.0, 91.5]
    assert member.health == UP
    advanceTo(clock, 150)
    assert check.times(member)[7:] == [121.5]
    assert [(state, when) for _, _, state, when in transitions.seen] == [
        (DOWN, BAD[1]),
        (UP, OK[1]),
    ]
    stop(svc, clock)


def test_failedCheckRecheckedFastUntilBack() -> None:
    """One failure, then passes: fast until C{passes} in a row, still up throughout."""
    member = upMember()
    svc, clock, check, transitions = monitor(
        member, interval=30.0, fast_interval=0.5, fails=3, passes=2
    )
    check.script(member, OK, BAD, OK, OK)
    svc.startService()
    advanceTo(clock, 100)
    assert check.times(member) == [0.0, 30.0, 30.5, 31.0, 61.0, 91.0]
    assert member.health == UP
    assert transitions.seen == []
    stop(svc, clock)


def test_flappingMemberSpeedsUpNoOther() -> None:
    """Each member has its own timer: one flapping leaves the others at interval."""
    steady, flapping = upMember(9001), upMember(9002, 1)
    svc, clock, check, _ = monitor(
        steady, flapping, interval=10.0, fast_interval=1.0, fails=3, passes=2
    )
    check.script(flapping, OK, *[BAD, OK] * 10)
    svc.startService()
    advanceTo(clock, 30)
    assert check.times(steady) == [0.0, 10.0, 20.0, 30.0]
    assert check.times(flapping) == [0.0] + [float(t) for t in range(10, 31)]
    assert flapping.health == UP
    stop(svc, clock)


def test_neverUpMemberDownIsCheckedFast() -> None:
    """Started before its backend: down after C{fails}, up soon after it answers."""
    member = memberState()
    svc, clock, check, transitions = monitor(
        member, interval=30.0, fast_interval=0.5, fails=3, passes=2
    )
    check.script(member, BAD, BAD, BAD, BAD, BAD)
    svc.startService()
    advanceTo(clock, 0.5)
    assert member.health == UNKNOWN
    advanceTo(clock, 1.0)
    assert member.health == DOWN
    advanceTo(clock, 3.0)
    assert check.times(member) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert member.health == UP
    advanceTo(clock, 40)
    assert check.times(member)[7:] == [33.0]
    assert [state for _, _, state, _ in transitions.seen] == [DOWN, UP]
    stop(svc, clock)


def test_requestFailedChecksAtOnceAndBackAfterPasses(logged: list[str]) -> None:
    """A failed request: checked at once, then fast; C{passes} passes report it fit."""
    member = upMember()
    svc, clock, check, transitions = monitor(
        member, interval=30.0, fast_interval=0.5, passes=2
    )
    svc.startService()
    advanceTo(clock, 10)
    svc.requestFailed(member)
    assert svc.nextCheck(member) == 10.0
    advanceTo(clock, 10)
    assert svc.tracker(member).suspect
    advanceTo(clock, 10.5)
    assert transitions.seen == [("web", member.name, UP, OK[1])]
    assert logged == [
        "member http://127.0.0.1:9002 of balancer://web back from error: "
        "GET /health answered 200 (2 of 2 passed)"
    ]
    advanceTo(clock, 45)
    assert check.times(member) == [0.0, 10.0, 10.5, 40.5]
    stop(svc, clock)


def test_requestFailedChecksAtMostEveryFastInterval() -> None:
    """Failed requests in a burst bring the next check in, no more often than fast."""
    member = upMember()
    svc, clock, check, _ = monitor(member, interval=30.0, fast_interval=0.5, passes=3)
    svc.startService()
    advanceTo(clock, 0.2)
    for _ in range(5):
        svc.requestFailed(member)
    assert svc.nextCheck(member) == 0.5
    advanceTo(clock, 0.5)
    svc.requestFailed(member)
    advanceTo(clock, 0.9)
    assert check.times(member) == [0.0, 0.5]
    advanceTo(clock, 1.5)
    assert check.times(member) == [0.0, 0.5, 1.0, 1.5]
    stop(svc, clock)


def test_passSentBeforeTheFailedRequestDoesNotCount() -> None:
    """A check under way when a request fails may pass: that pass is not counted."""
    member = upMember()
    svc, clock, check, transitions = monitor(
        member, interval=30.0, fast_interval=0.5, timeout=0.4, passes=1
    )
    check.script(member, "deaf")
    svc.startService()
    svc.requestFailed(member)
    check.hanging[0].callback(OK)
    assert member.lastCheckResult == OK[1]
    assert svc.tracker(member).suspect
    assert transitions.seen == []
    advanceTo(clock, 0.5)
    assert transitions.seen == [("web", member.name, UP, OK[1])]
    stop(svc, clock)


def test_requestFailedOnUnwatchedMemberIgnored() -> None:
    """A member whose balancer has no health checks is not watched: nothing happens."""
    svc, clock, check, _ = monitor(memberState(9001), interval=30.0)
    svc.startService()
    svc.requestFailed(memberState(9002))
    assert len(check.calls) == 1
    stop(svc, clock)


def test_resultsRecordedAndMemberComesUp(logged: list[str]) -> None:
    """Each result sets lastCheck and lastCheckResult; C{passes} of them: up."""
    member = memberState()
    svc, clock, check, transitions = monitor(member, interval=30.0, passes=2)
    svc.startService()
    assert member.health == UNKNOWN
    assert (member.lastCheck, member.lastCheckResult) == (0.0, OK[1])
    clock.advance(30)
    assert member.lastCheck == 30.0
    assert member.health == UP
    assert transitions.seen == [("web", member.name, UP, OK[1])]
    assert logged == [
        "member http://127.0.0.1:9002 up: GET /health answered 200 (2 of 2 passed)"
    ]
    stop(svc, clock)


def test_transitionsLoggedOnce(logged: list[str]) -> None:
    """Down and back up: each transition is logged and reported exactly once."""
    member = memberState()
    svc, clock, check, transitions = monitor(member, interval=5.0, passes=2, fails=3)
    check.script(member, BAD, BAD, BAD, BAD, BAD, OK, OK, OK)
    svc.startService()
    clock.pump([5] * 7)
    assert member.health == UP
    assert logged == [
        "member http://127.0.0.1:9002 down: GET /health answered 500 (3 of 3 failed)",
        "member http://127.0.0.1:9002 up: GET /health answered 200 (2 of 2 passed)",
    ]
    assert [(state, reason) for _, _, state, reason in transitions.seen] == [
        (DOWN, BAD[1]),
        (UP, OK[1]),
    ]
    assert transitions.seen[0][:2] == ("web", "http://127.0.0.1:9002")
    stop(svc, clock)


def test_hangingCheckTimesOutAsFailure() -> None:
    """A check that never answers is cut off after C{timeout}: a failure."""
    member = memberState()
    svc, clock, check, transitions = monitor(
        member, interval=10.0, timeout=2.5, fails=2
    )
    check.script(member, "hang", "hang")
    svc.startService()
    advanceTo(clock, 2.4)
    assert (member.lastCheck, member.lastCheckResult) == (0.0, None)
    advanceTo(clock, 2.5)
    assert (member.lastCheck, member.lastCheckResult) == (2.5, "timed out after 2.5s")
    assert check.cancelled == 1
    # The next check was due at 2 s (fast: not settled): it starts once this ends.
    assert check.times(member) == [0.0, 2.5]
    advanceTo(clock, 5.0)
    assert member.health == DOWN
    assert transitions.seen == [("web", member.name, DOWN, "timed out after 2.5s")]
    assert check.times(member) == [0.0, 2.5, 5.0]
    stop(svc, clock)


def test_raisingCheckKeepsTheLoopGoing() -> None:
    """A check that raises counts as a failure with its reason; rounds go on."""
    member = memberState()
    svc, clock, check, _ = monitor(member, interval=1.0, fails=2)
    check.script(member, "raise", "raise")
    svc.startService()
    assert member.lastCheckResult == "check failed: RuntimeError: boom"
    clock.advance(1)
    assert member.health == DOWN
    clock.pump([1, 1])
    assert check.times(member) == [0.0, 1.0, 2.0, 3.0]
    assert member.lastCheckResult == OK[1]
    assert member.health == UP
    stop(svc, clock)


def test_failingDeferredIsDescribed() -> None:
    """A check whose Deferred fails counts as a failure, described in words."""
    member = memberState()
    clock = Clock()
    svc = HealthMonitor(
        clock,
        [("web", HealthCheck(), [member])],
        check=lambda m: defer.fail(error.ConnectionRefusedError()),
    )
    svc.startService()
    assert member.lastCheckResult == "connect refused"
    stop(svc, clock)


def test_slowMemberDoesNotHoldOthersUp() -> None:
    """Members are checked side by side: one that hangs delays no other."""
    slow, fast = memberState(9001), memberState(9002, 1)
    svc, clock, check, _ = monitor(slow, fast, interval=10.0, timeout=25.0)
    check.script(slow, "hang", "hang")
    svc.startService()
    advanceTo(clock, 40)
    assert check.times(fast) == [0.0, 2.0, 12.0, 22.0, 32.0]
    # The slow one is never checked twice at once: the next waits for the last.
    assert check.times(slow) == [0.0, 25.0]
    assert slow.lastCheckResult == "timed out after 25s"
    assert fast.health == UP
    stop(svc, clock)


def test_lateAnswerAfterTimeoutIgnored() -> None:
    """An answer that comes after its timeout does not count a second time."""
    member = memberState()
    svc, clock, check, _ = monitor(member, interval=10.0, timeout=1.0)
    check.script(member, "deaf")
    svc.startService()
    clock.advance(1)
    check.hanging[0].callback(OK)
    assert member.lastCheckResult == "timed out after 1s"
    assert svc.tracker(member).consecutiveFails == 1
    stop(svc, clock)


def test_eachBalancerHasItsOwnInterval() -> None:
    """Two balancers are checked each at its own interval."""
    a, b = memberState(9001), memberState(9002)
    clock = Clock()
    check = ScriptedCheck(clock)
    svc = HealthMonitor(
        clock,
        [
            ("a", HealthCheck(interval=2.0, passes=1), [a]),
            ("b", HealthCheck(interval=3.0, passes=1), [b]),
        ],
        check=check,
    )
    svc.startService()
    advanceTo(clock, 6)
    assert check.times(a) == [0, 2, 4, 6]
    assert check.times(b) == [0, 3, 6]
    stop(svc, clock)


def test_stopLeavesNothingBehind() -> None:
    """stopService cancels checks in flight and their timeouts; late results drop."""
    member = memberState()
    svc, clock, check, transitions = monitor(member, interval=30.0, timeout=5.0)
    check.script(member, "hang")
    svc.startService()
    assert clock.getDelayedCalls() != []
    stop(svc, clock)
    assert check.cancelled == 1
    assert (member.lastCheck, member.lastCheckResult, member.health) == (
        0.0,
        None,
        UNKNOWN,
    )
    clock.advance(60)
    assert len(check.calls) == 1


def test_restartAfterStop() -> None:
    """A stopped monitor starts again, keeping each member's counts."""
    member = memberState()
    svc, clock, check, _ = monitor(member, interval=30.0, passes=2)
    svc.startService()
    stop(svc, clock)
    clock.advance(100)
    svc.startService()
    assert member.health == UP
    assert check.times(member) == [0.0, 100.0]
    stop(svc, clock)


def test_transitionCallbackErrorsAreContained(logged: list[str]) -> None:
    """An onTransition that raises is logged; the loop and state carry on."""
    member = memberState()
    clock = Clock()

    def onTransition(*args: object) -> None:
        """A transition observer with a bug."""
        raise RuntimeError("observer broke")

    svc = HealthMonitor(
        clock,
        [("web", HealthCheck(passes=1), [member])],
        onTransition,
        check=ScriptedCheck(clock),
    )
    svc.startService()
    assert member.health == UP
    assert any("health transition of" in m for m in logged)
    clock.advance(30)
    assert member.lastCheck == 30.0
    stop(svc, clock)


def test_trackerStartsFromMemberHealth() -> None:
    """A member already down stays down until C{passes} checks pass."""
    member = memberState()
    member.health = DOWN
    svc, clock, check, transitions = monitor(member, interval=1.0, passes=3)
    svc.startService()
    clock.pump([1, 1])
    assert transitions.seen == [("web", member.name, UP, OK[1])]
    assert check.times(member) == [0, 1, 2]
    stop(svc, clock)


def test_setMembersKeepsCountsAndDropsRemoved() -> None:
    """Members added at run time are checked at once; removed ones no longer."""
    kept, removed, added = memberState(9001), memberState(9002), memberState(9003)
    svc, clock, check, _ = monitor(kept, removed, interval=10.0, passes=2)
    check.script(removed, "hang")
    svc.startService()
    advanceTo(clock, 1)
    svc.setMembers("web", [kept, added])
    assert check.cancelled == 1
    assert removed.lastCheckResult is None
    advanceTo(clock, 10)
    assert (kept.health, added.health) == (UP, UP)
    assert check.times(removed) == [0.0]
    assert check.times(kept) == [0.0, 2.0]
    assert check.times(added) == [1.0, 3.0]
    with pytest.raises(KeyError):
        svc.nextCheck(removed)
    stop(svc, clock)


# The real checks, over in-memory connections.


class Health(Resource):
    """A /health page: records the request, answers a set status and body."""

    isLeaf = True

    def __init__(
        self, status: int = 200, body: bytes = b"ok", location: bytes | None = None
    ) -> None:
        super().__init__()
        self.status = status
        self.body = body
        self.location = location
        self.seen: list[Any] = []

    def render(self, request: Any) -> bytes:
        """Record what the check sent; answer as set."""
        self.seen.append(
            (
                request.method,
                request.uri,
                request.getHeader(b"host"),
                request.getHeader(b"user-agent"),
            )
        )
        request.setResponseCode(self.status)
        if self.location is not None:
            request.setHeader(b"location", self.location)
        return self.body


def realMonitor(
    reactor: MemoryReactorClock, method: HealthMethod = "GET", **health: Any
) -> tuple[HealthMonitor, MemberState]:
    """A monitor with the real checks of member 127.0.0.1:9002, on C{reactor}."""
    member = memberState()
    svc = HealthMonitor(
        reactor,
        [("web", HealthCheck(method=method, uri="/health", **health), [member])],
    )
    svc.startService()
    return svc, member


def serve(reactor: MemoryReactorClock, resource: Resource) -> iosim.IOPump:
    """Connect the pending client connection to C{resource}'s Site, in memory."""
    host, port, factory, _, _ = reactor.tcpClients.pop(0)
    assert (host, port) == ("127.0.0.1", 9002)
    client = factory.buildProtocol(IPv4Address("TCP", host, port))
    server = Site(resource, reactor=reactor).buildProtocol(
        IPv4Address("TCP", "127.0.0.1", 40000)
    )
    pump: iosim.IOPump = iosim.connect(
        server,
        iosim.makeFakeServer(server),
        client,
        iosim.makeFakeClient(client),
        clock=reactor,
    )
    return pump


def test_httpCheckSendsHostAndJudgesTheAnswer() -> None:
    """GET of the URI with the member's Host; the status decides; closed after."""
    reactor = MemoryReactorClock()
    svc, member = realMonitor(reactor, expect_status=("2xx",))
    page = Health(status=503)
    pump = serve(reactor, page)
    pump.flush()
    assert page.seen == [
        (b"GET", b"/health", b"127.0.0.1:9002", b"twisted-proxy health check")
    ]
    assert member.lastCheckResult == "GET /health answered 503"
    assert pump.clientIO.disconnected
    assert svc.stopService().called


def test_httpCheckDoesNotFollowRedirects() -> None:
    """A redirect is the answer judged (here: not expected), never followed."""
    reactor = MemoryReactorClock()
    svc, member = realMonitor(reactor, method="OPTIONS", expect_status=("2xx",))
    page = Health(status=302, location=b"http://127.0.0.1:9002/elsewhere")
    serve(reactor, page).flush()
    assert [seen[:2] for seen in page.seen] == [(b"OPTIONS", b"/health")]
    assert member.lastCheckResult == "OPTIONS /health answered 302"
    assert reactor.tcpClients == []
    assert svc.stopService().called


def test_httpCheckBodyBounded() -> None:
    """expect_body reads at most 64 KiB, then drops the connection."""
    reactor = MemoryReactorClock()
    svc, member = realMonitor(reactor, expect_body="ok$")
    pump = serve(reactor, Health(body=b"x" * (3 * MAX_BODY) + b"ok"))
    pump.flush()
    assert member.lastCheckResult == (
        "GET /health answered 200, body did not match 'ok$'"
    )
    assert pump.clientIO.disconnecting
    assert svc.stopService().called


def test_headCheckPasses() -> None:
    """A HEAD check with the status expected passes without reading a body."""
    reactor = MemoryReactorClock()
    svc, member = realMonitor(reactor, method="HEAD", passes=1)
    page = Health()
    serve(reactor, page).flush()
    assert page.seen[0][0] == b"HEAD"
    assert (member.health, member.lastCheckResult) == (UP, "HEAD /health answered 200")
    assert svc.stopService().called


def test_httpCheckStoppedMidway() -> None:
    """stopService cuts a check waiting for its answer and waits for the close."""
    reactor = MemoryReactorClock()
    svc, member = realMonitor(reactor)
    host, port, factory, _, _ = reactor.tcpClients[0]
    client = factory.buildProtocol(IPv4Address("TCP", host, port))
    assert client is not None
    transport = StringTransport()
    client.makeConnection(transport)
    assert b"GET /health HTTP/1.1" in transport.value()
    stopped = svc.stopService()
    assert transport.disconnecting
    assert not stopped.called
    client.connectionLost(Failure(error.ConnectionAborted()))
    assert stopped.called
    assert member.lastCheckResult is None


def test_tcpCheckConnectsAndCloses() -> None:
    """A TCP check passes once connected, and closes the connection itself."""
    reactor = MemoryReactorClock()
    svc, member = realMonitor(reactor, method="TCP")
    host, port, factory, _, _ = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 9002)
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.disconnecting
    assert member.lastCheckResult is None
    protocol.connectionLost(Failure(error.ConnectionDone()))
    assert member.lastCheckResult == "connected"
    assert svc.stopService().called


def test_tcpCheckRefused() -> None:
    """A TCP check whose connection is refused fails with that reason."""
    reactor = MemoryReactorClock()
    svc, member = realMonitor(reactor, method="TCP")
    _, _, factory, _, _ = reactor.tcpClients[0]
    factory.clientConnectionFailed(
        reactor.connectors[0], Failure(error.ConnectionRefusedError())
    )
    assert member.lastCheckResult == "connect refused"
    assert svc.stopService().called


def test_tcpCheckTimesOutConnecting() -> None:
    """A connect that never completes is cut off after C{timeout}."""
    reactor = MemoryReactorClock()
    svc, member = realMonitor(reactor, method="TCP", timeout=3.0)
    reactor.advance(3)
    assert member.lastCheckResult == "timed out after 3s"
    assert reactor.connectors[0].stoppedConnecting
    assert svc.stopService().called
