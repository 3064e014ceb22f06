"""Tests for L{twisted_proxy.balancer}: policies, member state and the service."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import pairwise
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from twisted_proxy.balancer import BalancerService, IBalancer, MemberState
from twisted_proxy.balancer.policy import (
    POLICIES,
    ByRequests,
    ILoadBalancingPolicy,
    RoundRobin,
)
from twisted_proxy.balancer.service import DEFAULT_RETRY
from twisted_proxy.balancer.state import DOWN, UNKNOWN, UP
from twisted_proxy.config.model import (
    Balancer,
    BalancerMethod,
    HealthCheck,
    Member,
    Sticky,
)


def member(port: int, weight: int = 1, **flags: Any) -> Member:
    """Return a member on 127.0.0.1:C{port}, with route C{str(port)}."""
    return Member(
        url=f"http://127.0.0.1:{port}",
        scheme="http",
        host="127.0.0.1",
        port=port,
        route=str(port),
        weight=weight,
        **flags,
    )


def service(
    *members: Member, method: BalancerMethod = "byrequests"
) -> tuple[BalancerService, Clock]:
    """Return a service with one balancer "web" of C{members}, on a fresh Clock."""
    clock = Clock()
    return BalancerService([Balancer("web", method, members)], clock), clock


def picks(svc: BalancerService, count: int, balancer: str = "web") -> list[int]:
    """Pick C{count} times, releasing each at once; return the members' ports."""
    ports = []
    for _ in range(count):
        chosen = svc.pick(balancer)
        assert chosen is not None
        svc.release(chosen, ok=True)
        ports.append(chosen.member.port)
    return ports


def longestRun(sequence: Sequence[int]) -> int:
    """Return the length of the longest run of one value."""
    best = run = 0
    previous = None
    for value in sequence:
        run = run + 1 if value == previous else 1
        previous = value
        best = max(best, run)
    return best


def test_interfaces() -> None:
    """The service provides IBalancer and every policy ILoadBalancingPolicy."""
    svc, _ = service(member(1))
    assert verifyObject(IBalancer, svc)
    for name, policy in POLICIES.items():
        assert verifyClass(ILoadBalancingPolicy, policy), name  # type: ignore[arg-type]
        assert verifyObject(ILoadBalancingPolicy, policy()), name


def test_onlyStickyAndHashBalancersReadTheRequest() -> None:
    """
    A pick reads the request only for sticky sessions or the hash method;
    for the others the relay gathers nothing of the request for it.
    """
    clock = Clock()
    svc = BalancerService(
        [
            Balancer("plain", "byrequests", (member(1),)),
            Balancer("sticky", "byrequests", (member(2),), sticky=Sticky()),
            Balancer("hashed", "hash", (member(3),), hash_key="ip"),
        ],
        clock,
    )
    assert [svc.readsRequests(n) for n in ("plain", "sticky", "hashed")] == [
        False,
        True,
        True,
    ]


def test_policiesByName() -> None:
    """Every method the config model allows has a policy registered."""
    assert set(POLICIES) >= {"byrequests", "roundrobin"}
    assert POLICIES["byrequests"] is ByRequests
    assert POLICIES["roundrobin"] is RoundRobin


@pytest.mark.parametrize("policy", [ByRequests, RoundRobin])
def test_policyWithoutCandidates(policy: type[ByRequests | RoundRobin]) -> None:
    """A policy given no candidates picks nothing."""
    assert policy().pick([]) is None


def test_byRequestsExactDistribution() -> None:
    """With weights 1:2:3, 600 picks split exactly 100/200/300."""
    svc, _ = service(member(1, 1), member(2, 2), member(3, 3))
    assert Counter(picks(svc, 600)) == {1: 100, 2: 200, 3: 300}
    assert [m.requests for m in svc.members("web")] == [100, 200, 300]


def test_byRequestsApacheSequence() -> None:
    """Weights 1:2:3 give Apache's sequence 3,2,1,3,2,3, over and over."""
    svc, _ = service(member(1, 1), member(2, 2), member(3, 3))
    assert picks(svc, 18) == [3, 2, 1, 3, 2, 3] * 3
    assert [m.lbStatus for m in svc.members("web")] == [0, 0, 0]


def test_byRequestsSmooth() -> None:
    """No member is picked more than twice in a row for weights 1:2:3."""
    svc, _ = service(member(1, 1), member(2, 2), member(3, 3))
    assert longestRun(picks(svc, 600)) <= 2


def test_byRequestsEqualWeightsCycle() -> None:
    """Equal weights take the members in configured order."""
    svc, _ = service(member(1), member(2), member(3))
    assert picks(svc, 6) == [1, 2, 3, 1, 2, 3]


def test_byRequestsTieGoesToFirst() -> None:
    """On equal scores the first member in configured order wins, as in Apache."""
    members = [MemberState(member(1)), MemberState(member(2))]
    assert ByRequests().pick(members) is members[0]


def test_byRequestsOnlyCandidatesScored() -> None:
    """Members left out of the candidates keep their score."""
    a, b, c = (MemberState(member(p)) for p in (1, 2, 3))
    policy = ByRequests()
    assert policy.pick([a, b]) is a
    assert (a.lbStatus, b.lbStatus, c.lbStatus) == (-1, 1, 0)


def test_roundRobinPlainCycle() -> None:
    """Equal weights cycle through the members in configured order."""
    svc, _ = service(member(1), member(2), member(3), method="roundrobin")
    assert picks(svc, 7) == [1, 2, 3, 1, 2, 3, 1]


def test_roundRobinWeightedInterleaved() -> None:
    """A member of weight 2 comes twice per cycle, not back to back in it."""
    svc, _ = service(member(1, 1), member(2, 2), member(3, 1), method="roundrobin")
    sequence = picks(svc, 400)
    for start in range(0, 400, 4):
        cycle = sequence[start : start + 4]
        assert Counter(cycle) == {1: 1, 2: 2, 3: 1}
        assert all(x != y for x, y in pairwise(cycle))
    assert longestRun(sequence) <= 2


def test_roundRobinWeightsReduced() -> None:
    """Weights 2:4 cycle like 1:2: short cycles."""
    svc, _ = service(member(1, 2), member(2, 4), method="roundrobin")
    assert Counter(picks(svc, 3)) == {1: 1, 2: 2}


def test_roundRobinResumesWhenMemberLeaves() -> None:
    """When a member becomes unusable, the turn passes to the next in order."""
    svc, _ = service(member(1), member(2), member(3), method="roundrobin")
    assert picks(svc, 1) == [1]
    svc.setFlags("web", "2", disabled=True)
    assert picks(svc, 3) == [3, 1, 3]
    svc.setFlags("web", "2", disabled=False)
    assert picks(svc, 4) == [1, 2, 3, 1]


def test_roundRobinResumesWhenLastPickedLeaves() -> None:
    """When the member just picked leaves, the one after it is next."""
    svc, _ = service(member(1), member(2), member(3), method="roundrobin")
    assert picks(svc, 2) == [1, 2]
    svc.setFlags("web", "2", disabled=True)
    assert picks(svc, 2) == [3, 1]


def test_namesAndMembers() -> None:
    """Balancers and their members are listed in configured order."""
    clock = Clock()
    svc = BalancerService(
        [Balancer("web", members=(member(1), member(2))), Balancer("db")], clock
    )
    assert list(svc.balancerNames()) == ["web", "db"]
    assert [m.name for m in svc.members("web")] == [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
    ]
    assert svc.members("db") == ()
    assert svc.pick("db") is None


def test_unknownBalancer() -> None:
    """Asking for a balancer that does not exist is a KeyError."""
    svc, _ = service(member(1))
    with pytest.raises(KeyError):
        svc.pick("nope")
    with pytest.raises(KeyError):
        svc.setFlags("web", "nope", disabled=True)


def test_memberByNameOrRoute() -> None:
    """A member is found by its worker name or by its route."""
    svc, _ = service(member(1), member(2))
    assert svc.member("web", "2") is svc.member("web", "http://127.0.0.1:2")


def test_countersAndRelease() -> None:
    """A pick counts a request in flight; release adds bytes and frees it."""
    svc, _ = service(member(1))
    chosen = svc.pick("web")
    assert chosen is not None
    assert (chosen.requests, chosen.inFlight) == (1, 1)
    svc.release(chosen, ok=True, bytesIn=100, bytesOut=20)
    assert (chosen.inFlight, chosen.bytesIn, chosen.bytesOut) == (0, 100, 20)
    assert chosen.failures == 0
    svc.release(chosen, ok=True)
    assert chosen.inFlight == 0


def test_disabledNeverPicked() -> None:
    """A disabled member is never picked, even when nothing else is usable."""
    svc, _ = service(member(1, disabled=True), member(2))
    assert set(picks(svc, 10)) == {2}
    other = svc.member("web", "2")
    svc.release(svc.pick("web") or other, ok=False, failure="refused")
    assert svc.pick("web") is other
    svc.setFlags("web", "2", disabled=True)
    assert svc.pick("web") is None


def test_errorForRetrySeconds() -> None:
    """A failed member sits out the retry time, then is picked again."""
    svc, clock = service(member(1), member(2))
    first = svc.pick("web")
    assert first is not None
    assert first.member.port == 1
    svc.release(first, ok=False, failure="refused")
    assert (first.failures, first.lastFailure, first.inFlight) == (1, "refused", 0)
    assert first.errorUntil == DEFAULT_RETRY
    assert set(picks(svc, 10)) == {2}
    clock.advance(DEFAULT_RETRY - 0.1)
    assert not first.usable(clock.seconds())
    assert set(picks(svc, 10)) == {2}
    clock.advance(0.1)
    assert first.usable(clock.seconds())
    assert set(picks(svc, 10)) == {1, 2}


def test_customRetry() -> None:
    """The retry time is the service's."""
    clock = Clock()
    svc = BalancerService([Balancer("web", members=(member(1),))], clock, retry=5)
    chosen = svc.pick("web")
    assert chosen is not None
    clock.advance(10)
    svc.release(chosen, ok=False)
    assert chosen.errorUntil == 15
    assert chosen.lastFailure == "error"


def test_standbyOnlyWhenPrimariesUnusable() -> None:
    """A standby member serves only while no primary is usable."""
    svc, clock = service(member(1), member(2), member(3, standby=True))
    assert set(picks(svc, 10)) == {1, 2}
    for port in ("1", "2"):
        svc.release(svc.member("web", port), ok=False, failure="timeout")
    assert set(picks(svc, 5)) == {3}
    clock.advance(DEFAULT_RETRY)
    assert set(picks(svc, 10)) == {1, 2}


def test_standbyReleasedWhenPrimaryReturns() -> None:
    """Re-enabling a primary takes the traffic back from the standby at once."""
    svc, _ = service(member(1, disabled=True), member(2, standby=True))
    assert set(picks(svc, 3)) == {2}
    svc.setFlags("web", "1", disabled=False)
    assert set(picks(svc, 3)) == {1}


def test_retryInErrorWhenNothingElse() -> None:
    """With every member in error, they are tried anyway; success restores one."""
    svc, _ = service(member(1), member(2))
    for port in ("1", "2"):
        svc.release(svc.member("web", port), ok=False, failure="refused")
    retried = svc.pick("web")
    assert retried is not None
    assert retried.member.port == 1
    assert retried.requests == 1
    svc.release(retried, ok=True)
    assert retried.errorUntil == 0
    assert set(picks(svc, 4)) == {1}


def test_failedRetryStaysInError() -> None:
    """A forced retry that fails again restarts the member's retry time."""
    svc, clock = service(member(1))
    only = svc.member("web", "1")
    svc.release(only, ok=False)
    clock.advance(30)
    assert svc.pick("web") is only
    svc.release(only, ok=False)
    assert only.errorUntil == 30 + DEFAULT_RETRY
    assert only.failures == 2


def test_standbyBeforeRetry() -> None:
    """A usable standby is preferred to retrying primaries in error."""
    svc, _ = service(member(1), member(2, standby=True))
    svc.release(svc.member("web", "1"), ok=False)
    assert set(picks(svc, 3)) == {2}


def test_setFlagsWeight() -> None:
    """A new weight changes the split from the next pick on."""
    svc, _ = service(member(1), member(2))
    assert Counter(picks(svc, 10)) == {1: 5, 2: 5}
    svc.setFlags("web", "2", weight=4)
    assert Counter(picks(svc, 50)) == {1: 10, 2: 40}
    with pytest.raises(ValueError, match="weight"):
        svc.setFlags("web", "2", weight=0)


def test_setFlagsStandby() -> None:
    """Making a member standby takes it out of rotation; clearing it returns it."""
    svc, _ = service(member(1), member(2))
    svc.setFlags("web", "http://127.0.0.1:2", standby=True)
    assert set(picks(svc, 4)) == {1}
    svc.setFlags("web", "2", standby=False)
    assert set(picks(svc, 4)) == {1, 2}


def test_setFlagsNoneKeeps() -> None:
    """Flags left as None are not changed."""
    svc, _ = service(member(1, 3, standby=True))
    svc.setFlags("web", "1")
    only = svc.member("web", "1")
    assert (only.weight, only.standby, only.disabled) == (3, True, False)


def test_startStop() -> None:
    """The service starts and stops with its parent, leaving nothing scheduled."""
    svc, clock = service(member(1))
    svc.startService()
    assert svc.running
    svc.stopService()
    assert not svc.running
    assert clock.getDelayedCalls() == []


class Checks:
    """Health checks on demand: every member passes unless told otherwise."""

    def __init__(self) -> None:
        self.failing: set[int] = set()
        self.count = 0

    def __call__(self, state: MemberState) -> Deferred[tuple[bool, str]]:
        """Check C{state}: fail if its port is in C{failing}."""
        self.count += 1
        if state.member.port in self.failing:
            return succeed((False, "GET /health answered 500"))
        return succeed((True, "GET /health answered 200"))


def checkedService(
    *members: Member, checks: Checks, **health: Any
) -> tuple[BalancerService, Clock]:
    """A started service whose balancer "web" has health checks, on a Clock."""
    clock = Clock()
    balancer = Balancer("web", members=members, health=HealthCheck(**health))
    svc = BalancerService([balancer], clock, healthCheck=checks)
    svc.startService()
    return svc, clock


def test_firstFailedCheckLeavesMemberServing() -> None:
    """Started before its backend: one failed check (of fails=3) takes nothing down."""
    checks = Checks()
    checks.failing = {1}
    svc, clock = checkedService(member(1), checks=checks, interval=30.0, fails=3)
    only = svc.member("web", "1")
    assert only.health == UNKNOWN
    assert svc.pick("web") is only
    svc.release(only, ok=True)
    clock.advance(2)
    assert only.health == UNKNOWN
    assert svc.pick("web") is only
    svc.stopService()
    assert clock.getDelayedCalls() == []


def test_inErrorBackAfterPassesWithHealthChecks() -> None:
    """With health checks, a member in error is back once C{passes} checks pass."""
    checks = Checks()
    svc, clock = checkedService(
        member(1), member(2), checks=checks, interval=30.0, fast_interval=0.2
    )
    clock.pump([0.2, 0.2])
    failed = svc.member("web", "1")
    assert failed.health == UP
    clock.advance(10)
    svc.release(failed, ok=False, failure="reset")
    assert failed.errorUntil == 10.4 + DEFAULT_RETRY
    assert set(picks(svc, 4)) == {2}
    clock.advance(0)
    assert set(picks(svc, 4)) == {2}
    clock.advance(0.2)
    assert not failed.inError(clock.seconds())
    assert set(picks(svc, 4)) == {1, 2}
    svc.stopService()
    assert clock.getDelayedCalls() == []


def test_inErrorStaysWhileChecksFail() -> None:
    """A member in error whose checks fail is not back; it goes down after C{fails}."""
    checks = Checks()
    svc, clock = checkedService(
        member(1), member(2), checks=checks, fast_interval=0.5, fails=2
    )
    clock.pump([0.5, 0.5])
    failed = svc.member("web", "1")
    checks.failing = {1}
    svc.release(failed, ok=False, failure="timeout")
    clock.pump([0, 0.5])
    assert failed.health == DOWN
    assert failed.inError(clock.seconds())
    svc.stopService()


def test_inErrorWaitsForRetryWithoutHealthChecks() -> None:
    """Without health checks, the retry time alone brings a failed member back."""
    svc, clock = service(member(1), member(2))
    svc.startService()
    failed = svc.member("web", "1")
    svc.release(failed, ok=False, failure="reset")
    clock.advance(DEFAULT_RETRY - 1)
    assert set(picks(svc, 4)) == {2}
    clock.advance(1)
    assert set(picks(svc, 4)) == {1, 2}
    svc.stopService()
    assert clock.getDelayedCalls() == []


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """The balancer service's warnings, formatted, while the test runs."""
    lines: list[str] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        """Keep the service's warnings."""
        if event.get("log_namespace", "").startswith(
            "twisted_proxy.balancer.service"
        ) and event["log_level"] in (LogLevel.warn, LogLevel.error):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def test_failOnStatusLogged(warnings: list[str]) -> None:
    """A member put in error by its status is logged with balancer, member, status."""
    svc, _ = service(member(9001), member(9002))
    sick = svc.member("web", "9001")
    svc.release(sick, ok=False, failure="answered 503")
    assert warnings == [
        "member http://127.0.0.1:9001 of balancer://web in error: answered 503"
    ]


def test_failureLoggedOnceWhileInError(warnings: list[str]) -> None:
    """Entering error is logged once, in words; failures while in error are not."""
    svc, clock = service(member(9001))
    sick = svc.member("web", "9001")
    svc.release(sick, ok=False, failure="connect")
    svc.release(sick, ok=False, failure="answered 503")
    clock.advance(DEFAULT_RETRY)
    svc.release(sick, ok=False, failure="timeout")
    assert warnings == [
        "member http://127.0.0.1:9001 of balancer://web in error: connect failed",
        "member http://127.0.0.1:9001 of balancer://web in error: timed out",
    ]


def test_ignoredErrorsNotLogged(warnings: list[str]) -> None:
    """A member that ignores errors (+I) is not put in error, nor logged as such."""
    svc, _ = service(member(9001, ignore_errors=True))
    svc.release(svc.member("web", "9001"), ok=False, failure="answered 503")
    assert warnings == []
