"""
One view of the balancers across worker processes: a follower made what the
owner's view says (L{follow}), and the counters followers report added up
(L{WorkerCounts}, L{BalancerService.countedElsewhere}); failures passed on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.task import Clock

from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import COUNTED, DOWN, UP, MemberCounts
from twisted_proxy.config.loader import loadString
from twisted_proxy.config.model import Member
from twisted_proxy.core.traffic import Traffic
from twisted_proxy.workers.sync import (
    WorkerCounts,
    balancerView,
    follow,
    workerCounts,
)

CONFIG = """
[[route]]
path = "/one/"
to = "balancer://web/"

[[route]]
path = "/two/"
to = "balancer://api/"

[balancer.web]
retry = 60

[[balancer.web.member]]
url = "http://127.0.0.1:9001"
route = "r1"

[[balancer.web.member]]
url = "http://127.0.0.1:9002"
route = "r2"

[[balancer.web.member]]
url = "http://127.0.0.1:9003"
route = "r3"

[balancer.web.health]
interval = 10

[balancer.api]

[[balancer.api.member]]
url = "http://127.0.0.1:9101"
"""

ONE = "http://127.0.0.1:9001"
TWO = "http://127.0.0.1:9002"
THREE = "http://127.0.0.1:9003"
FOUR = "http://127.0.0.1:9004"

START = 1_000_000.0


def service(text: str = CONFIG) -> tuple[BalancerService, Clock]:
    """A balancer service built from C{text}, on a Clock at L{START}."""
    clock = Clock()
    clock.advance(START)
    config = loadString(text)
    return BalancerService([b for _, b in config.balancers], clock), clock


def changedOwner() -> tuple[BalancerService, Clock]:
    """
    An owner with run-time changes: drained and weighted, disabled, one
    member added and one removed; one member down, one in error.
    """
    owner, clock = service()
    owner.setFlags("web", ONE, drain=True, weight=3)
    owner.setFlags("web", TWO, disabled=True)
    owner.addMember("web", Member(FOUR, "http", "127.0.0.1", 9004, route="r4", tier=1))
    owner.removeMember("web", THREE)
    two = owner.member("web", TWO)
    two.health = DOWN
    two.lastCheck = START - 5
    two.lastCheckResult = "connection refused"
    chosen = owner.pick("web")
    assert chosen is not None
    assert chosen.name == FOUR
    owner.release(chosen, ok=False, failure="connect", bytesIn=10)
    return owner, clock


def wire(view: dict[str, Any]) -> dict[str, Any]:
    """C{view} as the control channel carries it (JSON)."""
    result: dict[str, Any] = json.loads(json.dumps(view))
    return result


def uncounted(snapshot: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """C{snapshot} without the counters each process keeps for itself."""
    return {
        name: [{k: v for k, v in m.items() if k not in COUNTED} for m in members]
        for name, members in snapshot.items()
    }


def test_aFollowerShowsWhatTheOwnerShows() -> None:
    """
    After following the owner's view, the follower's snapshot is the
    owner's (members, flags, weights, health, errors), counters aside.
    """
    owner, _ = changedOwner()
    follower, _ = service()
    follow(follower, wire(balancerView(owner)))
    assert uncounted(follower.snapshot()) == uncounted(owner.snapshot())
    [one, two, four] = follower.snapshot()["web"]
    assert (one["name"], one["drain"], one["weight"]) == (ONE, True, 3)
    assert (two["name"], two["disabled"], two["health"]) == (TWO, True, DOWN)
    assert two["last_check_result"] == "connection refused"
    assert (four["name"], four["route"], four["tier"]) == (FOUR, "r4", 1)
    assert (four["in_error"], four["last_failure"]) == (True, "connect")
    assert (four["requests"], four["failures"], four["bytes_in"]) == (0, 0, 0)


def test_aFollowerPicksAsTheOwnerWould() -> None:
    """
    With every member drained, disabled, down or in error in the view, the
    follower picks only the member in error, as a forced retry.
    """
    owner, _ = changedOwner()
    follower, _ = service()
    follow(follower, wire(balancerView(owner)))
    chosen = follower.pick("web")
    assert chosen is not None
    assert chosen.name == FOUR
    assert chosen.retrying


def test_followSaysWhatChanged() -> None:
    """The changes to the members' set and flags come back in words."""
    owner, _ = changedOwner()
    follower, _ = service()
    assert follow(follower, wire(balancerView(owner))) == [
        f"web: {THREE} removed",
        f"web: {ONE} changed",
        f"web: {TWO} changed",
        f"web: {FOUR} added",
    ]


def test_followingTwiceChangesNothingTheSecondTime() -> None:
    """The same view again: no change said, and the snapshot is as it was."""
    owner, _ = changedOwner()
    follower, _ = service()
    view = wire(balancerView(owner))
    follow(follower, view)
    before = follower.snapshot()
    assert follow(follower, view) == []
    assert follower.snapshot() == before


def test_aBalancerOnlyOneSideHasIsLeftAlone() -> None:
    """
    A balancer the follower does not have is not made up; one the view does
    not have keeps its members and flags.
    """
    owner, _ = changedOwner()
    follower, _ = service(CONFIG.replace("api", "other"))
    follower.setFlags("other", "http://127.0.0.1:9101", drain=True)
    changes = follow(follower, wire(balancerView(owner)))
    assert not [change for change in changes if not change.startswith("web: ")]
    assert follower.balancerNames() == ("web", "other")
    [other] = follower.snapshot()["other"]
    assert (other["name"], other["drain"]) == ("http://127.0.0.1:9101", True)


def test_aMemberBackUpWakesARequestWaitingForCapacity() -> None:
    """
    A request waiting for a member in the follower gets one when the view
    says a member that was down is up again; its timer is gone.
    """
    owner, _ = changedOwner()
    follower, clock = service()
    follow(follower, wire(balancerView(owner)))
    waited = follower.whenCapacity("web", 30.0)
    got: list[bool] = []
    waited.addCallback(got.append)
    two = owner.member("web", TWO)
    two.health = UP
    owner.healthChanged("web", two, UP, "passed")
    follow(follower, wire(balancerView(owner)))
    assert got == [True]
    assert clock.getDelayedCalls() == []
    assert follower.member("web", TWO).health == UP


def test_theErrorTimeOfTheViewOutlivesTheHealthChange() -> None:
    """
    A member up by its checks but in error since (a failed request) is in
    error in the follower too, until the owner's time.
    """
    owner, ownerClock = changedOwner()
    follower, clock = service()
    follow(follower, wire(balancerView(owner)))
    two = owner.member("web", TWO)
    two.health = UP
    owner.healthChanged("web", two, UP, "passed")
    ownerClock.advance(1)
    clock.advance(1)
    owner.setFlags("web", TWO, disabled=False)
    chosen = owner.pick("web")
    assert chosen is two
    owner.release(two, ok=False, failure="timeout")
    follow(follower, wire(balancerView(owner)))
    state = follower.member("web", TWO)
    assert state.health == UP
    assert state.errorUntil == two.errorUntil == START + 1 + 60
    [snapshot] = [m for m in follower.snapshot()["web"] if m["name"] == TWO]
    assert (snapshot["in_error"], snapshot["last_failure"]) == (True, "timeout")
    clock.advance(60)
    assert not follower.member("web", TWO).inError(clock.seconds())


def report(
    svc: BalancerService, requests: int, connections: dict[str, int], busy: int
) -> dict[str, Any]:
    """What a follower that served C{requests} to member one reports, as sent."""
    for _ in range(requests):
        chosen = svc.pick("api")
        assert chosen is not None
        svc.release(chosen, ok=True, bytesIn=100, bytesOut=7)
    held = svc.pick("api")
    assert held is not None
    traffic = Traffic(Clock().seconds)
    result: dict[str, Any] = json.loads(
        json.dumps(workerCounts(svc, traffic, connections, busy))
    )
    return result


def test_workerCountsAddUp() -> None:
    """
    Two followers' reports: member counters, open and busy connections
    summed with the owner's own.
    """
    counts = WorkerCounts()
    counts.reports[1] = report(service()[0], 2, {"http/1.1": 3}, 1)
    counts.reports[2] = report(service()[0], 5, {"http/1.1": 1, "h2": 2}, 4)
    member = counts.members()["api"]["http://127.0.0.1:9101"]
    # requests, failures, bytes_in, bytes_out, in_flight (one held each)
    assert list(member) == [2 + 1 + 5 + 1, 0, 700, 49, 2]
    assert counts.members()["web"][ONE] == [0, 0, 0, 0, 0]
    assert counts.connections({"http/1.1": 10, "websocket": 1}) == {
        "http/1.1": 14,
        "h2": 2,
        "websocket": 1,
    }
    assert counts.busy(10) == 15


def test_forgetDropsAFollowersReport() -> None:
    """A follower that ended counts no more; forgetting an unknown one is fine."""
    counts = WorkerCounts()
    counts.reports[1] = report(service()[0], 2, {"http/1.1": 3}, 1)
    counts.reports[2] = report(service()[0], 5, {"http/1.1": 1}, 4)
    counts.forget([2, 7])
    assert list(counts.reports) == [1]
    assert counts.members()["api"]["http://127.0.0.1:9101"] == [3, 0, 200, 14, 1]
    assert counts.connections({}) == {"http/1.1": 3}
    assert counts.busy(0) == 1


def test_snapshotAddsWhatIsCountedElsewhere() -> None:
    """
    The snapshot shows the service's own counters plus the other processes';
    counts of members or balancers it does not have are left out.
    """
    svc, _ = service()
    chosen = svc.pick("api")
    assert chosen is not None
    svc.release(chosen, ok=False, failure="connect", bytesIn=5, bytesOut=1)
    elsewhere: MemberCounts = {
        "api": {
            "http://127.0.0.1:9101": [10, 2, 300, 40, 3],
            "http://127.0.0.1:9999": [1000, 1000, 1000, 1000, 1000],
        },
        "gone": {ONE: [1000, 1000, 1000, 1000, 1000]},
    }
    svc.countedElsewhere = lambda: elsewhere
    [api] = svc.snapshot()["api"]
    got = [api[key] for key in COUNTED]
    assert got == [11, 3, 305, 41, 3]
    assert [m["requests"] for m in svc.snapshot()["web"]] == [0, 0, 0]
    assert sorted(svc.snapshot()) == ["api", "web"]
    own = svc.member("api", "http://127.0.0.1:9101")
    assert (own.requests, own.failures, own.bytesIn) == (1, 1, 5)


def test_aFailedExchangeIsToldToTheFailureObservers() -> None:
    """
    A failed exchange that puts a member in error calls each failure
    observer with the member and why; one that went well calls none.
    """
    svc, _ = service()
    told: list[tuple[str, str]] = []
    svc.failureObservers.append(lambda member, why: told.append((member.name, why)))
    chosen = svc.pick("web")
    assert chosen is not None
    svc.release(chosen, ok=True)
    assert told == []
    chosen = svc.pick("web")
    assert chosen is not None
    svc.release(chosen, ok=False, failure="reset")
    assert told == [(chosen.name, "reset")]
    [failed] = [m for m in svc.snapshot()["web"] if m["name"] == chosen.name]
    assert failed["in_error"]


def test_memberFailedPutsTheSameMemberInErrorElsewhere() -> None:
    """
    A failure told to another service (the owner) puts the same member in
    error there, for its retry time; the others are untouched.
    """
    follower, _ = service()
    owner, clock = service()
    follower.failureObservers.append(
        lambda member, why: owner.memberFailed(member.balancerName, member.name, why)
    )
    chosen = follower.pick("web")
    assert chosen is not None
    follower.release(chosen, ok=False, failure="connect")
    errors = {m["name"]: m["in_error"] for m in owner.snapshot()["web"]}
    assert errors == {name: name == chosen.name for name in (ONE, TWO, THREE)}
    assert owner.member("web", chosen.name).errorUntil == START + 60
    clock.advance(60)
    assert not any(m["in_error"] for m in owner.snapshot()["web"])


def test_aFailureInAFollowerShowsWhyEverywhere() -> None:
    """
    A follower's failed exchange, told to the owner (memberFailed) and
    followed back, leaves the member in error with its last_failure on
    both sides: what the owner's balancer-manager API shows, and what the
    follower itself had recorded.
    """
    follower, _ = service()
    owner, _ = service()
    follower.failureObservers.append(
        lambda member, why: owner.memberFailed(member.balancerName, member.name, why)
    )
    chosen = follower.pick("web")
    assert chosen is not None
    follower.release(chosen, ok=False, failure="connect")
    follow(follower, wire(balancerView(owner)))
    [mine] = [m for m in follower.snapshot()["web"] if m["name"] == chosen.name]
    [theirs] = [m for m in owner.snapshot()["web"] if m["name"] == chosen.name]
    assert (theirs["in_error"], mine["in_error"]) == (True, True)
    assert (theirs["last_failure"], mine["last_failure"]) == ("connect", "connect")


def test_memberFailedSparesAMemberThatIgnoresErrors() -> None:
    """A member with ignore_errors (+I) stays usable, and no observer is told."""
    owner, _ = service()
    owner.setFlags("web", ONE, ignoreErrors=True)
    told: list[str] = []
    owner.failureObservers.append(lambda member, why: told.append(why))
    owner.memberFailed("web", ONE, "connect")
    [one] = [m for m in owner.snapshot()["web"] if m["name"] == ONE]
    assert not one["in_error"]
    assert told == []


def test_memberFailedForAnUnknownMember() -> None:
    """A member or balancer a reload took away: KeyError, nothing else."""
    owner, _ = service()
    with pytest.raises(KeyError):
        owner.memberFailed("web", FOUR, "connect")
    with pytest.raises(KeyError):
        owner.memberFailed("gone", ONE, "connect")
    assert not any(m["in_error"] for m in owner.snapshot()["web"])


def test_aMemberAddedAgainIsLastInBothAndTheRoundGoesOnAlike() -> None:
    """
    The owner removes a member and adds it back: it is last in the owner's
    list; the follower, which had it all along, puts it last too, and both
    go round the members in the same order from then on.
    """
    owner, _ = service()
    follower, _ = service()
    member = owner.member("web", ONE).member
    owner.removeMember("web", ONE)
    owner.addMember("web", member)
    follow(follower, json.loads(json.dumps(balancerView(owner))))
    names = [m.name for m in owner.members("web")]
    assert names == [TWO, THREE, ONE]
    assert [m.name for m in follower.members("web")] == names
    assert [m.index for m in follower.members("web")] == [
        m.index for m in owner.members("web")
    ]
    picks = []
    for _ in range(6):
        mine, theirs = owner.pick("web"), follower.pick("web")
        assert mine is not None
        assert theirs is not None
        picks.append((mine.name, theirs.name))
        owner.release(mine, True)
        follower.release(theirs, True)
    assert [a for a, _ in picks] == [b for _, b in picks]
